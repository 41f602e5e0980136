"""Patient Knowledge Distillation on the default task: PKD-Skip, PKD-Last, logit KD, direct fine-tuning.

Teacher: a fine-tuned encoder (`--teacher`, e.g. the shipped MiniLM fine-tuned by `hf-efficient
layerdrop --rate 0 --full --epochs 3`); when omitted, the script fine-tunes `--pretrained` first.
Students keep `--student-layers` layers of `--pretrained` (or of the fine-tuned teacher with
`--student-init-from teacher`), spread evenly from layer 0 (0, 2, 4 of 6), and train with the
reference recipe. The table reports test accuracy, mean and spread over `--seeds`, next to the
plain-transformers numbers of `shared/reference`. It also measures the cost of a distillation step
against a teacher forward plus a student training step, side by side. `--merge` joins runs made in
parallel (one process per core) into one table.

    python benchmarks/pkd_rotten_tomatoes.py --teacher runs/layerdrop_depth/rate-0.0/model --seeds 0 1 2
    python benchmarks/pkd_rotten_tomatoes.py --merge runs/pkd_seed0 runs/pkd_seed1 --output-dir runs/pkd
    python benchmarks/pkd_rotten_tomatoes.py --pretrained mpnet --student-layers 6 --bf16   # 12-layer MPNet, on a GPU
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainingArguments, set_seed

from hf_efficient import DistillationTrainer, PKDConfig, make_student
from hf_efficient.data import load_default_task, tokenize_dataset
from hf_efficient.report import markdown_table
from hf_efficient.training import default_model_path, evaluate_model, finetune, mpnet_path

METHODS = {
    "finetune": None,
    # The reference's logit KD: 0.5 * CE + 0.5 * KL(T=2) * T^2.
    "logit_kd": PKDConfig(alpha=0.5, temperature=2.0, beta=0.0),
    "pkd_skip": PKDConfig(strategy="skip"),
    "pkd_last": PKDConfig(strategy="last"),
}
# Plain transformers on the same split, 3-layer students of the shipped MiniLM (mean of 3 seeds).
REFERENCE = {"teacher": 0.8394, "finetune": 0.8233, "logit_kd": 0.8276}


def distillation_overhead(teacher, student, trainer, batch, rounds=10):
    """Median seconds of a teacher forward, a student training step and a distillation step."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    timings = {"teacher forward": [], "student step": [], "distillation step": []}

    def teacher_forward():
        with torch.no_grad():
            teacher(**inputs)

    def student_step():
        student.train()
        student(**batch).loss.backward()
        student.zero_grad()

    def distillation_step():
        student.train()
        trainer.compute_loss(student, dict(batch)).backward()
        student.zero_grad()

    steps = {"teacher forward": teacher_forward, "student step": student_step, "distillation step": distillation_step}
    for _ in range(rounds + 1):  # the first round warms up
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            timings[name].append(time.perf_counter() - started)
    return {name: statistics.median(values[1:]) for name, values in timings.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pretrained",
        help="pretrained encoder folder, or 'mpnet' for the 12-layer MPNet (default: the shipped MiniLM)",
    )
    parser.add_argument("--teacher", help="fine-tuned teacher folder (default: fine-tune --pretrained first)")
    parser.add_argument("--student-layers", type=int, default=3)
    parser.add_argument("--student-init-from", choices=["pretrained", "teacher"], default="pretrained")
    parser.add_argument(
        "--methods", nargs="*", choices=list(METHODS), default=list(METHODS), help="none: only the step cost"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--max-train-samples", type=int)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--output-dir", default="runs/pkd")
    parser.add_argument("--merge", nargs="+", metavar="DIR", help="only join the pkd_results.json of these runs")
    args = parser.parse_args()

    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    summary = merge_runs(args.merge) if args.merge else run(args, output)
    table = results_table(summary)
    overhead = summary["step_seconds"]
    print(f"\n{summary['student_layers']}-layer students of {summary['teacher']}:\n{table}")
    print(
        f"\nstep cost, batch 32: teacher forward {overhead['teacher forward'] * 1000:.0f} ms, student step "
        f"{overhead['student step'] * 1000:.0f} ms, distillation step {overhead['distillation step'] * 1000:.0f} ms "
        f"= {summary['distillation_over_teacher_plus_student']:.3f}x their sum (target <= 1.10)"
    )
    (output / "pkd_results.json").write_text(json.dumps(summary, indent=1))
    (output / "pkd_results.md").write_text(table + "\n")


def run(args, output):
    """Train the students of `args.methods` x `args.seeds`; the summary is rewritten after each one."""
    pretrained = mpnet_path() if args.pretrained == "mpnet" else args.pretrained or default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(pretrained)
    data = tokenize_dataset(load_default_task(max_train_samples=args.max_train_samples), tokenizer, max_length=64)
    extra_args = {"bf16": args.bf16}

    if args.teacher is None:
        set_seed(0)
        teacher = AutoModelForSequenceClassification.from_pretrained(pretrained, num_labels=2)
        finetune(teacher, data, str(output / "teacher"), epochs=args.epochs, seed=0, **extra_args)
        args.teacher = str(output / "teacher/best")
        teacher.save_pretrained(args.teacher)
    teacher = AutoModelForSequenceClassification.from_pretrained(args.teacher).eval()
    teacher_accuracy = evaluate_model(teacher, data["test"], desc="teacher")["accuracy"]
    source = teacher if args.student_init_from == "teacher" else None

    summary = {
        "teacher": args.teacher,
        "teacher_accuracy": teacher_accuracy,
        "student_layers": args.student_layers,
        "init_from": args.student_init_from,
        "accuracy": {},  # method -> {seed: test accuracy}
        "args": vars(args),
    }
    for method in args.methods:
        for seed in args.seeds:
            set_seed(seed)
            base = (
                source
                if source is not None
                else AutoModelForSequenceClassification.from_pretrained(pretrained, num_labels=2)
            )
            student = make_student(base, args.student_layers, init="skip")
            run_dir = str(output / f"{method}-seed{seed}")
            if METHODS[method] is None:
                trainer = finetune(student, data, run_dir, epochs=args.epochs, seed=seed, **extra_args)
            else:
                trainer = finetune(
                    student,
                    data,
                    run_dir,
                    epochs=args.epochs,
                    seed=seed,
                    trainer_class=DistillationTrainer,
                    teacher=teacher,
                    distillation=METHODS[method],
                    **extra_args,
                )
            accuracy = evaluate_model(trainer.model, data["test"], desc=f"{method} seed {seed}")["accuracy"]
            summary["accuracy"].setdefault(method, {})[str(seed)] = accuracy
            print(f"{method} seed {seed}: test accuracy {accuracy:.4f}")
            (output / "pkd_results.json").write_text(json.dumps(summary, indent=1))

    batch = {k: torch.tensor(data["train"][:32][k]) for k in ("input_ids", "attention_mask", "label")}
    batch["labels"] = batch.pop("label")
    timing_student = make_student(teacher, args.student_layers)
    timing_args = TrainingArguments(str(output / "timing"), report_to=[], use_cpu=not torch.cuda.is_available())
    timing_trainer = DistillationTrainer(
        model=timing_student, teacher=teacher, args=timing_args, train_dataset=data["train"]
    )
    overhead = distillation_overhead(teacher, timing_student, timing_trainer, batch)
    summary["step_seconds"] = overhead
    summary["distillation_over_teacher_plus_student"] = overhead["distillation step"] / (
        overhead["teacher forward"] + overhead["student step"]
    )
    return summary


def merge_runs(folders):
    """One summary from runs of the same teacher and student depth (e.g. one per core)."""
    runs = [json.loads((Path(folder) / "pkd_results.json").read_text()) for folder in folders]
    for key in ("teacher", "teacher_accuracy", "student_layers"):
        if len({json.dumps(run[key]) for run in runs}) > 1:
            raise ValueError(f"--merge: the runs differ in {key}; join only runs of one teacher and student depth.")
    merged = {key: runs[0][key] for key in ("teacher", "teacher_accuracy", "student_layers")}
    merged["accuracy"] = {}
    for run in runs:
        suffix = "" if run["init_from"] == "pretrained" else " (init from teacher)"
        for method, by_seed in run["accuracy"].items():
            merged["accuracy"].setdefault(method + suffix, {}).update(by_seed)
    timed = next(run for run in runs if "step_seconds" in run)
    merged["step_seconds"] = timed["step_seconds"]
    merged["distillation_over_teacher_plus_student"] = timed["distillation_over_teacher_plus_student"]
    merged["merged_from"] = list(folders)
    return merged


def results_table(summary):
    teacher_accuracy = summary["teacher_accuracy"]
    rows = [["teacher", f"{teacher_accuracy:.4f}", "-", 1, "100.0%", REFERENCE["teacher"]]]
    for method, by_seed in summary["accuracy"].items():
        accuracies = list(by_seed.values())
        mean = statistics.mean(accuracies)
        spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        reference = REFERENCE.get(method, "-") if summary["student_layers"] == 3 else "-"
        rows.append(
            [method, f"{mean:.4f}", f"{spread:.4f}", len(accuracies), f"{mean / teacher_accuracy:.1%}", reference]
        )
    headers = ["model", "test accuracy (mean)", "std", "seeds", "retained", "plain transformers"]
    return markdown_table(headers, rows)


if __name__ == "__main__":
    main()
