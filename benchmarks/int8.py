"""Size, accuracy and CPU latency of PyTorch fp32, ONNX fp32 and ONNX int8 (dynamic, static), side by side.

Takes a fine-tuned classifier (`--model`, e.g. the teacher of `hf-efficient run recipes/int8_only.yaml`),
exports it with `export_int8` dynamic (with the tanh GELU, and with the exact one as plain Optimum
does) and static (calibrated on 256 training rows), and times every variant in turn, in rounds,
at batch 1 and batch 32 (sequence 64), with 1 thread and with all cores. Speed-ups are ratios to
PyTorch fp32 measured in the same run. Accuracy is on the test split of the default task.

    python benchmarks/int8.py --model runs/int8_only/teacher
"""

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_efficient import Int8ExportConfig, export_int8
from hf_efficient.data import load_default_task, tokenize_dataset
from hf_efficient.export.int8 import onnx_accuracy
from hf_efficient.metrics import evaluate_model
from hf_efficient.report import markdown_table


def folder_mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="fine-tuned sequence classifier folder")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calibration-rows", type=int, default=256)
    parser.add_argument("--output-dir", default="runs/int8")
    args = parser.parse_args()
    output = Path(args.output_dir)

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    data = tokenize_dataset(load_default_task(), tokenizer, max_length=64)
    model = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
    calibration = data["train"].shuffle(seed=0).select(range(args.calibration_rows))
    # "exact GELU" is plain Optimum dynamic quantization, without hf_efficient's tanh GELU.
    configs = {
        "dynamic": Int8ExportConfig(mode="dynamic", retry=False),
        "dynamic-exact-gelu": Int8ExportConfig(mode="dynamic", approximate_gelu=False, retry=False),
        "static": Int8ExportConfig(mode="static", retry=False, calibration_samples=args.calibration_rows),
    }
    exports = {
        name: export_int8(model, output / name, config, tokenizer=tokenizer, calibration_dataset=calibration)
        for name, config in configs.items()
    }
    backend = exports["dynamic"].backend
    files = {
        "ONNX fp32": output / "dynamic/model.onnx",
        "ONNX int8 dynamic, exact GELU": output / "dynamic-exact-gelu/model_quantized.onnx",
        "ONNX int8 dynamic": output / "dynamic/model_quantized.onnx",
        "ONNX int8 static": output / "static/model_quantized.onnx",
    }
    model.save_pretrained(output / "pytorch")
    sizes = {"PyTorch fp32": folder_mb(output / "pytorch/model.safetensors")}
    sizes |= {name: folder_mb(path) for name, path in files.items()}
    accuracy = {"PyTorch fp32": evaluate_model(model, data["test"])["accuracy"]}
    accuracy |= {name: onnx_accuracy(path, data["test"]) for name, path in files.items()}

    test = data["test"]
    batches = {
        size: {k: np.asarray(test[:size][k], dtype=np.int64) for k in test.column_names if k != "label"}
        for size in (1, 32)
    }
    latency = {}
    for threads in (1, os.cpu_count()):
        torch.set_num_threads(threads)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        sessions = {
            name: onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            for name, path in files.items()
        }

        def run(name, feed, sessions=sessions):
            if name == "PyTorch fp32":
                with torch.no_grad():
                    model(**{k: torch.from_numpy(v) for k, v in feed.items()})
            else:
                inputs = {i.name: feed[i.name] for i in sessions[name].get_inputs()}
                sessions[name].run(["logits"], inputs)

        for size, feed in batches.items():
            repeats = 20 if size == 1 else 3
            timings = {name: [] for name in sizes}
            for round_index in range(args.rounds + 1):
                for name in sizes:
                    started = time.perf_counter()
                    for _ in range(repeats):
                        run(name, feed)
                    if round_index:  # the first round warms up
                        timings[name].append((time.perf_counter() - started) / repeats)
            for name, values in timings.items():
                latency[f"{name}|{threads}|{size}"] = statistics.median(values)

    rows, result = [], {"backend": backend, "cpu_count": os.cpu_count(), "variants": {}}
    for name in sizes:
        entry = {"size_mb": sizes[name], "accuracy": accuracy[name], "latency_ms": {}, "speedup": {}}
        for threads in (1, os.cpu_count()):
            for size in (1, 32):
                key = f"{name}|{threads}|{size}"
                entry["latency_ms"][f"{threads}t_b{size}"] = latency[key] * 1000
                entry["speedup"][f"{threads}t_b{size}"] = latency[f"PyTorch fp32|{threads}|{size}"] / latency[key]
        result["variants"][name] = entry
        speed = entry["speedup"]
        rows.append(
            [name, entry["size_mb"], entry["accuracy"], entry["latency_ms"]["1t_b1"], speed["1t_b1"], speed["1t_b32"]]
            + [speed[f"{os.cpu_count()}t_b1"], speed[f"{os.cpu_count()}t_b32"]]
        )
    header = ["variant", "MB", "test acc", "ms b1 1t", "x b1 1t", "x b32 1t", "x b1 all", "x b32 all"]
    table = markdown_table(header, rows)
    print(f"\n{args.model}, sequence 64, backend {backend}, speed-up against PyTorch fp32 in the same run:\n{table}")
    (output / "int8.json").write_text(json.dumps(result, indent=1))
    (output / "int8.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
