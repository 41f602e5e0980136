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

Speed-ups are against the fastest PyTorch row, sorted or not. Each row also gives its test accuracy
and how many of its labels differ from the same runtime's run on one text at a time: a dynamic int8
export quantizes each batch's activations with that batch's range, so its scores depend a little on
the texts batched together (a static export's fixed ranges do not).

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

    test = load_default_task()["test"]
    texts, names = list(test["text"]), test.features["label"].names
    truth = [names[label] for label in test["label"]]
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
    lengths = [len(ids) for ids in TextClassifier(args.export).encode(texts)["input_ids"]]
    batches = _batches(lengths, BATCH)
    by_length = [i for batch in batches for i in batch]
    in_order = [list(range(s, min(s + BATCH, len(texts)))) for s in range(0, len(texts), BATCH)]
    tokens = {"in order": padded_tokens(lengths, in_order), "by length": padded_tokens(lengths, batches)}

    plain = {"PyTorch fp32": model}
    if has_fast_bf16():
        plain["PyTorch bf16"] = copy.deepcopy(model).to(torch.bfloat16)
    seconds, labels, alone = {}, {}, {}  # threads -> way -> best seconds; way -> labels; runtime -> labels
    for threads in sorted({1, os.cpu_count()}):
        torch.set_num_threads(threads)
        classify = TextClassifier(args.export, threads=threads)
        ways, one_by_one = {}, {}  # each gives the labels in the order of `texts`
        for name, module in plain.items():
            classifier = pipeline("text-classification", model=module, tokenizer=tokenizer, device="cpu")
            options = {"truncation": True, "max_length": classify.max_length}

            def in_order(c=classifier, o=options, size=BATCH):
                return [r["label"] for r in c(texts, batch_size=size, **o)]

            def sorted_first(c=classifier, o=options):
                # What a user who sorts by length first gets, the results put back in order.
                found = dict(zip(by_length, c([texts[i] for i in by_length], batch_size=BATCH, **o), strict=True))
                return [found[i]["label"] for i in range(len(texts))]

            ways[f"{name} pipeline, in order"], ways[f"{name} pipeline, by length"] = in_order, sorted_first
            one_by_one[name] = lambda run=in_order: run(size=1)

        def export_in_order(classify=classify):
            found = []
            for start in range(0, len(texts), BATCH):
                encoded = classify.tokenizer(
                    texts[start : start + BATCH], truncation=True, max_length=classify.max_length, padding=True
                )
                logits = classify.run({name: np.asarray(value) for name, value in encoded.items()})["logits"]
                found += [classify._result(row)["label"] for row in logits]
            return found

        ways["int8 export, in order"] = export_in_order
        ways["int8 export, TextClassifier (by length)"] = lambda c=classify, size=BATCH: [
            r["label"] for r in c(texts, batch_size=size)
        ]
        one_by_one["int8 export"] = lambda run=ways["int8 export, TextClassifier (by length)"]: run(size=1)
        best = {name: float("inf") for name in ways}
        for _ in range(args.rounds + 1):  # the first round warms up
            for name, run in ways.items():
                started = time.perf_counter()
                labels[name] = run()
                best[name] = min(best[name], time.perf_counter() - started)
        seconds[threads] = best
        if threads == 1:  # the same runtime, one text at a time: what batching changes in the results
            alone = {runtime: run() for runtime, run in one_by_one.items()}

    fastest_plain = {
        threads: min(t for name, t in best.items() if "PyTorch" in name) for threads, best in seconds.items()
    }
    header = ["way", "padded tokens", "test acc", "labels unlike one at a time"]
    for threads in seconds:
        header += [f"texts/s, {threads} thr", f"x fastest PyTorch, {threads} thr"]
    rows, accuracy, unlike = [], {}, {}
    for name in seconds[1]:
        reference = alone[next(runtime for runtime in alone if name.startswith(runtime))]
        accuracy[name] = float(np.mean([got == want for got, want in zip(labels[name], truth, strict=True)]))
        unlike[name] = sum(got != ref for got, ref in zip(labels[name], reference, strict=True))
        row = [name, f"{tokens['by length' if 'by length' in name else 'in order']:,}"]
        row += [f"{accuracy[name]:.4f}", str(unlike[name])]
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
        "accuracy": accuracy,
        "labels_unlike_one_at_a_time": unlike,
        "seconds": {str(threads): best for threads, best in seconds.items()},
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
