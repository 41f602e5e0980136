"""Patient Knowledge Distillation on the default task: PKD-Skip, PKD-Last, logit KD, direct fine-tuning.

Teacher: a fine-tuned encoder (`--teacher`, e.g. the shipped MiniLM fine-tuned by `hf-efficient
layerdrop --rate 0 --full --epochs 3`); when omitted, the script fine-tunes `--pretrained` first.
Students keep `--student-layers` layers of `--pretrained` (or of the fine-tuned teacher with
`--student-init-from teacher`): spread evenly from layer 0 (`--student-init skip`: 0, 2, 4 of 6)
or the bottom ones (`first`: 0, 1, 2), and train with the reference recipe. The table reports test
accuracy, mean and spread over `--seeds`, next to the plain-transformers numbers of
`shared/reference`. The script also measures, side by side, the cost of a distillation step against
a teacher forward plus a student training step, and the inference speed-up of the student over the
teacher. `--merge` joins runs made in parallel (one process per core or per GPU lane) into one table.

    python benchmarks/pkd_rotten_tomatoes.py --teacher runs/layerdrop_depth/rate-0.0/model --seeds 0 1 2
    python benchmarks/pkd_rotten_tomatoes.py --merge runs/pkd_seed0 runs/pkd_seed1 --output-dir runs/pkd
    python benchmarks/pkd_rotten_tomatoes.py --pretrained mpnet --student-layers 6 --student-init first skip --bf16
"""

import argparse
import contextlib
import copy
import json
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, TrainingArguments, set_seed

from hf_efficient import DistillationTrainer, PKDConfig, make_student
from hf_efficient.assets import default_model_path, mpnet_path
from hf_efficient.data import load_default_task, tokenize_dataset
from hf_efficient.metrics import evaluate_model
from hf_efficient.report import markdown_table
from hf_efficient.report.measure import measure_latency, pytorch_runner
from hf_efficient.training import finetune

METHODS = {
    "finetune": None,
    # The reference's logit KD: 0.5 * CE + 0.5 * KL(T=2) * T^2.
    "logit_kd": PKDConfig(alpha=0.5, temperature=2.0, beta=0.0),
    "pkd_skip": PKDConfig(strategy="skip"),
    "pkd_last": PKDConfig(strategy="last"),
    # PKD's alpha and temperature without the patient term: what the [CLS] loss itself adds.
    "pkd_beta0": PKDConfig(beta=0.0),
}
# Plain transformers on the same split (shared/reference, mean of 3 seeds), by (teacher type,
# teacher depth, student depth); students keep layers of the pretrained model.
REFERENCES = {
    ("bert", 6, 3): {"teacher": 0.8394, "finetune": 0.8233, "finetune, first layers": 0.8133, "logit_kd": 0.8276},
    ("mpnet", 12, 6): {"teacher": 0.8942, "finetune": 0.8685, "finetune, first layers": 0.8763, "logit_kd": 0.8687},
}


def reference_for(teacher: str, student_layers: int) -> dict:
    """The plain-transformers numbers for this teacher and student depth, if shared/reference has them."""
    if not Path(teacher, "config.json").is_file():
        return {}
    config = AutoConfig.from_pretrained(teacher)
    return REFERENCES.get((config.model_type, config.num_hidden_layers, student_layers), {})


def run_label(method: str, init: str, init_from: str, epochs: float = 3) -> str:
    """The table row of a method: the plain name for students of evenly spread pretrained layers, 3 epochs."""
    label = (
        method + (", first layers" if init == "first" else "") + (", from teacher" if init_from == "teacher" else "")
    )
    return label + (f", {epochs:g} epochs" if epochs != 3 else "")


def synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def overhead_steps(teacher, student, trainer, batch):
    """The three steps compared: a teacher forward, a student training step and a distillation step."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}

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

    return {"teacher forward": teacher_forward, "student step": student_step, "distillation step": distillation_step}


def distillation_overhead(steps, autocast, rounds=30):
    """Median seconds of each step, taking turns."""
    timings = {name: [] for name in steps}
    for _ in range(rounds + 1):  # the first round warms up
        for name, step in steps.items():
            synchronize()
            started = time.perf_counter()
            with autocast():
                step()
            synchronize()
            timings[name].append(time.perf_counter() - started)
    return {name: statistics.median(values[1:]) for name, values in timings.items()}


def operator_counts(steps, autocast):
    """Operators each step dispatches (top-level aten calls): what a GPU pays per launch when small
    batches leave it waiting on the CPU, so the ratio predicts the step cost there."""
    counts = {}
    for name, step in steps.items():
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler, autocast():
            step()
        counts[name] = sum(
            event.name.startswith("aten::") and not (event.cpu_parent and event.cpu_parent.name.startswith("aten::"))
            for event in profiler.events()
        )
    return counts


def inference_speedup(teacher, student, batch_sizes=(1, 32), length=64):
    """Median milliseconds per forward of teacher and student, side by side, at each batch size.

    On a GPU both run in bf16 and in fp32; on a CPU in fp32 only.
    """
    device = next(teacher.parameters()).device
    dtypes = [torch.bfloat16, torch.float32] if device.type == "cuda" else [torch.float32]
    feeds = {
        size: {"input_ids": np.random.default_rng(0).integers(1000, 20000, (size, length))} for size in batch_sizes
    }
    results = {}
    for dtype in dtypes:
        runners = {
            name: pytorch_runner(copy.deepcopy(model).to(dtype))
            for name, model in [("teacher", teacher), ("student", student)]
        }
        latency = measure_latency(runners, feeds, threads=torch.get_num_threads())
        for size in batch_sizes:
            ms = {name: latency[name][size] for name in runners}
            results[f"{str(dtype).removeprefix('torch.')} b{size}"] = {**ms, "speedup": ms["teacher"] / ms["student"]}
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pretrained",
        help="pretrained encoder folder, or 'mpnet' for the 12-layer MPNet (default: the shipped MiniLM)",
    )
    parser.add_argument("--teacher", help="fine-tuned teacher folder (default: fine-tune --pretrained first)")
    parser.add_argument("--student-layers", type=int, default=3)
    parser.add_argument("--student-init", nargs="+", choices=["skip", "first"], default=["skip"])
    parser.add_argument("--student-init-from", choices=["pretrained", "teacher"], default="pretrained")
    parser.add_argument(
        "--methods", nargs="*", choices=list(METHODS), default=list(METHODS), help="none: no student is trained"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--max-train-samples", type=int)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--no-timing", action="store_true", help="skip the step-cost and speed-up measurements")
    parser.add_argument("--output-dir", default="runs/pkd")
    parser.add_argument("--merge", nargs="+", metavar="DIR", help="only join the pkd_results.json of these runs")
    parser.add_argument(
        "--setup", help="how the runs were made, kept in the JSON (--merge keeps the first run's when omitted)"
    )
    args = parser.parse_args()

    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    summary = merge_runs(args.merge, args.setup) if args.merge else run(args, output)
    table = results_table(summary)
    print(f"\n{summary['student_layers']}-layer students of {summary['teacher']}:\n{table}")
    if "step_seconds" in summary:
        overhead = summary["step_seconds"]
        print(
            f"\nstep cost, batch 32: teacher forward {overhead['teacher forward'] * 1000:.1f} ms, student step "
            f"{overhead['student step'] * 1000:.1f} ms, distillation step "
            f"{overhead['distillation step'] * 1000:.1f} ms = {summary['distillation_over_teacher_plus_student']:.3f}x "
            "their sum (target <= 1.10)"
        )
    if "step_operators" in summary:
        ops = summary["step_operators"]
        extra = ops["distillation step"] / (ops["teacher forward"] + ops["student step"])
        print(
            f"operators dispatched: teacher forward {ops['teacher forward']}, student step {ops['student step']}, "
            f"distillation step {ops['distillation step']} = {extra:.3f}x their sum"
        )
    if "inference_ms" in summary:
        rows = [[setting, r["teacher"], r["student"], r["speedup"]] for setting, r in summary["inference_ms"].items()]
        print("\ninference, 64 tokens:\n" + markdown_table(["setting", "teacher ms", "student ms", "speed-up"], rows))
    (output / "pkd_results.json").write_text(json.dumps(summary, indent=1))
    (output / "pkd_results.md").write_text(table + "\n")


def run(args, output):
    """Train the students of `args.methods` x inits x `args.seeds`; the summary is rewritten after each one."""
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
        tokenizer.save_pretrained(args.teacher)
        for checkpoint in (output / "teacher").glob("checkpoint-*"):
            shutil.rmtree(checkpoint)
    teacher = AutoModelForSequenceClassification.from_pretrained(args.teacher, dtype=torch.float32).eval()
    if torch.cuda.is_available():
        teacher.to("cuda")
    teacher_accuracy = evaluate_model(teacher, data["test"], desc="teacher")["accuracy"]
    source = teacher if args.student_init_from == "teacher" else None

    summary = {
        "setup": args.setup,
        "teacher": args.teacher,
        "teacher_accuracy": teacher_accuracy,
        "student_layers": args.student_layers,
        "reference": reference_for(args.teacher, args.student_layers),
        "accuracy": {},  # label -> {seed: test accuracy}
        "args": vars(args),
    }
    for method in args.methods:
        for init in args.student_init:
            for seed in args.seeds:
                set_seed(seed)
                base = source
                if base is None:
                    base = AutoModelForSequenceClassification.from_pretrained(
                        pretrained, num_labels=2, dtype=torch.float32
                    )
                student = make_student(base, args.student_layers, init=init)
                run_dir = output / f"{method}-{init}-seed{seed}"
                distillation = {}
                if METHODS[method] is not None:
                    distillation = {"trainer_class": DistillationTrainer, "teacher": teacher}
                    distillation["distillation"] = METHODS[method]
                trainer = finetune(
                    student, data, str(run_dir), epochs=args.epochs, seed=seed, **distillation, **extra_args
                )
                label = run_label(method, init, args.student_init_from, args.epochs)
                accuracy = evaluate_model(trainer.model, data["test"], desc=f"{label} seed {seed}")["accuracy"]
                summary["accuracy"].setdefault(label, {})[str(seed)] = accuracy
                print(f"{label} seed {seed}: test accuracy {accuracy:.4f}", flush=True)
                (output / "pkd_results.json").write_text(json.dumps(summary, indent=1))
                shutil.rmtree(run_dir)  # students are measured, not kept: a 12-layer run writes gigabytes
                del trainer, student

    if not args.no_timing:
        summary.update(timing(teacher, args, data, output))
    return summary


def timing(teacher, args, data, output):
    """Step cost of distillation and inference speed-up of a student over its teacher, side by side."""
    device = next(teacher.parameters()).device
    batch = {k: torch.tensor(data["train"][:32][k], device=device) for k in ("input_ids", "attention_mask", "label")}
    batch["labels"] = batch.pop("label")
    student = make_student(teacher, args.student_layers)
    timing_args = TrainingArguments(str(output / "timing"), report_to=[], use_cpu=device.type == "cpu")
    trainer = DistillationTrainer(model=student, teacher=teacher, args=timing_args, train_dataset=data["train"])

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()

    steps = overhead_steps(teacher, student, trainer, batch)
    overhead = distillation_overhead(steps, autocast)
    operators = operator_counts(steps, autocast)
    return {
        "step_seconds": overhead,
        "distillation_over_teacher_plus_student": overhead["distillation step"]
        / (overhead["teacher forward"] + overhead["student step"]),
        "step_operators": operators,
        "inference_ms": inference_speedup(teacher, student),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads",
    }


TIMING_KEYS = ("step_seconds", "distillation_over_teacher_plus_student", "step_operators", "inference_ms", "device")


def merge_runs(folders, setup=None):
    """One summary from runs of the same teacher and student depth (e.g. one per core).

    `setup` describes how the runs were made; when omitted, the first one a run records is kept, so
    merging into an earlier merged result does not lose it.
    """
    runs = [json.loads((Path(folder) / "pkd_results.json").read_text()) for folder in folders]
    common = ("teacher", "teacher_accuracy", "student_layers")
    for key in common:
        if len({json.dumps(run[key]) for run in runs}) > 1:
            raise ValueError(f"--merge: the runs differ in {key}; join only runs of one teacher and student depth.")
    merged = {"setup": setup or next((run["setup"] for run in runs if run.get("setup")), None)}
    merged.update({key: runs[0][key] for key in common})
    merged["reference"] = runs[0].get("reference") or reference_for(merged["teacher"], merged["student_layers"])
    merged["accuracy"] = {}
    for run in runs:
        for label, by_seed in run["accuracy"].items():
            merged["accuracy"].setdefault(label, {}).update(by_seed)
    timed = [run for run in runs if "step_seconds" in run]
    if timed:
        merged.update({key: timed[0][key] for key in TIMING_KEYS if key in timed[0]})
    merged["merged_from"] = list(folders)
    return merged


def results_table(summary):
    teacher_accuracy = summary["teacher_accuracy"]
    reference = summary.get("reference", {})
    rows = [["teacher", f"{teacher_accuracy:.4f}", "-", 1, "100.0%", reference.get("teacher", "-")]]
    for label, by_seed in summary["accuracy"].items():
        accuracies = list(by_seed.values())
        mean = statistics.mean(accuracies)
        spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        rows.append(
            [
                label,
                f"{mean:.4f}",
                f"{spread:.4f}",
                len(accuracies),
                f"{mean / teacher_accuracy:.1%}",
                reference.get(label, "-"),
            ]
        )
    headers = ["student", "test accuracy (mean)", "std", "seeds", "retained", "plain transformers"]
    return markdown_table(headers, rows)


if __name__ == "__main__":
    main()
