"""Texts per second, end to end, of the ways to classify a whole test split on the CPU, side by side.

A user with many texts calls a pipeline or a helper on all of them, so the time includes
tokenization and how texts are grouped into batches: each batch is padded to its longest text.
Rows, on the default task's test split (1,409 texts), in batches of 32, taking turns in each round:

- the transformers pipeline on the PyTorch model (`--model`), fp32 and bf16 (where the CPU has bf16
  instructions), on the texts in the order given and sorted by length first (what a user who knows
  about padding would do; the pipeline itself batches in the order given);
- the export (`--export`, an `export_int8` folder) run in the order given, as a pipeline over the
  ONNX model would (`ORTModelForSequenceClassification` in a pipeline batches the same way);
- `TextClassifier` on the export, which batches texts of similar length together.

Speed-ups are against the fastest PyTorch row, sorted or not.

    python benchmarks/batching.py --model runs/quickstart/teacher --export runs/int8/int8-all-dynamic
"""

import argparse
import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from hf_efficient import TextClassifier
from hf_efficient.data import load_default_task
from hf_efficient.export.helpers import INT8_FILE, _batches
from hf_efficient.report import markdown_table
from hf_efficient.report.cpu import describe_cpu, has_fast_bf16

BATCH = 32


def padded_tokens(lengths: list[int], batches: list[list[int]]) -> int:
    """Tokens the model computes on when each batch is padded to its longest text."""
    return sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the fine-tuned PyTorch classifier folder")
    parser.add_argument("--export", required=True, help="an export_int8 folder of that model")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", default="runs/batching.json")
    args = parser.parse_args()
    for name in ("model", "export"):
        if not Path(getattr(args, name)).is_dir():
            parser.error(f"--{name} {getattr(args, name)} is not a folder: give a local model folder")
    if not (Path(args.export) / INT8_FILE).exists():
        parser.error(f"--export {args.export} has no {INT8_FILE}: give an export_int8 output folder")

    texts = list(load_default_task()["test"]["text"])
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
    lengths = TextClassifier(args.export).lengths(texts)
    by_length = [i for batch in _batches(lengths, BATCH) for i in batch]
    in_order = [list(range(s, min(s + BATCH, len(texts)))) for s in range(0, len(texts), BATCH)]
    tokens = {
        "in order": padded_tokens(lengths, in_order),
        "by length": padded_tokens(lengths, _batches(lengths, BATCH)),
    }

    plain = {"PyTorch fp32": model}
    if has_fast_bf16():
        plain["PyTorch bf16"] = copy.deepcopy(model).to(torch.bfloat16)
    seconds = {}  # threads -> name -> best seconds
    for threads in sorted({1, os.cpu_count()}):
        torch.set_num_threads(threads)
        classify = TextClassifier(args.export, threads=threads)
        runs = {}
        for name, module in plain.items():
            classifier = pipeline("text-classification", model=module, tokenizer=tokenizer, device="cpu")
            options = {"batch_size": BATCH, "truncation": True, "max_length": classify.max_length}
            runs[f"{name} pipeline, in order"] = lambda c=classifier, o=options: c(texts, **o)
            # What a user who sorts by length first gets (the results then go back in order; free here).
            runs[f"{name} pipeline, by length"] = lambda c=classifier, o=options: c([texts[i] for i in by_length], **o)

        def export_in_order(classify=classify):
            for start in range(0, len(texts), BATCH):
                encoded = classify.tokenizer(
                    texts[start : start + BATCH], truncation=True, max_length=classify.max_length, padding=True
                )
                classify.run({name: np.asarray(value) for name, value in encoded.items()})

        runs["int8 export, in order"] = export_in_order
        runs["int8 export, TextClassifier (by length)"] = lambda classify=classify: classify(texts, batch_size=BATCH)
        best = {name: float("inf") for name in runs}
        for _ in range(args.rounds + 1):  # the first round warms up
            for name, run in runs.items():
                started = time.perf_counter()
                run()
                best[name] = min(best[name], time.perf_counter() - started)
        seconds[threads] = best

    fastest_plain = {
        threads: min(t for name, t in best.items() if "PyTorch" in name) for threads, best in seconds.items()
    }
    header = ["way", "padded tokens"]
    for threads in seconds:
        header += [f"texts/s, {threads} thr", f"x fastest PyTorch, {threads} thr"]
    rows = []
    for name in seconds[1]:
        row = [name, f"{tokens['by length' if 'by length' in name else 'in order']:,}"]
        for threads, best in seconds.items():
            row += [f"{len(texts) / best[name]:,.0f}", f"{fastest_plain[threads] / best[name]:.2f}x"]
        rows.append(row)
    print(f"\n{len(texts)} texts ({sum(lengths):,} tokens), batches of {BATCH}, {describe_cpu()}:")
    print(markdown_table(header, rows))
    result = {
        "cpu": describe_cpu(),
        "model": args.model,
        "export": args.export,
        "texts": len(texts),
        "tokens": sum(lengths),
        "padded_tokens": tokens,
        "seconds": {str(threads): best for threads, best in seconds.items()},
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
