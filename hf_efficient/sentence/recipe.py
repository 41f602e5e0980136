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

from ..metrics.embedding import embedding_quality

# The sections a sentence-embedding recipe can use, and the one technique its student takes.
_REFUSED = ("prune",)
_STUDENT_TECHNIQUES = ("distillation",)


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
    if recipe.data.label_names is not None:  # labels only score kNN accuracy: same or not, never by name
        raise error(
            f"data.label_names={recipe.data.label_names}: a sentence-embedding run reads labels only to score kNN "
            "accuracy, where their names play no part; leave it out."
        )
    default_length = type(recipe.data)().max_length
    if recipe.data.max_length != default_length:  # the models embed as they will in use
        raise error(
            f"data.max_length={recipe.data.max_length}: a sentence-embedding run embeds up to the model's own "
            "max_seq_length (set model.max_seq_length and save the model to change it); leave data.max_length out."
        )
    if recipe.student is not None:
        other = [name for name in recipe.student.techniques if name not in _STUDENT_TECHNIQUES]
        if other:
            raise error(f"student.{other[0]}: a sentence-embedding student takes only `distillation`; drop it.")


def check_export_modules(folder, error) -> None:
    """Refuse, before the run starts, a recipe export of a model with modules `SentenceEmbedder` does not run
    (Dense): the recipe checks the export by running it with SentenceEmbedder (`error`: RecipeError)."""
    from .embedder import MODULES

    path = Path(folder) / "modules.json"
    modules = json.loads(path.read_text()) if path.is_file() else []
    others = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules if isinstance(m, dict)]
    others = [name for name in others if name not in MODULES]
    if others:
        raise error(
            f"export: {folder} has a {others[0]} module, and the recipe checks its int8 export with SentenceEmbedder, "
            f"which runs {', '.join(MODULES)} only; drop the export section and call export_int8(model, out) "
            "without eval_dataset, then check it with SentenceTransformer(out, backend='onnx')."
        )


def max_seq_length(folder) -> int | None:
    """The tokens a sentence-transformers folder embeds at most (its `max_seq_length`); None where unrecorded.
    sentence-transformers 5 keeps it as the tokenizer's `model_max_length`, earlier versions in their own config."""
    for name, key in (("sentence_bert_config.json", "max_seq_length"), ("tokenizer_config.json", "model_max_length")):
        path = Path(folder) / name
        value = json.loads(path.read_text()).get(key) if path.is_file() else None
        if isinstance(value, int) and value < 1_000_000:  # transformers' "no limit" is 1e30
            return value
    return None


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
    config = section.config()
    static = config.mode == "static"
    result = export_int8(
        _st(path),
        str(folder),
        config,
        calibration_dataset=run.dataset["train"].shuffle(seed=run.recipe.seed) if static else None,
        eval_dataset=run.dataset["test"],
    )
    return {"path": "onnx", "source": source, **result.to_dict()}


def report(run, folder: Path) -> dict:
    """Measure every model the run made side by side, as `recipe.steps.report` does for the other tasks:
    embedding quality of the test texts against the teacher's, size, and CPU latency of the encoders in
    turns (pooling, the same small cost for all, is left out); writes the typed report (`write_report`)."""
    from datasets import Dataset

    from ..recipe.steps import describe_export, run_report, write_report
    from ..report import ModelEntry
    from ..report.cpu import usable_cores
    from ..report.measure import (
        EnergyMeter,
        bf16_entry,
        latency_feeds,
        onnx_runner,
        pytorch_runner,
        recorded_techniques,
        time_side_by_side,
        wants_bf16,
        weights_size_mb,
    )
    from ..techniques import PRETRAINED, kind_of
    from . import SentenceEmbedder
    from .model import sentence_encoder

    settings, data = run.recipe.report, run.dataset
    threads = settings.threads or usable_cores()
    test, train = list(data["test"]["text"]), list(data["train"]["text"])
    labelled = "label" in data["test"].column_names
    # Ranked by kNN accuracy where the texts have labels; without them, by closeness to the teacher.
    metric = "knn_accuracy" if labelled else run.task.metric
    teacher_vectors = None
    embedded = len(test) + len(train) * labelled  # texts each model embeds

    def quality(encode) -> dict[str, float]:
        nonlocal teacher_vectors
        vectors = encode(test)
        teacher_vectors = vectors if teacher_vectors is None else teacher_vectors
        scores = embedding_quality(
            vectors,
            teacher_vectors,
            labels=np.asarray(data["test"]["label"]) if labelled else None,
            train=encode(train) if labelled else None,
            train_labels=np.asarray(data["train"]["label"]) if labelled else None,
            k=min(10, len(test) - 1),
        )
        return {key: round(value, 4) for key, value in scores.items()}

    def st_encode(model):
        return lambda texts: model.encode(texts, batch_size=32, convert_to_numpy=True)

    paths = {"teacher": _teacher_path(run)}
    if run.made("student"):
        paths["student"] = run.model_folder("student")
    entries, runners, modules, tokenizer = [], {}, {}, None
    for name, path in paths.items():
        model = _st(path)
        tokenizer = tokenizer if entries else model.tokenizer  # the teacher's (the student shares it)
        encoder = sentence_encoder(model)
        entry = ModelEntry(name=name, path=_relative(run, path), layers=encoder.config.num_hidden_layers)
        entry.parameters = sum(p.numel() for p in model.parameters())
        entry.settings = recorded_techniques(encoder.config)
        entry.techniques, entry.kind = list(entry.settings), kind_of(list(entry.settings))
        if name == "teacher" and not entry.techniques:  # the embedding model as given, not fine-tuned here
            entry.kind = PRETRAINED
        entry.size_mb = round(weights_size_mb(path), 2)
        with EnergyMeter() as meter:
            entry.metrics = quality(st_encode(model))
        entry.energy.per_1000_predictions_joules = None if meter.joules is None else meter.joules / embedded * 1000
        entry.energy.source = meter.source
        step = run.steps.get(name, {})
        entry.training_seconds, entry.energy.training_joules = step.get("training_seconds"), step.get("training_joules")
        entries.append(entry)
        runners[name], modules[name] = pytorch_runner(encoder), encoder
        if name == "teacher" and wants_bf16(settings.bf16_baseline):
            bf16, cast = bf16_entry(entry, model, lambda cast: quality(st_encode(cast)))
            entries.append(bf16)
            runners[bf16.name], modules[bf16.name] = pytorch_runner(sentence_encoder(cast)), sentence_encoder(cast)
    if "export" in run.steps:
        record = run.steps["export"]
        source = next(e for e in entries if e.name == record["source"])
        onnx_file = run.output / "onnx" / record["int8_file"]
        entry = ModelEntry(f"{source.name}-int8", _relative(run, onnx_file), format="onnx")
        describe_export(entry, source, record)
        entry.size_mb = round(weights_size_mb(onnx_file), 2)
        entry.metrics = quality(SentenceEmbedder(str(run.output / "onnx"), record["int8_file"], threads=threads))
        entries.append(entry)
        runners[entry.name] = onnx_runner(onnx_file, threads)
    # By default data.max_length's tokens, or fewer where the teacher embeds fewer (its max_seq_length).
    length = settings.sequence_length or min(run.recipe.data.max_length, max_seq_length(paths["teacher"]) or 512)
    tokenized = tokenizer(test[: max(settings.batch_sizes)], padding="max_length", truncation=True, max_length=length)
    timing = time_side_by_side(
        entries,
        runners,
        modules,
        latency_feeds(Dataset.from_dict(dict(tokenized)), settings.batch_sizes, length),
        metric=metric,
        threads=threads,
        seconds=settings.seconds_per_measurement,
    )
    result = run_report(run, entries, timing, threads=threads, rows=len(test), metric=metric)
    write_report(result, run.output)
    return {"path": None}


def _relative(run, path: Path) -> str:
    path = Path(path)
    return str(path.relative_to(run.output)) if path.is_relative_to(run.output) else str(path)


def card(run, folder: Path) -> dict:
    """The hub folder: the final model's sentence-transformers folder (with onnx/ when exported) and its card."""
    from ..recipe.steps import write_card
    from ..report import Report

    result = Report.load(run.output / "report.json")
    final = result.model(result.final)
    # The export is a whole sentence-transformers folder, its ONNX files under onnx/ (sentence-transformers' layout).
    shutil.copytree(
        run.output / "onnx" if final.format == "onnx" else run.output / final.path, folder, dirs_exist_ok=True
    )
    return write_card(run, folder, result)


STEPS = {"teacher": teacher, "student": student, "export": export, "report": report, "card": card}
