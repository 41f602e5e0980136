"""What cross-layer sharing saves: parameters and file sizes, and (with --accuracy) what it costs.

Sizes: a BERT-base-shaped encoder (12 layers, hidden 768, random weights) with no sharing,
attention-only, FFN-only, all-shared, and all-shared in 2 and 4 groups; parameters, safetensors,
ONNX fp32 and ONNX int8 (dynamic, per-channel) file sizes, next to a 1-layer model of the same
width (an all-shared model should store about as much as that one).

Accuracy (--accuracy, slow: a GPU helps): the shipped MiniLM all-shared and in 2 groups, fine-tuned
directly and distilled with PKD from a fine-tuned MiniLM teacher (`--teacher`), test accuracy over
`--seeds`, with the accuracy retained and the points lost per million parameters saved. `--merge`
joins runs made in parallel.

    python benchmarks/sharing.py
    python benchmarks/sharing.py --accuracy --teacher runs/layerdrop_depth/rate-0.0/model --seeds 0 1 2
    python benchmarks/sharing.py --merge runs/sharing_ft runs/sharing_pkd --output-dir runs/sharing
"""

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, set_seed

from hf_efficient import DistillationTrainer, PKDConfig, SharingConfig, share_layers
from hf_efficient.assets import default_model_path
from hf_efficient.data import load_default_task, tokenize_dataset
from hf_efficient.export import export_onnx, quantize_int8_dynamic
from hf_efficient.metrics import evaluate_model
from hf_efficient.report import markdown_table
from hf_efficient.training import finetune

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


def accuracy(args, output: Path) -> dict:
    """Test accuracy of the shared MiniLMs over `args.seeds`; the summary is rewritten after each run."""
    pretrained = default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(pretrained)
    data = tokenize_dataset(load_default_task(max_train_samples=args.max_train_samples), tokenizer, max_length=64)
    plain = AutoModelForSequenceClassification.from_pretrained(pretrained, num_labels=2, dtype=torch.float32)
    summary = {
        "teacher": args.teacher,
        "teacher_accuracy": None,
        "plain_parameters": sum(p.numel() for p in plain.parameters()),
        "parameters": {},
        "accuracy": {},  # "variant / method" -> {seed: test accuracy}
        "args": vars(args),
    }
    teacher = None
    if args.teacher:
        teacher = AutoModelForSequenceClassification.from_pretrained(args.teacher, dtype=torch.float32).eval()
        if torch.cuda.is_available():
            teacher.to("cuda")
        summary["teacher_accuracy"] = evaluate_model(teacher, data["test"], desc="teacher")["accuracy"]
    for variant in args.variants:
        for method in args.methods:
            for seed in args.seeds:
                set_seed(seed)
                model = AutoModelForSequenceClassification.from_pretrained(
                    pretrained, num_labels=2, dtype=torch.float32
                )
                share_layers(model, VARIANTS[variant])
                run_dir = output / f"{variant}-{method}-{seed}".replace(" ", "_")
                distillation = {}
                if method == "pkd":
                    distillation = {
                        "trainer_class": DistillationTrainer,
                        "teacher": teacher,
                        "distillation": PKDConfig(),
                    }
                trainer = finetune(
                    model, data, str(run_dir), epochs=args.epochs, seed=seed, bf16=args.bf16, **distillation
                )
                label = f"{variant} / {method}"
                score = evaluate_model(trainer.model, data["test"], desc=f"{label} {seed}")["accuracy"]
                summary["parameters"][label] = sum(p.numel() for p in trainer.model.parameters())
                summary["accuracy"].setdefault(label, {})[str(seed)] = score
                print(f"{label} seed {seed}: test accuracy {score:.4f}", flush=True)
                (output / "sharing_accuracy.json").write_text(json.dumps(summary, indent=1))
                shutil.rmtree(run_dir)  # measured, not kept
    return summary


def merge_runs(folders) -> dict:
    """One accuracy summary from runs made in parallel (e.g. one per GPU lane)."""
    runs = [json.loads((Path(folder) / "sharing_accuracy.json").read_text()) for folder in folders]
    teachers = {run["teacher"] for run in runs if run["teacher"]}
    if len(teachers) > 1:
        raise ValueError(f"--merge: the runs have different teachers {sorted(teachers)}; join runs of one teacher.")
    with_teacher = [run for run in runs if run["teacher_accuracy"] is not None]
    merged = {
        "teacher": with_teacher[0]["teacher"] if with_teacher else None,
        "teacher_accuracy": with_teacher[0]["teacher_accuracy"] if with_teacher else None,
        "plain_parameters": runs[0]["plain_parameters"],
        "parameters": {},
        "accuracy": {},
        "merged_from": list(folders),
    }
    for run in runs:
        merged["parameters"].update(run["parameters"])
        for label, by_seed in run["accuracy"].items():
            merged["accuracy"].setdefault(label, {}).update(by_seed)
    return merged


def accuracy_table(summary: dict) -> str:
    """Accuracy, and what it costs per parameter saved, against the plain fine-tuned MiniLM (the teacher)."""
    teacher_accuracy, plain = summary["teacher_accuracy"], summary["plain_parameters"]
    rows = []
    if teacher_accuracy is not None:
        rows.append(["plain MiniLM (the teacher)", plain / 1e6, 0.0, f"{teacher_accuracy:.4f}", "-", 1, "100.0%", "-"])
    for label, by_seed in summary["accuracy"].items():
        accuracies = list(by_seed.values())
        mean = statistics.mean(accuracies)
        spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        saved = (plain - summary["parameters"][label]) / 1e6
        retained = lost_per_m = "-"
        if teacher_accuracy is not None:
            retained = f"{mean / teacher_accuracy:.1%}"
            lost_per_m = f"{(teacher_accuracy - mean) * 100 / saved:.3f}"
        rows.append(
            [
                label,
                summary["parameters"][label] / 1e6,
                saved,
                f"{mean:.4f}",
                f"{spread:.4f}",
                len(accuracies),
                retained,
                lost_per_m,
            ]
        )
    headers = [
        "MiniLM",
        "params (M)",
        "params saved (M)",
        "test acc (mean)",
        "std",
        "seeds",
        "retained",
        "points lost per M saved",
    ]
    return markdown_table(headers, rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accuracy", action="store_true", help="train and test instead of measuring sizes")
    parser.add_argument("--teacher", help="fine-tuned MiniLM folder, the PKD teacher")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["all shared", "2 groups"])
    parser.add_argument("--methods", nargs="+", choices=["finetune", "pkd"], default=["finetune", "pkd"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--max-train-samples", type=int)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--output-dir", default="runs/sharing")
    parser.add_argument("--merge", nargs="+", metavar="DIR", help="only join the sharing_accuracy.json of these runs")
    args = parser.parse_args()
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)

    if args.accuracy or args.merge:
        if args.accuracy and "pkd" in args.methods and not args.teacher:
            parser.error("--methods pkd needs --teacher, a fine-tuned MiniLM folder.")
        summary = merge_runs(args.merge) if args.merge else accuracy(args, output)
        table = accuracy_table(summary)
        print(f"\n{table}")
        (output / "sharing_accuracy.json").write_text(json.dumps(summary, indent=1))
        (output / "sharing_accuracy.md").write_text(table + "\n")
        return

    with tempfile.TemporaryDirectory() as work_dir:
        by_variant = sizes(Path(work_dir))
    rows = [
        [name, r["parameters"] / 1e6, r["safetensors_mb"], r["onnx_fp32_mb"], r["onnx_int8_mb"]]
        for name, r in by_variant.items()
    ]
    table = markdown_table(["BERT-base shape", "params (M)", "safetensors MB", "ONNX fp32 MB", "ONNX int8 MB"], rows)
    print(f"\n{table}")
    (output / "sharing.json").write_text(json.dumps({"sizes": by_variant}, indent=1))
    (output / "sharing.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
