"""How close each variant comes to what this CPU can do: the GEMM rate per dtype, and the model's work.

Times one matrix product of the shape that dominates MiniLM at batch 32 x 64 tokens (2048 x 384 x
1536: the FFN's first projection) on one thread, in fp32 and bf16 with PyTorch, in fp32 with ONNX
Runtime and in int8 with ONNX Runtime's dynamic quantization (signed int8 weights, as `export_int8`
writes them, and unsigned ones), and counts the operations one batch of a BERT-like model needs. With `--int8-json`
(the output of `benchmarks/int8.py`), it divides each variant's measured batch-32 rate by the
best GEMM rate of its dtype: the percent of the reachable peak that the whole model gets.

    python benchmarks/cpu_peak.py --model runs/quickstart/teacher --int8-json runs/int8/int8.json
"""

import argparse
import json
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


def model_operations(config, batch: int = 32, tokens: int = 64) -> float:
    """Multiply-adds x 2 of one forward of a BERT-like encoder (the matrix products; the rest is small)."""
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_token_layer = 4 * h * h + 2 * h * i + 2 * tokens * h  # Q, K, V, output; FFN; scores and their use
    return 2 * batch * tokens * layers * per_token_layer


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a model folder, to count the operations of one batch of 32 x 64 tokens")
    parser.add_argument("--int8-json", help="benchmarks/int8.py's JSON, to give each variant's percent of peak")
    parser.add_argument("--output", default="runs/cpu_peak.json")
    args = parser.parse_args()
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
            best = {"fp32": max(peaks["PyTorch fp32"], peaks["ONNX Runtime fp32"]), "bf16": peaks["PyTorch bf16"]}
            best["int8"] = peaks["ONNX Runtime int8 (s8 weights)"]
            rows = []
            for name, entry in variants.items():
                dtype = "int8" if "int8" in name else "bf16" if "bf16" in name else "fp32"
                achieved = work / (entry["latency_ms"]["1t_b32"] / 1000)
                rows.append([name, dtype, f"{achieved / 1e9:,.0f}", f"{achieved / best[dtype]:.0%}"])
            result["percent_of_peak"] = {row[0]: row[3] for row in rows}
            print("\nWhole model at batch 32, 1 thread, against the best GEMM rate of its dtype:")
            print(markdown_table(["variant", "dtype", "GOP/s", "of GEMM peak"], rows))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
