"""The `hf-efficient` command."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from transformers import AutoModelForSequenceClassification, AutoTokenizer

from .data import DEFAULT_TASK, load_text_classification, tokenize_dataset
from .encoders import layer_stack
from .layerdrop import LayerDropCallback, LayerDropConfig, apply_layerdrop
from .report import markdown_table, plot_accuracy_by_depth
from .training import default_model_path, evaluate_depths, finetune

LAYERDROP_EXAMPLES = """examples:
  hf-efficient layerdrop                              # shipped MiniLM, Rotten Tomatoes, 5,000 training rows
  hf-efficient layerdrop --full --epochs 3            # the whole training set
  hf-efficient layerdrop --rate 0 --output-dir runs/no-layerdrop
  hf-efficient layerdrop --model path/to/encoder --data reviews.csv --text-column review --label-column stars
"""


def layerdrop_command(args: argparse.Namespace) -> dict:
    """Fine-tune with LayerDrop, then prune to every depth without retraining and evaluate each."""
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    dataset = load_text_classification(
        args.data,
        text_column=args.text_column,
        label_column=args.label_column,
        max_train_samples=None if args.full else args.max_train_samples,
        seed=args.seed,
    )
    model_path = args.model or default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    labels = dataset["train"].features["label"].names
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    num_layers = len(layer_stack(model))
    depths = args.depths or list(range(num_layers, 1, -1))
    if any(not 1 <= d <= num_layers for d in depths):
        raise SystemExit(f"--depths {depths}: each depth must be between 1 and {num_layers}.")
    tokenized = tokenize_dataset(dataset, tokenizer, max_length=args.max_length)
    callbacks = []
    if args.rate > 0:
        apply_layerdrop(model, LayerDropConfig(rate=args.rate, seed=args.seed))
        callbacks.append(LayerDropCallback())

    started = time.perf_counter()
    trainer = finetune(
        model,
        tokenized,
        str(output_dir / "checkpoints"),
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        callbacks=callbacks,
    )
    training_seconds = time.perf_counter() - started
    trainer.save_model(str(output_dir / "model"))
    tokenizer.save_pretrained(str(output_dir / "model"))

    by_depth = evaluate_depths(trainer.model, tokenized["test"], depths)
    result = {
        "model": model_path,
        "data": args.data,
        "layerdrop_rate": args.rate,
        "train_rows": len(dataset["train"]),
        "epochs": args.epochs,
        "seed": args.seed,
        "training_seconds": round(training_seconds, 1),
        "test": {str(depth): metrics for depth, metrics in by_depth.items()},
    }
    (output_dir / "results.json").write_text(json.dumps(result, indent=1))
    rows = [[d, m["accuracy"], m["f1"], m["matthews_correlation"], m["kept_layers"]] for d, m in by_depth.items()]
    table = markdown_table(["layers", "accuracy", "f1", "mcc", "kept layers"], rows)
    (output_dir / "results.md").write_text(table + "\n")
    plot_accuracy_by_depth(
        {f"LayerDrop {args.rate}": {d: m["accuracy"] for d, m in by_depth.items()}},
        output_dir / "accuracy_by_depth.png",
        title="test accuracy after pruning",
    )
    print(f"\nTest metrics by depth (LayerDrop rate {args.rate}, trained in {training_seconds:.0f} s):\n{table}")
    print(f"\nWrote {output_dir}/results.json, results.md, accuracy_by_depth.png and the model in {output_dir}/model")
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-efficient", description="Make transformer encoders efficient.")
    commands = parser.add_subparsers(dest="command", required=True)
    layerdrop = commands.add_parser(
        "layerdrop",
        help="fine-tune with LayerDrop, then prune to every depth and evaluate",
        epilog=LAYERDROP_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    layerdrop.add_argument("--model", help="model folder or name (default: the shipped MiniLM)")
    layerdrop.add_argument("--data", default=DEFAULT_TASK, help="CSV/TSV/JSON(L) file, or the default task")
    layerdrop.add_argument("--text-column", default="text")
    layerdrop.add_argument("--label-column", default="label")
    layerdrop.add_argument("--rate", type=float, default=0.2, help="LayerDrop rate (0 trains without it)")
    layerdrop.add_argument("--epochs", type=float, default=2)
    layerdrop.add_argument("--batch-size", type=int, default=32)
    layerdrop.add_argument("--learning-rate", type=float, default=5e-5)
    layerdrop.add_argument("--max-length", type=int, default=64)
    layerdrop.add_argument("--max-train-samples", type=int, default=5000, help="training subset size")
    layerdrop.add_argument("--full", action="store_true", help="train on the whole training set")
    layerdrop.add_argument("--depths", type=int, nargs="+", help="depths to evaluate (default: all down to 2)")
    layerdrop.add_argument("--seed", type=int, default=0)
    layerdrop.add_argument("--output-dir", default="runs/layerdrop")
    layerdrop.set_defaults(run=layerdrop_command)
    return parser


def main(argv: list[str] | None = None):
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
