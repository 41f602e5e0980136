"""The recipe steps of `task: sentence-embedding`: the sentence-transformers twins of `recipe.steps`.

The teacher is the pretrained embedding model itself (`model`, or `teacher.path`), never fine-tuned;
the student is a shallower copy distilled on the training texts (embedding distillation, see
`distill.embedding`); the export is `export_int8`'s sentence-transformers folder; the report measures
embedding quality (to the teacher), size and latency side by side; the card is a sentence-transformers card.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from ..metrics.embedding import embedding_quality

# The sections a sentence-embedding recipe can use, and the one technique its student takes.
_REFUSED = ("prune",)
_STUDENT_TECHNIQUES = ("distillation",)
# Latency is timed on the first test texts, at most this many (enough for a steady figure).
LATENCY_TEXTS = 256


def check_recipe(recipe, error) -> None:
    """Refuse what a sentence-embedding recipe cannot do, in one line naming the field (`error`: RecipeError)."""
    teacher = recipe.teacher
    if teacher is not None and not teacher.path:
        raise error(
            f"task={recipe.task!r}: the teacher is the pretrained embedding model, not fine-tuned; "
            "give `teacher: {path: <sentence-transformers folder>}` or drop the teacher section."
        )
    for name in _REFUSED:
        if getattr(recipe, name) is not None:
            raise error(f"task={recipe.task!r} has no {name} step; drop the `{name}` section.")
    if recipe.student is not None:
        other = [name for name in recipe.student.techniques if name not in _STUDENT_TECHNIQUES]
        if other:
            raise error(f"student.{other[0]}: a sentence-embedding student takes only `distillation`; drop it.")


def _st(path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu").eval()


def _teacher_path(run) -> Path:
    return run.model_folder("teacher") if run.made("teacher") else Path(run.model_path)


def teacher(run, folder: Path) -> dict:
    return {"path": str(Path(run.recipe.teacher.path).resolve()), "training_seconds": None}


def student(run, folder: Path) -> dict:
    from transformers import TrainingArguments

    from ..distill import DistillationTrainer, PKDConfig, make_student
    from ..encoders import layer_stack
    from ..report.measure import EnergyMeter
    from .model import sentence_encoder

    section = run.recipe.student
    fixed = _st(_teacher_path(run))
    base = fixed if section.init_from == "teacher" else _st(run.model_path)
    model = make_student(base, section.num_layers or len(layer_stack(sentence_encoder(base))), init=section.init)
    args = TrainingArguments(
        str(run.output / "checkpoints" / "student"),
        num_train_epochs=section.epochs,
        per_device_train_batch_size=section.batch_size,
        learning_rate=section.learning_rate,
        bf16=section.bf16,
        seed=run.recipe.seed,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
    )
    started = time.perf_counter()
    with EnergyMeter() as meter:
        trainer = DistillationTrainer(
            model=model.train(),
            teacher=fixed,
            distillation=section.distillation or PKDConfig(),
            args=args,
            train_dataset=run.dataset["train"].select_columns(["text"]),
            callbacks=list(run.callbacks),
        )
        trainer.train()
    if run.process.is_main_process:  # every process trained the same model (`accelerate launch`)
        model.eval().save(str(folder))
    return {
        "path": "student",
        "training_seconds": round(time.perf_counter() - started, 1),
        "training_joules": meter.joules,
        "energy_source": meter.source,
    }


def export(run, folder: Path) -> dict:
    from ..export import export_int8

    section = run.recipe.export
    source = section.model or run.last_trained()
    path = run.model_folder(source) if run.made(source) else _teacher_path(run)
    result = export_int8(
        _st(path),
        str(folder),
        section.config(),
        calibration_dataset=run.dataset["train"].shuffle(seed=run.recipe.seed),
        eval_dataset=run.dataset["test"],
    )
    return {"path": "onnx", "source": source, **result.to_dict()}


def _size_mb(files) -> float:
    return round(sum(Path(f).stat().st_size for f in files) / 2**20, 3)


def _latency_ms(encode, texts, seconds: float) -> float:
    """Milliseconds per text, embedding the test texts in batches of 32 for about `seconds`."""
    encode(texts[:32])  # warm-up
    started, rounds = time.perf_counter(), 0
    while True:
        encode(texts)
        rounds += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return round(1000 * elapsed / (rounds * len(texts)), 4)


def report(run, folder: Path) -> dict:
    """Embed the test texts with every model the run made: quality against the teacher, size, latency."""
    from . import SentenceEmbedder

    settings, data = run.recipe.report, run.dataset
    test, train = list(data["test"]["text"]), list(data["train"]["text"])
    labelled = "label" in data["test"].column_names
    if settings.threads:
        torch.set_num_threads(settings.threads)
    encoders = {"teacher": (_teacher_path(run), None)}
    if run.made("student"):
        encoders["student"] = (run.model_folder("student"), None)
    if "export" in run.steps:
        record = run.steps["export"]
        encoders[f"{record['source']}-int8"] = (run.output / "onnx", record["int8_file"])
    teacher_vectors = None
    entries = []
    for name, (path, onnx_file) in encoders.items():
        if onnx_file is None:
            model = _st(path)
            encode = lambda texts, model=model: model.encode(texts, batch_size=32, convert_to_numpy=True)  # noqa: E731
            weights = [p for p in Path(path).glob("*.safetensors")] or list(Path(path).glob("*.bin"))
            layers = model[0].auto_model.config.num_hidden_layers
            parameters = sum(p.numel() for p in model.parameters())
        else:
            encode = SentenceEmbedder(str(path), onnx_file, threads=settings.threads)
            weights = [Path(path) / onnx_file]
            source = next(e for e in entries if e["name"] == run.steps["export"]["source"])
            layers, parameters = source["layers"], source["parameters"]
        vectors, train_vectors = encode(test), encode(train) if labelled else None
        teacher_vectors = vectors if teacher_vectors is None else teacher_vectors
        quality = embedding_quality(
            vectors,
            teacher_vectors,
            labels=np.asarray(data["test"]["label"]) if labelled else None,
            train=train_vectors,
            train_labels=np.asarray(data["train"]["label"]) if labelled else None,
            k=min(10, len(test) - 1),
        )
        entries.append(
            {
                "name": name,
                "path": str(Path(path).relative_to(run.output)) if Path(path).is_relative_to(run.output) else str(path),
                "file": onnx_file,
                "layers": layers,
                "parameters": parameters,
                "size_mb": _size_mb(weights),
                "latency_ms_per_text": _latency_ms(encode, test[:LATENCY_TEXTS], settings.seconds_per_measurement),
                "metrics": {k: round(v, 4) for k, v in quality.items()},
                "training_seconds": run.steps.get("student", {}).get("training_seconds") if name == "student" else None,
            }
        )
    result = {
        "name": run.recipe.name,
        "task": run.recipe.task,
        "base_model": _base_model(run),
        "dataset": run.dataset_name,
        "split": "test",
        "rows": len(test),
        "threads": settings.threads,
        "models": entries,
        "final": entries[-1]["name"],
    }
    (run.output / "report.json").write_text(json.dumps(result, indent=1))
    (run.output / "report.md").write_text(_markdown(result))
    return {"path": None}


def _base_model(run) -> str:
    from ..recipe.config import MODEL_SHORTCUTS

    return MODEL_SHORTCUTS.get(run.recipe.model, run.recipe.model)


def _markdown(report: dict) -> str:
    metrics = list(dict.fromkeys(k for entry in report["models"] for k in entry["metrics"]))
    head = ["model", "layers", "size (MB)", "ms / text", *metrics]
    rows = [
        [e["name"], e["layers"], e["size_mb"], e["latency_ms_per_text"], *[e["metrics"].get(m, "") for m in metrics]]
        for e in report["models"]
    ]
    lines = [
        f"# {report['name']}: {report['task']}",
        "",
        f"Embedding quality on the {report['rows']} {report['split']} texts of {report['dataset']}, "
        "measured against the teacher's embeddings; latency embeds (up to 256 of) those texts in batches of 32 "
        "on this CPU.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(str(v) for v in row) + " |" for row in rows),
    ]
    return "\n".join(lines) + "\n"


def card(run, folder: Path) -> dict:
    """The hub folder: the final model's sentence-transformers folder (with onnx/ when exported) and its card."""
    report = json.loads((run.output / "report.json").read_text())
    final = next(e for e in report["models"] if e["name"] == report["final"])
    source = run.output / "onnx" if final["file"] else Path(final["path"])
    source = source if source.is_absolute() else run.output / source
    shutil.copytree(source, folder, dirs_exist_ok=True)
    for name in ("report.json", "report.md", "recipe.yaml"):
        shutil.copy(run.output / name, folder / name)
    section = run.recipe.card
    (folder / "README.md").write_text(model_card(report, section.license, section.language, run.recipe.push))
    return {"path": "hub"}


def model_card(report: dict, license: str, language: str, push=None) -> str:
    """A sentence-transformers model card: metadata, usage (PyTorch and ONNX) and the report's table."""
    final = next(e for e in report["models"] if e["name"] == report["final"])
    repo = push.repo_id if push else "path/to/this/folder"
    metadata = {
        "language": language,
        "license": license,
        "library_name": "sentence-transformers",
        "pipeline_tag": "sentence-similarity",
        "tags": ["sentence-transformers", "feature-extraction", "hf_efficient"],
    }
    if report["base_model"].count("/") == 1 and not Path(report["base_model"]).exists():
        metadata["base_model"] = report["base_model"]
    onnx = ""
    if final["file"]:
        onnx = (
            "\nThe int8 ONNX model (`pip install sentence-transformers[onnx]`):\n\n```python\n"
            "from sentence_transformers import SentenceTransformer\n\n"
            f'model = SentenceTransformer("{repo}", backend="onnx", model_kwargs={{"file_name": "{final["file"]}"}})\n'
            'embeddings = model.encode(["A delight from start to finish.", "A mess."])\n```\n'
        )
    body = (
        f"# {report['name']}\n\n"
        f"A compressed sentence embedding model made with hf_efficient from `{report['base_model']}`.\n\n"
        "## Usage\n\n```python\nfrom sentence_transformers import SentenceTransformer\n\n"
        f'model = SentenceTransformer("{repo}")\n'
        'embeddings = model.encode(["A delight from start to finish.", "A mess."])\n```\n'
        f"{onnx}\n## Evaluation\n\n" + _markdown(report).split("\n", 2)[2]
    )
    return "---\n" + yaml.safe_dump(metadata, sort_keys=False) + "---\n\n" + body


STEPS = {"teacher": teacher, "student": student, "export": export, "report": report, "card": card}
