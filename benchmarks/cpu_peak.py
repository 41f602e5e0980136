"""How close each variant comes to what this CPU can do: the GEMM rate per dtype, and the model's work.

Times one matrix product of the shape that dominates MiniLM at batch 32 x 64 tokens (2048 x 384 x
1536: the FFN's first projection) on one thread, in fp32 and bf16 with PyTorch, in fp32 with ONNX
Runtime and in int8 with ONNX Runtime's dynamic quantization (signed int8 weights, as `export_int8`
writes them, and unsigned ones), and counts the operations one batch of a BERT-like model needs. With `--int8-json`
(the output of `benchmarks/int8.py`), it divides each variant's measured batch-32 rate by the
best GEMM rate of its dtype: the percent of the reachable peak that the whole model gets. With
`--profile` (an ONNX file, e.g. the chosen int8 export), it runs ONNX Runtime's own profiler on that
graph at batch 32 x 64 tokens, 1 thread, and says where the time goes: the products with a weight,
the activation-by-activation products of attention (scores, and their use on the values), and every
other operator type, each with its share and, for the products, its rate.

    python benchmarks/cpu_peak.py --model runs/quickstart/teacher --int8-json runs/int8/int8.json \
        --profile runs/int8/int8-all-dynamic/model_quantized.onnx
"""

import argparse
import collections
import importlib.util
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from onnx import TensorProto, helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from transformers import AutoConfig

from hf_efficient.export.variants import activation_matmuls
from hf_efficient.report import markdown_table
from hf_efficient.report.cpu import describe_cpu

M, K, N = 2048, 384, 1536


def rate(run, operations: float, seconds: float = 2.0) -> float:
    """Operations per second of `run`, the best of several timed repeats after a warm-up."""
    run()
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return operations / best


def onnx_matmul(folder: Path, int8: QuantType | None) -> onnxruntime.InferenceSession:
    weight = helper.make_tensor("w", TensorProto.FLOAT, [K, N], np.random.default_rng(0).standard_normal(K * N))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [M, K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [M, N])],
        [weight],
    )
    path = folder / "gemm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    if int8 is not None:
        quantize_dynamic(path, folder / "gemm_int8.onnx", weight_type=int8)
        path = folder / "gemm_int8.onnx"
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def openvino_peaks(folder: Path, x: np.ndarray) -> dict[str, float]:
    """The same GEMM on OpenVINO's CPU plugin, 1 thread: fp32, bf16 (the fp32 graph with bf16 inference
    precision, as `Int8ExportConfig(runtime="openvino-bf16")` runs float operations) and int8 (a static
    QDQ graph: u8 activations, s8 weights, which OpenVINO runs as an int8 product, on AMX's tiles where
    the CPU has them)."""
    import openvino
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{"x": x}])

        def get_next(self):
            return next(self.feeds, None)

    onnx_matmul(folder, None)  # writes gemm.onnx
    quantize_static(
        str(folder / "gemm.onnx"),
        str(folder / "gemm_qdq.onnx"),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )
    core, peaks = openvino.Core(), {}
    for name, file, precision in [
        ("OpenVINO fp32", "gemm.onnx", "f32"),
        ("OpenVINO bf16", "gemm.onnx", "bf16"),
        ("OpenVINO int8 (QDQ, s8 weights)", "gemm_qdq.onnx", "f32"),
    ]:
        settings = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": precision}
        request = core.compile_model(str(folder / file), "CPU", settings).create_infer_request()
        # Shared input and output buffers: the GEMM's time, not that of copying 15 MB in and out.
        infer = lambda request=request: request.infer({0: x}, share_inputs=True, share_outputs=True)  # noqa: E731
        peaks[name] = rate(infer, 2.0 * M * K * N)
    return peaks


def model_operations(config, batch: int = 32, tokens: int = 64, part: str = "all") -> float:
    """Multiply-adds x 2 of one forward of a BERT-like encoder (the matrix products; the rest is small).

    `part` is "weights" (Q, K, V, output, FFN), "activations" (attention scores and their use) or "all".
    """
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_token_layer = {"weights": 4 * h * h + 2 * h * i, "activations": 2 * tokens * h}
    per_token_layer["all"] = sum(per_token_layer.values())
    return 2 * batch * tokens * layers * per_token_layer[part]


PRODUCTS = ("MatMul", "FusedMatMul", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QLinearMatMul")


def profile_graph(path: str, batch: int = 32, tokens: int = 64, warmup: int = 3, runs: int = 20) -> dict[str, float]:
    """Milliseconds per run of each part of an ONNX graph, from ONNX Runtime's profiler, 1 thread.

    The matrix products are split by their second operand: a stored initializer ("products with a
    weight") or a computed tensor ("activation products": attention's scores and their use). The
    split is read from the graph as the session optimized it, since fusion renames and retypes nodes.
    """
    with tempfile.TemporaryDirectory() as folder:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        options.log_severity_level = 3  # saving the optimized graph warns that it is for this CPU only
        options.optimized_model_filepath = os.path.join(folder, "optimized.onnx")
        options.enable_profiling, options.profile_file_prefix = True, os.path.join(folder, "profile")
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        activations = set(activation_matmuls(options.optimized_model_filepath, PRODUCTS))
        part = {}
        for node in onnx.load(options.optimized_model_filepath, load_external_data=False).graph.node:
            kind = "activation products" if node.name in activations else "products with a weight"
            part[node.name] = kind if node.op_type in PRODUCTS else node.op_type
        feed = {i.name: np.ones((batch, tokens), np.int64) for i in session.get_inputs()}
        for _ in range(warmup + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    # Count only the timed runs: the warm-up's first calls also allocate and pack.
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e["name"] == "model_run")
    events = [e for e in events if e["ts"] >= starts[warmup]]
    micros = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            name = event["name"][: -len("_kernel_time")]
            micros[part.get(name, event["args"]["op_name"])] += event["dur"]
    return {name: total / runs / 1000 for name, total in micros.most_common()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a model folder, to count the operations of one batch of 32 x 64 tokens")
    parser.add_argument("--int8-json", help="benchmarks/int8.py's JSON, to give each variant's percent of peak")
    parser.add_argument("--profile", help="an ONNX file to profile at batch 32 x 64 tokens, 1 thread")
    parser.add_argument("--output", default="runs/cpu_peak.json")
    args = parser.parse_args()
    for name in ("model", "int8_json", "profile"):
        path = getattr(args, name)
        if path and not Path(path).exists():
            parser.error(f"--{name.replace('_', '-')} {path} does not exist: give a path on this machine")
    torch.set_num_threads(1)
    operations = 2.0 * M * K * N
    x = torch.randn(M, K)
    w = torch.randn(K, N)
    xb, wb = x.bfloat16(), w.bfloat16()
    peaks = {"PyTorch fp32": rate(lambda: x @ w, operations), "PyTorch bf16": rate(lambda: xb @ wb, operations)}
    feed = {"x": x.numpy()}
    with tempfile.TemporaryDirectory() as folder:
        # Dynamic quantization makes the activations u8: s8 weights are u8 x s8 (VNNI's and AMX's own
        # product); u8 weights are u8 x u8, as the attention's activation-by-activation products.
        gemms = {
            "ONNX Runtime fp32": None,
            "ONNX Runtime int8 (s8 weights)": QuantType.QInt8,
            "ONNX Runtime int8 (u8 weights)": QuantType.QUInt8,
        }
        for name, int8 in gemms.items():
            session = onnx_matmul(Path(folder), int8)
            peaks[name] = rate(lambda session=session: session.run(None, feed), operations)
        if importlib.util.find_spec("openvino"):
            peaks |= openvino_peaks(Path(folder), x.numpy())
    rows = [[name, f"{value / 1e9:,.0f}"] for name, value in peaks.items()]
    print(f"\nOne GEMM {M} x {K} x {N}, 1 thread, {describe_cpu()}:")
    print(markdown_table(["GEMM", "GOP/s"], rows))
    result = {"cpu": describe_cpu(), "gemm": [M, K, N], "gop_per_s": {k: v / 1e9 for k, v in peaks.items()}}

    if args.model:
        work = model_operations(AutoConfig.from_pretrained(args.model))
        result["model_gop_per_batch_32x64"] = work / 1e9
        print(f"\n{args.model}: {work / 1e9:.1f} GOP per batch of 32 x 64 tokens")
        if args.int8_json:
            variants = json.loads(Path(args.int8_json).read_text())["variants"]
            best = {}  # dtype -> the best GEMM rate of any runtime (u8 x u8 is not int8's peak)
            for name, value in peaks.items():
                dtype = "int8" if "s8 weights" in name else "bf16" if "bf16" in name else "fp32"
                if "u8 weights" not in name:
                    best[dtype] = max(best.get(dtype, 0.0), value)
            rows = []
            for name, entry in variants.items():
                dtype = "int8" if "int8" in name else "bf16" if "bf16" in name else "fp32"
                achieved = work / (entry["latency_ms"]["1t_b32"] / 1000)
                rows.append([name, dtype, f"{achieved / 1e9:,.0f}", f"{achieved / best[dtype]:.0%}"])
            result["percent_of_peak"] = {row[0]: row[3] for row in rows}
            print("\nWhole model at batch 32, 1 thread, against the best GEMM rate of its dtype:")
            print(markdown_table(["variant", "dtype", "GOP/s", "of GEMM peak"], rows))
    if args.profile:
        parts = profile_graph(args.profile)
        total = sum(parts.values())
        work = {}
        if args.model:
            config = AutoConfig.from_pretrained(args.model)
            work = {
                "products with a weight": model_operations(config, part="weights"),
                "activation products": model_operations(config, part="activations"),
            }
        rows, rest = [], []
        for name, ms in parts.items():
            if ms / total < 0.01 and name not in work:
                rest.append(name)  # the shape arithmetic and other small operators, one row
                continue
            rate_text = f"{work[name] / (ms / 1000) / 1e9:,.0f}" if name in work else ""
            rows.append([name, f"{ms:.2f}", f"{ms / total:.1%}", rate_text])
        small = sum(parts[name] for name in rest)
        rows.append([f"{len(rest)} other operator types", f"{small:.2f}", f"{small / total:.1%}", ""])
        result["profile"] = {"file": args.profile, "ms_per_run": parts}
        print(f"\n{args.profile}, batch 32 x 64 tokens, 1 thread ({total:.1f} ms of kernels per run):")
        print(markdown_table(["part", "ms", "share", "GOP/s"], rows))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
