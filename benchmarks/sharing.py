"""What cross-layer sharing saves: parameters and file sizes, and (with --accuracy) what it costs.

Sizes: a BERT-base-shaped encoder (12 layers, hidden 768, random weights) with no sharing,
attention-only, FFN-only, all-shared, and all-shared in 2 and 4 groups; parameters, safetensors,
ONNX fp32 and ONNX int8 (dynamic, per-channel) file sizes, next to a 1-layer model of the same
width (an all-shared model should store about as much as that one).

Accuracy (--accuracy, slow): the shipped MiniLM all-shared and in 2 groups, fine-tuned directly and
distilled with PKD from a fine-tuned MiniLM teacher (`--teacher`), test accuracy over `--seeds`.

    python benchmarks/sharing.py
    python benchmarks/sharing.py --accuracy --teacher runs/layerdrop_depth/rate-0.0/model --seeds 0 1 2
"""

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, set_seed

from hf_efficient import DistillationTrainer, PKDConfig, SharingConfig, share_layers
from hf_efficient.data import load_default_task, tokenize_dataset
from hf_efficient.export import export_onnx, quantize_int8_dynamic
from hf_efficient.report import markdown_table
from hf_efficient.training import default_model_path, evaluate_model, finetune

VARIANTS = {
    "none": None,
    "attention only": SharingConfig(scope="attention"),
    "FFN only": SharingConfig(scope="ffn"),
    "all shared": SharingConfig(),
    "2 groups": SharingConfig(num_groups=2),
    "4 groups": SharingConfig(num_groups=4),
}


def sizes(work_dir: Path) -> dict:
    results = {}
    base_config = BertConfig(num_labels=2)  # BERT-base: 12 layers, hidden 768, vocab 30522
    one_layer = BertConfig(num_labels=2, num_hidden_layers=1)
    for name, sharing in [*VARIANTS.items(), ("1 layer, no sharing", None)]:
        torch.manual_seed(0)
        config = one_layer if name.startswith("1 layer") else base_config
        model = AutoModelForSequenceClassification.from_config(config).eval()
        if sharing is not None:
            share_layers(model, sharing)
        folder = work_dir / name.replace(" ", "_").replace(",", "")
        model.save_pretrained(folder)
        fp32 = export_onnx(model, folder / "model.onnx")
        int8 = quantize_int8_dynamic(fp32, folder / "model_int8.onnx")
        results[name] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "safetensors_mb": (folder / "model.safetensors").stat().st_size / 1e6,
            "onnx_fp32_mb": fp32.stat().st_size / 1e6,
            "onnx_int8_mb": int8.stat().st_size / 1e6,
        }
        print(name, results[name])
    return results


def accuracy(args) -> dict:
    pretrained = default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(pretrained)
    data = tokenize_dataset(load_default_task(max_train_samples=args.max_train_samples), tokenizer, max_length=64)
    teacher = AutoModelForSequenceClassification.from_pretrained(args.teacher).eval() if args.teacher else None
    results = {}
    for name in ("all shared", "2 groups"):
        for method in ("finetune", "pkd") if teacher is not None else ("finetune",):
            for seed in args.seeds:
                set_seed(seed)
                model = AutoModelForSequenceClassification.from_pretrained(pretrained, num_labels=2)
                share_layers(model, VARIANTS[name])
                run_dir = str(Path(args.output_dir) / f"{name}-{method}-{seed}".replace(" ", "_"))
                kwargs = {"trainer_class": DistillationTrainer, "teacher": teacher, "distillation": PKDConfig()}
                trainer = finetune(
                    model, data, run_dir, epochs=args.epochs, seed=seed, **(kwargs if method == "pkd" else {})
                )
                score = evaluate_model(trainer.model, data["test"])["accuracy"]
                parameters = sum(p.numel() for p in trainer.model.parameters())
                results.setdefault(f"{name} / {method}", {"parameters": parameters, "accuracy": []})["accuracy"].append(
                    score
                )
                print(name, method, seed, score)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accuracy", action="store_true")
    parser.add_argument("--teacher", help="fine-tuned MiniLM folder, the PKD teacher")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--max-train-samples", type=int)
    parser.add_argument("--output-dir", default="runs/sharing")
    args = parser.parse_args()
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as work_dir:
        by_variant = sizes(Path(work_dir))
    rows = [
        [name, r["parameters"] / 1e6, r["safetensors_mb"], r["onnx_fp32_mb"], r["onnx_int8_mb"]]
        for name, r in by_variant.items()
    ]
    table = markdown_table(["BERT-base shape", "params (M)", "safetensors MB", "ONNX fp32 MB", "ONNX int8 MB"], rows)
    print(f"\n{table}")
    summary = {"sizes": by_variant}
    if args.accuracy:
        summary["accuracy"] = accuracy(args)
        plain = sum(
            p.numel() for p in AutoModelForSequenceClassification.from_pretrained(default_model_path()).parameters()
        )
        rows = []
        for name, r in summary["accuracy"].items():
            mean = statistics.mean(r["accuracy"])
            spread = statistics.stdev(r["accuracy"]) if len(r["accuracy"]) > 1 else 0.0
            rows.append(
                [name, r["parameters"] / 1e6, mean, spread, len(r["accuracy"]), (plain - r["parameters"]) / 1e6]
            )
        print(markdown_table(["MiniLM", "params (M)", "test acc", "std", "seeds", "params saved (M)"], rows))
    (output / "sharing.json").write_text(json.dumps(summary, indent=1))
    (output / "sharing.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
