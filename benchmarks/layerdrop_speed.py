"""Training step time with LayerDrop 0.0 / 0.2 / 0.5 against the unwrapped model, side by side.

Each round times every variant in turn (forward, backward, AdamW step at batch 32 x 64 tokens), so
that drifts of the machine hit all variants alike; the table reports median step times as ratios
to the unwrapped model. Targets: overhead at rate 0 within 3%, rate 0.5 at least 1.6x faster.

    python benchmarks/layerdrop_speed.py [--rounds 8] [--steps 4] [--output runs/layerdrop_speed.json]
"""

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification

from hf_efficient import LayerDropConfig, apply_layerdrop
from hf_efficient.assets import default_model_path
from hf_efficient.layerdrop.model import layerdrop_schedule
from hf_efficient.report import markdown_table


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4, help="steps per variant per round")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--output", default="runs/layerdrop_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(default_model_path(), num_labels=2)
    variants = {"unwrapped": copy.deepcopy(base)}
    for rate in (0.0, 0.2, 0.5):
        variants[f"LayerDrop {rate}"] = apply_layerdrop(copy.deepcopy(base), LayerDropConfig(rate=rate))
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-5) for name, model in variants.items()}
    inputs = torch.randint(1000, 20000, (args.batch_size, args.length))
    labels = torch.randint(0, 2, (args.batch_size,))

    def train_step(name, step):
        model = variants[name].train()
        schedule = layerdrop_schedule(model)
        if schedule is not None:
            schedule.set_step(step)
        model(input_ids=inputs, labels=labels).loss.backward()
        optimizers[name].step()
        optimizers[name].zero_grad()

    for name in variants:  # warm-up
        train_step(name, 0)
    times = {name: [] for name in variants}
    skipped = {name: 0 for name in variants}
    for round_index in range(args.rounds):
        for name in variants:
            for i in range(args.steps):
                step = round_index * args.steps + i + 1
                started = time.perf_counter()
                train_step(name, step)
                times[name].append(time.perf_counter() - started)
                schedule = layerdrop_schedule(variants[name])
                skipped[name] += sum(schedule.skipped) if schedule else 0
        print(f"round {round_index + 1}/{args.rounds} done")

    reference = statistics.median(times["unwrapped"])
    num_layers = base.config.num_hidden_layers
    rows, result = [], {"threads": args.threads, "batch": args.batch_size, "length": args.length, "variants": {}}
    for name, values in times.items():
        median = statistics.median(values)
        fraction = skipped[name] / (len(values) * num_layers)
        rows.append([name, median * 1000, reference / median, fraction])
        result["variants"][name] = {
            "median_step_ms": median * 1000,
            "speedup_vs_unwrapped": reference / median,
            "layers_skipped": fraction,
        }
    table = markdown_table(["variant", "median step (ms)", "speed-up vs unwrapped", "layers skipped"], rows)
    print(f"\nMiniLM training step, batch {args.batch_size} x {args.length}, {args.threads} threads:\n{table}")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
