"""Size, accuracy and CPU latency of every way to run a fine-tuned classifier on the CPU, side by side.

Takes a fine-tuned classifier (`--model`, e.g. the quickstart's teacher or student) and times, in
turns within each round, at batch 1 and 32 (sequence 64), with 1 thread and with all cores:
PyTorch fp32, PyTorch bf16 (weights cast, and fp32 weights under autocast) where the CPU has bf16
instructions, ONNX fp32, and the int8 exports of `export_int8`: each graph variant of
`export.variants` (int8-all, int8-weights, int8-fused) dynamic and static (calibrated on 256 training
rows), int8-all dynamic with the tanh GELU (`approximate_gelu=True`, ONNX Runtime's `FastGelu`), and
the chosen export with its residual `Add`s as exported ("Adds kept": ONNX Runtime then fuses one or more into its slower
`SkipLayerNormalization`, see `export.graph.residual_sums`). The variant that
`Int8ExportConfig(variant="auto")` picks on this CPU is marked "(auto)" (and, with `--openvino` on
CPUs with AMX, where a static export with `runtime="auto"` runs it, "(auto, static)"); with `--fastest`, the
export of `variant="fastest"` (each graph timed at export, the fastest kept) joins the run as the row
marked "(fastest)", dynamic and static (the static one also timed on OpenVINO where it is installed,
and run on the runtime it chose), and the JSON records what they timed. Speed-ups are
against the fastest plain-PyTorch variant of the same run, and against PyTorch fp32. Accuracy is on
the test split of the default task. The table names the CPU and its instruction sets.

With `--openvino` (needs `pip install openvino`), another runtime joins the same run: OpenVINO's CPU
plugin on the fp32 graph (fp32, and bf16 where the CPU has bf16 instructions) and on a static int8
graph in QDQ form (ONNX Runtime's quantizer, u8 activations, s8 per-channel weights, calibrated on the
same rows), which OpenVINO's low-precision transformations run in int8, and on each static export
itself (as `Int8ExportConfig(runtime="openvino")` runs it, and with bf16 float operations as
`runtime="openvino-bf16"` does, where the CPU has bf16).

    python benchmarks/int8.py --model runs/quickstart/teacher
"""

import argparse
import copy
import json
import os
from pathlib import Path

import numpy as np
import onnx
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_efficient import Int8ExportConfig, export_int8
from hf_efficient.data import load_default_task, tokenize_dataset
from hf_efficient.export.fastest import failure_reason
from hf_efficient.export.int8 import _batches, onnx_accuracy, onnx_outputs
from hf_efficient.export.onnx import INPUT_NAMES
from hf_efficient.export.runtime import NAMES
from hf_efficient.export.variants import VARIANTS, choose_runtime, choose_variant
from hf_efficient.metrics import evaluate_model
from hf_efficient.report import markdown_table
from hf_efficient.report.cpu import describe_cpu, has_fast_bf16
from hf_efficient.report.measure import measure_latency, onnx_runner, pytorch_runner

PLAIN = ("PyTorch fp32", "PyTorch bf16", "PyTorch bf16 autocast")


def folder_mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def with_adds(path: Path, target: Path) -> Path:
    """`path` with the `Sum`s that `graph.residual_sums` wrote turned back into `Add`s."""
    model = onnx.load(str(path))
    for node in model.graph.node:
        if node.op_type == "Sum" and len(node.input) == 2:
            node.op_type = "Add"
    onnx.save(model, str(target))
    return target


def qdq_int8(fp32: Path, calibration, target: Path) -> Path:
    """Static int8 in QDQ form (the form OpenVINO's low-precision transformations read)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = _batches(calibration, INPUT_NAMES, 32)

        def get_next(self):
            return next(self.feeds, None)

    quantize_static(
        str(fp32),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
    )
    return target


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="fine-tuned sequence classifier folder")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per variant, batch size and thread count")
    parser.add_argument("--calibration-rows", type=int, default=256)
    parser.add_argument("--output-dir", default="runs/int8")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--openvino", action="store_true", help="add OpenVINO rows (pip install openvino)")
    parser.add_argument(
        "--fastest", action="store_true", help="add the dynamic and static exports of variant='fastest'"
    )
    args = parser.parse_args()
    output = Path(args.output_dir)

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    data = tokenize_dataset(load_default_task(), tokenizer, max_length=64)
    model = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
    calibration = data["train"].shuffle(seed=0).select(range(args.calibration_rows))
    # The tanh GELU that `approximate_gelu=True` writes, against the exact one of every other row.
    configs = {"int8-all-tanh-gelu": Int8ExportConfig(variant="int8-all", approximate_gelu=True, retry=False)}
    for variant in args.variants:
        configs[f"{variant}-dynamic"] = Int8ExportConfig(variant=variant, retry=False)
        # On ONNX Runtime, named so: "auto" would run static files on OpenVINO on some CPUs (the OpenVINO rows).
        configs[f"{variant}-static"] = Int8ExportConfig(
            variant=variant,
            mode="static",
            runtime="onnxruntime",
            retry=False,
            calibration_samples=args.calibration_rows,
        )
    if args.fastest:
        configs["fastest-dynamic"] = Int8ExportConfig(variant="fastest", retry=False)
        # Static graphs are timed on OpenVINO too, where it is installed (export.runtime).
        configs["fastest-static"] = Int8ExportConfig(
            variant="fastest", mode="static", retry=False, calibration_samples=args.calibration_rows
        )
    exports = {
        name: export_int8(
            model,
            output / name,
            config,
            tokenizer=tokenizer,
            calibration_dataset=calibration if config.mode == "static" else None,
        )
        for name, config in configs.items()
    }
    backend = exports["int8-all-tanh-gelu"].backend
    auto = choose_variant()[0]
    auto_static_runtime = choose_runtime("static", auto)[0]  # what runtime="auto" runs a static export on
    files = {"ONNX fp32": output / "int8-all-tanh-gelu/model.onnx"}
    for name, result in exports.items():
        label = f"ONNX {result.variant} {result.mode}" + (", tanh GELU" if "tanh" in name else "")
        if name.startswith("fastest"):  # its rows run on the runtime it chose, as its loaders do
            label += ("" if result.runtime == "onnxruntime" else f" on {NAMES[result.runtime]}") + " (fastest)"
        elif result.variant == auto and result.mode == "dynamic" and "tanh" not in name:
            label += " (auto)"
        files[label] = Path(result.output_dir) / result.int8_file
    # The chosen export as it was before `graph.residual_sums`: ONNX Runtime fuses its residual Adds.
    chosen = files.get(f"ONNX {auto} dynamic (auto)")
    if chosen is not None:
        files[f"ONNX {auto} dynamic, Adds kept"] = with_adds(chosen, chosen.with_name("model_adds.onnx"))
    openvino = {}
    if args.openvino:
        qdq = qdq_int8(files["ONNX fp32"], calibration, output / "openvino-qdq.onnx")
        # Name -> (graph, `export.runtime`): "openvino-bf16" is OpenVINO's bf16 inference precision hint.
        openvino = {"OpenVINO fp32": (files["ONNX fp32"], "openvino"), "OpenVINO int8 static QDQ": (qdq, "openvino")}
        for variant in args.variants:  # the static exports themselves, as `runtime="openvino"` runs them
            for runtime in ("openvino", "openvino-bf16") if has_fast_bf16() else ("openvino",):
                label = f"OpenVINO {variant} static" + (", bf16" if runtime == "openvino-bf16" else "")
                if (variant, runtime) == (auto, auto_static_runtime):
                    label += " (auto, static)"
                openvino[label] = (files[f"ONNX {variant} static"], runtime)
        if has_fast_bf16():
            openvino["OpenVINO bf16"] = (files["ONNX fp32"], "openvino-bf16")
    model.save_pretrained(output / "pytorch")
    sizes = {"PyTorch fp32": folder_mb(output / "pytorch/model.safetensors")}
    sizes |= {name: folder_mb(path) for name, path in files.items()}
    accuracy = {"PyTorch fp32": evaluate_model(model, data["test"])["accuracy"]}
    accuracy |= {name: onnx_accuracy(path, data["test"]) for name, path in files.items()}
    for name, (path, runtime) in list(openvino.items()):
        try:
            logits = onnx_outputs(path, data["test"], runtime)["logits"]
        except Exception as error:  # int8-fused's contrib operators have no conversion
            print(f"{name}: left out, OpenVINO cannot load it ({failure_reason(error)})")
            del openvino[name]
            continue
        sizes[name] = folder_mb(path) / (2 if runtime == "openvino-bf16" and "static" not in name else 1)
        accuracy[name] = float((logits.argmax(-1) == np.asarray(data["test"]["label"])).mean())

    plain = {"PyTorch fp32": model}
    if has_fast_bf16():
        plain["PyTorch bf16"] = copy.deepcopy(model).to(torch.bfloat16)
        plain["PyTorch bf16 autocast"] = model
        sizes["PyTorch bf16"] = sizes["PyTorch fp32"] / 2  # the same weights in 2 bytes each
        sizes["PyTorch bf16 autocast"] = sizes["PyTorch fp32"]
        accuracy["PyTorch bf16"] = evaluate_model(plain["PyTorch bf16"], data["test"])["accuracy"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            accuracy["PyTorch bf16 autocast"] = evaluate_model(model, data["test"])["accuracy"]
    names = [*plain, *files, *openvino]

    test = data["test"]
    feeds = {
        size: {k: np.asarray(test[:size][k], dtype=np.int64) for k in test.column_names if k != "label"}
        for size in (1, 32)
    }
    latency = {}  # (threads, batch) -> name -> ms
    for threads in sorted({1, os.cpu_count()}):
        runners = {name: pytorch_runner(module) for name, module in plain.items()}
        if "PyTorch bf16 autocast" in runners:
            fp32 = runners["PyTorch bf16 autocast"]

            def autocast(feed, fp32=fp32):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    fp32(feed)

            runners["PyTorch bf16 autocast"] = autocast
        runners |= {name: onnx_runner(path, threads) for name, path in files.items()}
        runners |= {name: onnx_runner(path, threads, runtime) for name, (path, runtime) in openvino.items()}
        by_size = measure_latency(runners, feeds, threads=threads, seconds=args.seconds, rounds=args.rounds)
        for name, per_size in by_size.items():
            for size, ms in per_size.items():
                latency.setdefault((threads, size), {})[name] = ms

    cpu = describe_cpu()
    result = {"backend": backend, "cpu": cpu, "cpu_count": os.cpu_count(), "model": args.model, "variants": {}}
    result["auto"] = dict(zip(("variant", "reason"), choose_variant(), strict=True))
    result["auto"]["static_runtime"] = auto_static_runtime
    for name in ("fastest-dynamic", "fastest-static"):
        if name in exports:
            kept = exports[name]
            result[name] = {"variant": kept.variant, "runtime": kept.runtime, "reason": kept.variant_reason}
            result[name]["timings"] = kept.variant_timings
    rows = []
    for name in names:
        entry = {"size_mb": sizes[name], "accuracy": accuracy[name], "latency_ms": {}, "speedup": {}, "vs_fp32": {}}
        for (threads, size), by_name in sorted(latency.items()):
            key = f"{threads}t_b{size}"
            fastest_plain = min(by_name[p] for p in PLAIN if p in by_name)
            entry["latency_ms"][key] = by_name[name]
            entry["speedup"][key] = fastest_plain / by_name[name]
            entry["vs_fp32"][key] = by_name["PyTorch fp32"] / by_name[name]
        result["variants"][name] = entry
        keys = list(entry["speedup"])
        rows.append(
            [name, entry["size_mb"], entry["accuracy"], entry["latency_ms"]["1t_b1"], entry["latency_ms"]["1t_b32"]]
            + [f"{entry['speedup'][k]:.2f}x" for k in keys]
            + [f"{entry['vs_fp32']['1t_b32']:.2f}x"]
        )
    keys = list(result["variants"]["PyTorch fp32"]["speedup"])
    header = ["variant", "MB", "test acc", "ms b1 1t", "ms b32 1t"]
    header += [f"x {k.split('_')[1]} {k.split('_')[0].replace('t', ' thr')}" for k in keys] + ["x fp32 b32 1t"]
    table = markdown_table(header, rows)
    print(
        f"\n{args.model}, sequence 64, backend {backend}, on {cpu}.\nSpeed-up against the fastest plain-PyTorch "
        f"variant of the same run (last column: against PyTorch fp32):\n{table}"
    )
    (output / "int8.json").write_text(json.dumps(result, indent=1))
    (output / "int8.md").write_text(f"On {cpu}.\n\n{table}\n")


if __name__ == "__main__":
    main()
