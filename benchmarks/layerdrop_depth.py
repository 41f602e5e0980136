"""Accuracy against depth on the default task: LayerDrop 0.2 against the same fine-tuning without it.

Fine-tunes the shipped MiniLM twice with `hf-efficient layerdrop` (same data, seed and recipe, only
the rate differs), prunes each to 5, 4, 3 and 2 layers without retraining, and evaluates on the test
split. Prints the table, writes JSON and a PNG plot. The claim to check: the LayerDrop model loses
less accuracy than the plain model at every pruned depth.

    python benchmarks/layerdrop_depth.py                   # whole training set, 3 epochs (about 45 min on 2 cores)
    python benchmarks/layerdrop_depth.py --max-train-samples 3000 --epochs 2   # quicker
"""

import argparse
import json
from pathlib import Path

from hf_efficient.cli import main as hf_efficient
from hf_efficient.report import markdown_table, plot_accuracy_by_depth


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=0.2)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--max-train-samples", type=int, help="training subset (default: all rows)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default="runs/layerdrop_depth")
    args = parser.parse_args()

    output = Path(args.output_dir)
    runs = {}
    for label, rate in ((f"LayerDrop {args.rate}", args.rate), ("no LayerDrop", 0.0)):
        run_dir = output / f"rate-{rate}"
        command = ["layerdrop", "--rate", str(rate), "--epochs", str(args.epochs), "--seed", str(args.seed)]
        command += ["--output-dir", str(run_dir), "--depths", "6", "5", "4", "3", "2"]
        command += ["--max-train-samples", str(args.max_train_samples)] if args.max_train_samples else ["--full"]
        hf_efficient(command)
        runs[label] = json.loads((run_dir / "results.json").read_text())["test"]

    layerdrop, plain = runs.values()
    rows, comparison = [], {}
    for depth in ("6", "5", "4", "3", "2"):
        ours, theirs = layerdrop[depth]["accuracy"], plain[depth]["accuracy"]
        our_loss, their_loss = layerdrop["6"]["accuracy"] - ours, plain["6"]["accuracy"] - theirs
        verdict = "-" if depth == "6" else "yes" if our_loss < their_loss else "no"
        rows.append([depth, ours, theirs, our_loss, their_loss, verdict])
        comparison[depth] = {
            "layerdrop_accuracy": ours,
            "plain_accuracy": theirs,
            "layerdrop_loss_vs_full": our_loss,
            "plain_loss_vs_full": their_loss,
        }
    header = [
        "layers",
        f"acc LayerDrop {args.rate}",
        "acc plain",
        "loss LayerDrop",
        "loss plain",
        "LayerDrop loses less",
    ]
    table = markdown_table(header, rows)
    print(f"\nTest accuracy after pruning without retraining (losses against each model's 6 layers):\n{table}")
    (output / "layerdrop_depth.json").write_text(json.dumps({"args": vars(args), "by_depth": comparison}, indent=1))
    (output / "layerdrop_depth.md").write_text(table + "\n")
    series = {label: {int(d): m["accuracy"] for d, m in run.items()} for label, run in runs.items()}
    plot_accuracy_by_depth(series, output / "layerdrop_depth.png", title="MiniLM on Rotten Tomatoes, pruned")
    print(f"Wrote {output}/layerdrop_depth.json, .md and .png")


if __name__ == "__main__":
    main()
