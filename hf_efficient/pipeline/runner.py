"""Running a recipe, step by step, into one output folder that an interrupted run resumes from.

Each step writes into `<step>.partial/` and renames it when done, and only then is the step marked
complete in `run_state.json` (written atomically): a folder named like a step is always whole. A
rerun skips completed steps, and a training step goes on from its last complete Trainer checkpoint.
Under `accelerate launch`, every process trains; the main process alone evaluates, exports and writes.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate import PartialState
from transformers import AutoModelForSequenceClassification, AutoTokenizer, EvalPrediction, TrainerCallback

from ..checkpoint import recorded_technique
from ..data import DEFAULT_TASK, load_text_classification, tokenize_dataset
from ..distill import DistillationTrainer, make_student
from ..encoders import layer_stack
from ..export import export_int8
from ..export.int8 import INT8_FILE, onnx_logits
from ..layerdrop import LayerDropCallback, apply_layerdrop, prune_layers
from ..metrics import compute_metrics_fn
from ..report import markdown_table, plot_accuracy_by_depth, plot_tradeoffs
from ..report.measure import (
    NOT_MEASURED,
    EnergyMeter,
    gpu_throughput,
    measure_latency,
    onnx_runner,
    pytorch_runner,
    weights_size_mb,
)
from ..sharing import share_layers
from ..training import default_model_path, evaluate_model, finetune, mpnet_path
from .recipe import MODEL_SHORTCUTS, Recipe, RecipeError, load_recipe

STATE_FILE = "run_state.json"
STEPS = ("teacher", "student", "prune", "export", "report", "card", "push")
# Where each step's output goes, and which step made each model.
FOLDERS = {"prune": "pruned", "export": "onnx", "card": "hub"}
MODEL_STEPS = {"teacher": "teacher", "student": "student", "pruned": "prune"}
# Sections that may change between a run and its resumption: they only touch the last steps.
RESUMABLE_CHANGES = ("report", "card", "push")


def run_recipe(
    recipe: Recipe | str | Path | dict,
    *,
    overrides: list[str] | None = None,
    restart: bool = False,
    callbacks: Sequence[TrainerCallback] = (),
) -> dict:
    """Run every step of a recipe and return the report (also in `<output_dir>/report.json`).

    Args:
        recipe (`Recipe`, `str`, `Path` or `dict`): The recipe or its YAML file.
        overrides (`list[str]`, *optional*): `key=value` changes, e.g. `["output_dir=runs/x"]`.
        restart (`bool`): Delete the output folder's earlier progress instead of resuming from it.
        callbacks (`Sequence[TrainerCallback]`): Added to every training step (e.g. for logging).

    Returns:
        `dict`: the report, with one entry per model the run produced.
    """
    if not isinstance(recipe, Recipe) or overrides:
        recipe = load_recipe(recipe.to_dict() if isinstance(recipe, Recipe) else recipe, overrides)
    return Run(recipe, restart=restart, callbacks=callbacks).execute()


class Run:
    """The state of one recipe run in its output folder."""

    def __init__(self, recipe: Recipe, *, restart: bool = False, callbacks: Sequence[TrainerCallback] = ()):
        self.recipe, self.output, self.callbacks = recipe, Path(recipe.output_dir), list(callbacks)
        # Without cpu=True, accelerate on a machine without GPUs would run each process alone.
        self.process = PartialState(cpu=not torch.cuda.is_available())
        if restart and self.process.is_main_process and self.output.exists():
            shutil.rmtree(self.output)
        self.process.wait_for_everyone()
        self.output.mkdir(parents=True, exist_ok=True)
        self.steps = self._load_state()
        if self.process.is_main_process:
            (self.output / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
        self.model_path = {"minilm": default_model_path, "mpnet": mpnet_path}.get(recipe.model, lambda: recipe.model)()
        source = recipe.teacher.path if recipe.teacher and recipe.teacher.path else self.model_path
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        data = recipe.data
        self.dataset = load_text_classification(
            data.source,
            text_column=data.text_column,
            label_column=data.label_column,
            max_train_samples=data.max_train_samples,
            seed=recipe.seed,
        )
        self.labels = self.dataset["train"].features["label"].names
        self.tokenized = tokenize_dataset(self.dataset, self.tokenizer, max_length=data.max_length)

    def _load_state(self) -> dict:
        path = self.output / STATE_FILE
        if not path.exists():
            return {}
        saved = json.loads(path.read_text())
        ours, theirs = _comparable(self.recipe.to_dict()), _comparable(saved["recipe"])
        if ours != theirs:
            changed = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
            raise RecipeError(
                f"{self.output} holds a run of a different recipe (changed: {', '.join(changed)}). Resume it with the "
                "same recipe, start over with --restart, or set another output_dir."
            )
        # A changed report, card or push section redoes that step and those after it.
        redo = [STEPS.index(k) for k in RESUMABLE_CHANGES if saved["recipe"].get(k) != self.recipe.to_dict().get(k)]
        return {name: record for name, record in saved["steps"].items() if STEPS.index(name) < min(redo, default=99)}

    def _save_state(self):
        path = self.output / STATE_FILE
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps({"recipe": self.recipe.to_dict(), "steps": self.steps}, indent=1))
        os.replace(scratch, path)

    def execute(self) -> dict:
        plan = [name for name in STEPS if self._wanted(name)]
        for number, name in enumerate(plan, start=1):
            if name in self.steps:
                self._say(f"[{number}/{len(plan)}] {name}: done in an earlier run, skipped")
                continue
            self._say(f"[{number}/{len(plan)}] {name}")
            started = time.perf_counter()
            folder = self.output / f"{name}.partial"
            if self.process.is_main_process:
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir(parents=True)
            self.process.wait_for_everyone()
            record = getattr(self, f"_{name}")(folder)
            if self.process.is_main_process:
                if any(folder.iterdir()):
                    final = self.output / FOLDERS.get(name, name)
                    shutil.rmtree(final, ignore_errors=True)  # left by a crash between rename and state write
                    folder.rename(final)
                else:
                    folder.rmdir()
                self.steps[name] = {**record, "seconds": round(time.perf_counter() - started, 1)}
                self._save_state()
            self.process.wait_for_everyone()
            self.steps = json.loads((self.output / STATE_FILE).read_text())["steps"]
            self._say(f"    {name} finished in {time.perf_counter() - started:.0f} s")
        if self.process.is_main_process:  # every model is saved whole: the Trainer checkpoints can go
            shutil.rmtree(self.output / "checkpoints", ignore_errors=True)
        report = self.output / "report.json"
        return json.loads(report.read_text()) if report.exists() else {}

    def _wanted(self, step: str) -> bool:
        return step == "report" or getattr(self.recipe, step) is not None

    def _say(self, message: str):
        if self.process.is_main_process:
            print(message, flush=True)

    # Models --------------------------------------------------------------------------------------

    def _model_folder(self, model: str) -> Path:
        path = Path(self.steps[MODEL_STEPS[model]]["path"])
        return path if path.is_absolute() else self.output / path

    def _load(self, model: str):
        return AutoModelForSequenceClassification.from_pretrained(self._model_folder(model))

    def _pretrained(self):
        return AutoModelForSequenceClassification.from_pretrained(
            self.model_path,
            num_labels=len(self.labels),
            id2label=dict(enumerate(self.labels)),
            label2id={label: i for i, label in enumerate(self.labels)},
        )

    def _last_trained(self) -> str:
        return "pruned" if self.steps.get("prune", {}).get("path") else "student" if self.recipe.student else "teacher"

    def _train(self, model, section, folder: Path, name: str, **distillation) -> dict:
        callbacks = list(self.callbacks)
        if section.layerdrop is not None:
            apply_layerdrop(model, section.layerdrop)
            callbacks.append(LayerDropCallback())
        checkpoints = self.output / "checkpoints" / name
        resume = _last_complete_checkpoint(checkpoints)
        if resume:
            self._say(f"    resuming from {resume}")
        started = time.perf_counter()
        with EnergyMeter() as meter:
            trainer = finetune(
                model,
                self.tokenized,
                str(checkpoints),
                epochs=section.epochs,
                batch_size=section.batch_size,
                learning_rate=section.learning_rate,
                seed=self.recipe.seed,
                bf16=section.bf16,
                callbacks=callbacks,
                resume_from_checkpoint=resume,
                **distillation,
            )
        trainer.save_model(str(folder))
        if self.process.is_main_process:
            self.tokenizer.save_pretrained(folder)
            # Trainer's pickled arguments would travel to the Hub; recipe.yaml holds the same settings.
            (folder / "training_args.bin").unlink(missing_ok=True)
        return {
            "path": FOLDERS.get(name, name),
            "training_seconds": round(time.perf_counter() - started, 1),
            "resumed_from": resume,
            "processes": self.process.num_processes,
            "training_joules": meter.joules,
            "energy_source": meter.source,
        }

    # Steps ---------------------------------------------------------------------------------------

    def _teacher(self, folder: Path) -> dict:
        teacher = self.recipe.teacher
        if teacher.path:
            if not Path(teacher.path, "config.json").is_file():
                raise RecipeError(f"teacher.path={teacher.path!r} has no config.json: give a fine-tuned model folder.")
            return {"path": str(Path(teacher.path).resolve()), "training_seconds": None}
        return self._train(self._pretrained(), teacher, folder, "teacher")

    def _student(self, folder: Path) -> dict:
        section = self.recipe.student
        teacher = self._load("teacher").eval() if self.recipe.teacher else None
        base = teacher if section.init_from == "teacher" else self._pretrained()
        student = make_student(base, section.num_layers or len(layer_stack(base)), init=section.init)
        if section.sharing is not None:
            share_layers(student, section.sharing)
        distillation = {}
        if section.distillation is not None:
            distillation = {
                "trainer_class": DistillationTrainer,
                "teacher": teacher,
                "distillation": section.distillation,
            }
        return self._train(student, section, folder, "student", **distillation)

    def _prune(self, folder: Path) -> dict:
        section = self.recipe.prune
        source = section.model or ("student" if self.recipe.student else "teacher")
        record = {"source": source, "depths": {}, "path": None}
        if self.process.is_main_process:
            model = self._load(source)
            depth = len(layer_stack(model))
            # Without depths, a run that keeps one depth skips the sweep; a run that keeps none sweeps all.
            depths = section.depths if section.depths is not None else [] if section.num_layers else range(depth, 1, -1)
            if any(d > depth for d in [*depths, section.num_layers or 0]):
                raise RecipeError(
                    f"prune: the {source} has only {depth} layers; depths and num_layers must be <= {depth}."
                )
            for depth in depths:
                pruned = prune_layers(self._load(source), depth)
                metrics = evaluate_model(pruned, self.tokenized["test"], desc=f"{source} at {depth} layers")
                record["depths"][str(depth)] = metrics["accuracy"]
            if section.num_layers:
                prune_layers(model, section.num_layers).save_pretrained(folder)
                self.tokenizer.save_pretrained(folder)
                record["path"] = FOLDERS["prune"]
        return record

    def _export(self, folder: Path) -> dict:
        section = self.recipe.export
        source = section.model or self._last_trained()
        if not self.process.is_main_process:
            return {}
        train = self.tokenized["train"].shuffle(seed=self.recipe.seed)
        calibration = train.select(range(min(section.calibration_samples, len(train))))
        result = export_int8(
            self._load(source),
            str(folder),
            tokenizer=self.tokenizer,
            mode=section.mode,
            calibration_dataset=calibration if section.mode == "static" else None,
            per_channel=section.per_channel,
            approximate_gelu=section.approximate_gelu,
            target=section.target,
            eval_dataset=self.tokenized["test"],
            max_accuracy_drop=section.max_accuracy_drop,
            allow_fallback=section.allow_fallback,
        )
        return {"path": FOLDERS["export"], "source": source, **result.to_dict()}

    def _report(self, folder: Path) -> dict:
        if self.process.is_main_process:
            report = self._measure()
            write_report(report, self.output)
        return {"path": None}

    def _card(self, folder: Path) -> dict:
        from ..hub import write_model_card

        if not self.process.is_main_process:
            return {}
        report = json.loads((self.output / "report.json").read_text())
        final = next(m for m in report["models"] if m["name"] == report["final"])
        source = final.get("source", final["name"])
        shutil.copytree(self._model_folder(source), folder, dirs_exist_ok=True)
        if "export" in self.steps:
            shutil.copytree(self.output / FOLDERS["export"], folder / "onnx")
        for name in ["report.json", "report.md", "recipe.yaml", *report["plots"]]:
            shutil.copy(self.output / name, folder / name)
        section = self.recipe.card
        write_model_card(
            folder,
            report,
            (self.output / "recipe.yaml").read_text(),
            license=section.license,
            language=section.language,
            repo_id=self.recipe.push.repo_id if self.recipe.push else None,
        )
        return {"path": FOLDERS["card"]}

    def _push(self, folder: Path) -> dict:
        from ..hub import push_to_hub

        if not self.process.is_main_process:
            return {}
        section = self.recipe.push
        url = push_to_hub(self.output / FOLDERS["card"], section.repo_id, private=section.private)
        return {"path": None, "url": url}

    # Measuring -----------------------------------------------------------------------------------

    def _measure(self) -> dict:
        """Accuracy, size, latency and energy of every model the run produced, side by side."""
        recipe, models = self.recipe, {}
        for name, step in MODEL_STEPS.items():
            if self.steps.get(step, {}).get("path"):
                models[name] = self._model_folder(name)
        if "export" in self.steps:
            source = self.steps["export"]["source"]
            models[f"{source}-int8"] = self.output / FOLDERS["export"] / INT8_FILE
        settings = recipe.report
        entries = measure_models(
            models,
            self.tokenized["test"],
            batch_sizes=settings.batch_sizes,
            sequence_length=settings.sequence_length,
            threads=settings.threads or os.cpu_count(),
            seconds=settings.seconds_per_measurement,
        )
        by_name = {entry["name"]: entry for entry in entries}
        for entry in entries:
            name, step = entry["name"], MODEL_STEPS.get(entry["name"])
            path = Path(entry["path"])
            entry["path"] = str(path.relative_to(self.output)) if path.is_relative_to(self.output) else str(path)
            if step is None:  # the int8 export of `source`
                source = by_name[self.steps["export"]["source"]]
                record = self.steps["export"]
                entry.update(
                    source=source["name"],
                    kind="int8",
                    techniques=[*source["techniques"], "int8"],
                    layers=source["layers"],
                    parameters=source["parameters"],
                    export={"backend": record["backend"], "mode": record["mode"], "chosen": record["chosen"]},
                )
                continue
            if name == "pruned":
                entry["techniques"] = [*by_name[self.steps["prune"]["source"]]["techniques"], "pruning"]
            entry["kind"] = _kind(name, entry["techniques"])
            entry["training_seconds"] = self.steps[step].get("training_seconds")
            entry["energy"]["training_joules"] = self.steps[step].get("training_joules")
        depths = {}
        if self.steps.get("prune", {}).get("depths"):
            depths[self.steps["prune"]["source"]] = self.steps["prune"]["depths"]
        return {
            "name": recipe.name,
            "base_model": MODEL_SHORTCUTS.get(recipe.model, recipe.model),
            "task": {
                "dataset": "rotten_tomatoes" if recipe.data.source == DEFAULT_TASK else recipe.data.source,
                "split": "test",
                "rows": len(self.tokenized["test"]),
                "metric": "accuracy",
            },
            "hardware": _hardware(settings.threads or os.cpu_count()),
            "reference": entries[0]["name"],
            "final": entries[-1]["name"],
            "techniques": sorted({t for e in entries for t in e["techniques"]}),
            "models": entries,
            "depths": depths,
            "plots": [],
            "steps": {name: record.get("seconds") for name, record in self.steps.items()},
        }


def measure_models(
    models: dict[str, str | Path],
    dataset,
    *,
    batch_sizes: Sequence[int] = (1, 32),
    sequence_length: int = 64,
    threads: int | None = None,
    seconds: float = 3.0,
) -> list[dict]:
    """Measure models side by side on a tokenized test split; the first one is the reference.

    Args:
        models (`dict[str, str | Path]`): Name -> a saved model folder (PyTorch) or an `.onnx` file.
        dataset (`datasets.Dataset`): Tokenized rows with `label`.
        batch_sizes (`Sequence[int]`): Batch sizes of the CPU latency measurement.
        sequence_length (`int`): Tokens per row in the latency measurement.
        threads (`int`, *optional*): CPU threads (default: all cores).
        seconds (`float`): Time spent per model and batch size.

    Returns:
        `list[dict]`: per model, `metrics`, `parameters`, `layers`, `size_mb`, `latency_ms` and `speedup`
        per batch size, `accuracy_retained`, `gpu_throughput` and `energy` (None where not measured).
    """
    if not models:
        raise ValueError("measure_models: give at least one model folder or .onnx file.")
    threads = threads or os.cpu_count()
    entries, runners, modules = [], {}, {}
    labels = np.asarray(dataset["label"])
    for name, path in models.items():
        path = Path(path)
        if not path.exists():
            raise ValueError(f"measure_models: {name}={str(path)!r} does not exist.")
        entry = {"name": name, "path": str(path), "techniques": [], "training_seconds": None, "gpu_throughput": None}
        if path.suffix == ".onnx":
            with EnergyMeter() as meter:
                logits = onnx_logits(path, dataset)
            metrics = compute_metrics_fn()(EvalPrediction(predictions=logits, label_ids=labels))
            entry.update(format="onnx", layers=None, parameters=None, kind="onnx")
            runners[name] = onnx_runner(path, threads)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(path).eval()
            with EnergyMeter() as meter:
                metrics = evaluate_model(model, dataset, desc=f"{name} on test")
            entry.update(format="pytorch", layers=len(layer_stack(model)), kind="pytorch")
            entry.update(parameters=sum(p.numel() for p in model.parameters()), techniques=_techniques(model))
            runners[name], modules[name] = pytorch_runner(model), model
        entry.update(
            size_mb=round(weights_size_mb(path), 2), metrics=metrics, energy=_energy(None, meter, len(dataset))
        )
        entries.append(entry)

    feeds = {}
    for size in batch_sizes:
        rows = dataset.select([i % len(dataset) for i in range(size)])
        columns = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in rows.column_names]
        feeds[size] = {c: np.asarray(rows[c], dtype=np.int64)[:, :sequence_length] for c in columns}
    print(
        f"    CPU latency of {len(runners)} models at batch sizes {list(batch_sizes)} on {threads} threads", flush=True
    )
    latency = measure_latency(runners, feeds, threads=threads, seconds=seconds)
    reference = entries[0]
    for entry in entries:
        name = entry["name"]
        if name in modules:
            entry["gpu_throughput"] = gpu_throughput(modules[name], feeds[max(batch_sizes)])
        entry["latency_ms"] = {str(s): round(latency[name][s], 3) for s in batch_sizes}
        entry["speedup"] = {str(s): latency[reference["name"]][s] / latency[name][s] for s in batch_sizes}
        entry["accuracy_retained"] = entry["metrics"]["accuracy"] / reference["metrics"]["accuracy"]
    return entries


def _hardware(threads: int) -> dict:
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").is_file():
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cpu_threads": threads,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_report(report: dict, output: Path) -> None:
    """Write `report.json`, `report.md` and the plots into the run folder."""
    if report["depths"]:
        plot_accuracy_by_depth(
            {name: {int(d): a for d, a in by_depth.items()} for name, by_depth in report["depths"].items()},
            output / "accuracy_by_depth.png",
            title="test accuracy after pruning, without retraining",
        )
        report["plots"].append("accuracy_by_depth.png")
    report["plots"] += plot_tradeoffs(report["models"], output)
    (output / "report.json").write_text(json.dumps(report, indent=1))
    (output / "report.md").write_text(report_markdown(report))


def report_markdown(report: dict) -> str:
    """The report's table, one row per model, with speed-up and accuracy retained against the reference."""
    sizes = list(report["models"][0]["latency_ms"])
    header = ["model", "kind", "layers", "params (M)", "size (MB)", "accuracy", "retained"]
    header += [f"CPU ms b{s}" for s in sizes] + [f"speed-up b{s}" for s in sizes]
    header += ["GPU rows/s", "training (s)", "training energy (J)", "J per 1,000 predictions"]
    rows = []
    for m in report["models"]:
        energy = m["energy"]
        rows.append(
            [m["name"], m["kind"], m["layers"] or "-", _number(m["parameters"] and m["parameters"] / 1e6, 2)]
            + [_number(m["size_mb"], 1), m["metrics"]["accuracy"], m["accuracy_retained"]]
            + [_number(m["latency_ms"][s], 2) for s in sizes]
            + [f"{m['speedup'][s]:.2f}x" for s in sizes]
            + [_number(m["gpu_throughput"], 0), _number(m["training_seconds"], 0, missing="-")]
            + [_number(energy["training_joules"], 0), _number(energy["per_1000_predictions_joules"], 1)]
        )
    hardware = report["hardware"]
    return (
        f"# {report['name']}\n\n"
        f"Test split of {report['task']['dataset']} ({report['task']['rows']} rows); CPU latency on "
        f"{hardware['cpu_threads']} threads of {hardware['cpu']}, side by side in one run; speed-up and accuracy "
        f"retained against `{report['reference']}`.\n\n{markdown_table(header, rows)}\n"
    )


def _number(value, decimals: int, missing: str = NOT_MEASURED) -> str:
    return missing if value is None else f"{value:,.{decimals}f}"


def _energy(training_joules, meter: EnergyMeter, predictions: int) -> dict:
    per_1000 = None if meter.joules is None else meter.joules / predictions * 1000
    return {"training_joules": training_joules, "per_1000_predictions_joules": per_1000, "source": meter.source}


def _techniques(model) -> list[str]:
    """What the model's config records about how it was trained (the student's layer choice is not pruning)."""
    config, techniques = model.config, []
    if recorded_technique(config, "layerdrop"):
        techniques.append("layerdrop")
    distillation = recorded_technique(config, "distillation")
    if distillation:
        techniques.append("pkd" if distillation["method"] == "pkd" else "knowledge-distillation")
    if recorded_technique(config, "sharing"):
        techniques.append("albert-sharing")
    return techniques


def _kind(name: str, techniques: list[str]) -> str:
    if name == "pruned":
        return "pruned"
    for technique, kind in (("albert-sharing", "shared"), ("pkd", "pkd"), ("knowledge-distillation", "pkd")):
        if technique in techniques:
            return kind
    return "layerdrop" if "layerdrop" in techniques else "finetuned"


def _last_complete_checkpoint(folder: Path) -> str | None:
    # Trainer writes trainer_state.json last: a checkpoint without it was cut off mid-write.
    complete = [c for c in folder.glob("checkpoint-*") if (c / "trainer_state.json").is_file()]
    return str(max(complete, key=lambda c: int(c.name.split("-")[1]))) if complete else None


def _comparable(recipe: dict) -> dict:
    return {k: v for k, v in recipe.items() if k not in RESUMABLE_CHANGES}
