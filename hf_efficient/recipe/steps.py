"""The steps of a recipe, in order: each a function `(run, folder) -> record` that writes into `folder`.

`run` is the `Run` of `recipe.run` (the recipe, the output folder, the completed steps, the data,
loaded when a step first asks for it). A step returns what `run_state.json` records of it; a
`path` in the record names the model folder it made, relative to the run's folder. Under
`accelerate launch` every process runs the training steps; the others run on the main process.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from transformers import TrainerCallback

from ..distill import make_student
from ..export import INT8_FILE, export_int8
from ..layerdrop import prune_layers
from ..report import (
    ModelEntry,
    Report,
    TaskInfo,
    measure_models,
    plot_accuracy_by_depth,
    plot_tradeoffs,
    report_markdown,
)
from ..report.cpu import usable_cores
from ..report.measure import EnergyMeter, hardware
from ..techniques import TECHNIQUES
from ..training import TrainingConfig, finetune
from .config import base_model_id
from .state import MADE_BY, last_complete_checkpoint


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable
    folder: str  # where its output goes in the run's folder
    wanted: Callable  # recipe -> whether the recipe runs this step
    every_process: bool = False  # training runs on every process of `accelerate launch`


class TrainingClock(TrainerCallback):
    """Writes into each checkpoint the training seconds up to it, those of the run it resumed included, so that a
    resumed step reports its whole training time, not only its last part (the time after the last checkpoint of
    an interrupted run made nothing that was kept, and is not counted)."""

    FILE = "hf_efficient_training_seconds.json"

    def __init__(self, resume: str | None):
        saved = Path(resume, self.FILE) if resume else None
        self.before = json.loads(saved.read_text())["seconds"] if saved and saved.is_file() else 0.0
        self.known = resume is None or self.before > 0  # a checkpoint written before this clock: time unknown
        self.started = time.perf_counter()

    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.started

    def on_save(self, args, state, control, **kwargs):
        checkpoint = Path(args.output_dir, f"checkpoint-{state.global_step}")
        if state.is_world_process_zero and checkpoint.is_dir():
            (checkpoint / self.FILE).write_text(json.dumps({"seconds": self.seconds()}))


def _train(run, model, section, folder: Path, name: str, teacher=None) -> dict:
    """Apply the section's techniques (in table order) to `model`, fine-tune it and save it into `folder`."""
    checkpoints = run.output / "checkpoints" / name
    resume = last_complete_checkpoint(checkpoints)
    clock = TrainingClock(resume)
    arguments = {"callbacks": [*run.callbacks, clock]}
    for technique_name, config in section.techniques.items():
        more = TECHNIQUES[technique_name].prepare(model, config, teacher)
        arguments["callbacks"] += more.pop("callbacks", [])
        arguments.update(more)
    if resume:
        run.say(f"    resuming from {resume}")
    with EnergyMeter() as meter:
        trainer = finetune(
            model,
            run.tokenized,
            str(checkpoints),
            seed=run.recipe.seed,
            resume_from_checkpoint=resume,
            compute_metrics=run.compute_metrics(),
            metric=run.task.metric,
            **{f.name: getattr(section, f.name) for f in dataclasses.fields(TrainingConfig)},
            **arguments,
        )
    trainer.save_model(str(folder))
    if run.process.is_main_process:
        run.tokenizer.save_pretrained(folder)
        # Trainer's pickled arguments would travel to the Hub; recipe.yaml holds the same settings.
        (folder / "training_args.bin").unlink(missing_ok=True)
    return {
        "path": name,
        "training_seconds": round(clock.seconds(), 1) if clock.known else None,
        "resumed_from": resume,
        "processes": run.process.num_processes,
        # The meter counted this process's part only: after a resume, the energy of the whole training is unknown.
        "training_joules": None if resume else meter.joules,
        "energy_source": None if resume else meter.source,
    }


def teacher(run, folder: Path) -> dict:
    section = run.recipe.teacher
    if section.path:  # checked with the recipe's other inputs before any step ran (`check_inputs` in run.py)
        return {"path": str(Path(section.path).resolve()), "training_seconds": None}
    return _train(run, run.pretrained(), section, folder, "teacher")


def student(run, folder: Path) -> dict:
    section = run.recipe.student
    fine_tuned = run.load("teacher").eval() if run.recipe.teacher else None
    base = fine_tuned if section.init_from == "teacher" else run.pretrained()
    model = make_student(base, section.num_layers or base.config.num_hidden_layers, init=section.init)
    return _train(run, model, section, folder, "student", teacher=fine_tuned)


def prune(run, folder: Path) -> dict:
    section = run.recipe.prune
    source = section.model or ("student" if run.recipe.student else "teacher")
    record = {"source": source, "depths": {}, "path": None}
    model = run.load(source)
    depth = model.config.num_hidden_layers
    # Without depths, a run that keeps one depth skips the sweep; a run that keeps none sweeps all.
    depths = section.depths if section.depths is not None else [] if section.num_layers else range(depth, 1, -1)
    section.check_depth(source, depth)
    for kept in depths:
        pruned = prune_layers(run.load(source), kept)
        metrics = run.evaluate(pruned, desc=f"{source} at {kept} layers")
        record["depths"][str(kept)] = metrics[run.task.metric]
    if section.num_layers:
        prune_layers(model, section.num_layers).save_pretrained(folder)
        run.tokenizer.save_pretrained(folder)
        record["path"] = "pruned"
    return record


def export(run, folder: Path) -> dict:
    section = run.recipe.export
    source = section.model or run.last_trained()
    config = section.config()
    # export_int8 calibrates on the first `config.calibration_samples` rows: a seeded draw of the training set.
    calibration = run.tokenized["train"].shuffle(seed=run.recipe.seed) if config.mode == "static" else None
    result = export_int8(
        run.load(source),
        str(folder),
        config,
        tokenizer=run.tokenizer,
        calibration_dataset=calibration,
        eval_dataset=run.tokenized["test"],
    )
    return {"path": "onnx", "source": source, **result.to_dict()}


def report(run, folder: Path) -> dict:
    """Measure every model the run made, side by side, and write report.json, report.md and the plots."""
    settings = run.recipe.report
    models = {name: run.model_folder(name) for name in ("teacher", "student", "pruned") if run.made(name)}
    if "export" in run.steps:
        source = run.steps["export"]["source"]
        models[f"{source}-int8"] = run.output / "onnx" / INT8_FILE
    threads = settings.threads or usable_cores()
    entries = measure_models(
        models,
        run.tokenized["test"],
        task=run.task,
        scoring={**run.scoring(), "label_names": run.labels},
        batch_sizes=settings.batch_sizes,
        sequence_length=settings.sequence_length or run.recipe.data.max_length,
        threads=threads,
        seconds=settings.seconds_per_measurement,
        bf16_baseline=settings.bf16_baseline,
    )
    by_name = {entry.name: entry for entry in entries}
    for entry in entries:
        path = Path(entry.path)
        entry.path = str(path.relative_to(run.output)) if path.is_relative_to(run.output) else str(path)
        if entry.format == "onnx":  # the int8 export of `source`
            record = run.steps["export"]
            describe_export(entry, by_name[record["source"]], record)
            continue
        if entry.baseline_of:  # a cast of a model the run made, timed as a baseline; not trained
            continue
        step = run.steps[MADE_BY[entry.name]]
        entry.training_seconds = step.get("training_seconds")
        entry.energy.training_joules = step.get("training_joules")
    depths = {}
    if run.steps.get("prune", {}).get("depths"):
        depths[run.steps["prune"]["source"]] = run.steps["prune"]["depths"]
    result = run_report(
        run, list(entries), entries.timing, threads=threads, rows=len(run.dataset["test"]), depths=depths
    )
    write_report(result, run.output, floor=run.majority_rate())
    return {"path": None}


def describe_export(entry: ModelEntry, source: ModelEntry, record: dict) -> None:
    """Fill in what the measured int8 file `entry` is: the export of `source` that the step recorded."""
    entry.source, entry.kind = source.name, "int8"
    entry.techniques, entry.settings = [*source.techniques, "int8"], dict(source.settings)
    entry.layers, entry.parameters = source.layers, source.parameters
    entry.export = {"backend": record["backend"], "mode": record["mode"], "chosen": record["chosen"]}
    entry.export |= {
        key: record[key] for key in ("variant", "variant_reason", "variant_timings", "runtime") if record.get(key)
    }


def _origin(run, models: list[ModelEntry]) -> str:
    """The model the final one was made from: the teacher's `path` where it descends from a given teacher (as
    itself, pruned, exported, or a student of its layers), else the recipe's `model`."""
    recipe = run.recipe
    final = [entry for entry in models if not entry.baseline_of][-1]
    made_from = final.source or final.name  # an export's source
    if made_from == "pruned":
        made_from = run.steps["prune"]["source"]
    if made_from == "student" and recipe.student.init_from == "teacher":
        made_from = "teacher"
    given = recipe.teacher.path if recipe.teacher else None
    return given if made_from == "teacher" and given else recipe.model


def run_report(
    run, models: list[ModelEntry], timing, *, threads: int, rows: int, metric: str | None = None, depths=None
) -> Report:
    """The run's `Report` of the measured `models` on its test split (`metric`: default the task's)."""
    recipe = run.recipe
    return Report(
        name=recipe.name,
        base_model=base_model_id(_origin(run, models)),
        task=TaskInfo(
            name=recipe.task,
            dataset=run.dataset_name,
            description=run.dataset_description,
            split="test",
            rows=rows,
            metric=metric or run.task.metric,
        ),
        hardware=hardware(threads),
        timing=timing,
        models=models,
        techniques=list(dict.fromkeys(t for e in models for t in e.techniques)),
        depths=depths or {},
        steps={name: record.get("seconds") for name, record in run.steps.items()},
    )


def write_report(report: Report, output: Path, floor: float | None = None) -> None:
    """Write `report.json`, `report.md` and the plots (of the task's metric) into the run folder."""
    metric = report.task.metric
    if report.depths:
        plot_accuracy_by_depth(
            {name: {int(d): a for d, a in by_depth.items()} for name, by_depth in report.depths.items()},
            output / f"{metric}_by_depth.png",
            title=f"test {metric} after pruning, without retraining",
            floor=floor,
            metric=metric,
        )
        report.plots.append(f"{metric}_by_depth.png")
    report.plots += plot_tradeoffs(report.models, output, metric=metric)
    report.save(output / "report.json")
    (output / "report.md").write_text(report_markdown(report))


def card(run, folder: Path) -> dict:
    result = Report.load(run.output / "report.json")
    final = result.model(result.final)
    shutil.copytree(run.model_folder(final.source or final.name), folder, dirs_exist_ok=True)
    if "export" in run.steps:
        shutil.copytree(run.output / "onnx", folder / "onnx")
    return write_card(run, folder, result)


def write_card(run, folder: Path, result: Report) -> dict:
    """Beside the model files already in the hub `folder`: the report, recipe, plots and the model card."""
    from ..hub import write_model_card
    from ..hub.card import public, public_recipe

    for name in ["report.md", *result.plots]:
        shutil.copy(run.output / name, folder / name)
    # Published: the report and recipe name the run's models and data, not where this machine keeps them.
    (folder / "report.json").write_text(json.dumps(public(result.to_dict()), indent=1))
    recipe_text = (run.output / "recipe.yaml").read_text()
    (folder / "recipe.yaml").write_text(public_recipe(recipe_text) + "\n")
    section = run.recipe.card
    write_model_card(
        folder,
        result,
        recipe_text,
        license=section.license,
        language=section.language,
        repo_id=run.recipe.push.repo_id if run.recipe.push else None,
    )
    return {"path": "hub"}


def push(run, folder: Path) -> dict:
    from ..hub import push_to_hub

    section = run.recipe.push
    url = push_to_hub(run.output / "hub", section.repo_id, private=section.private)
    return {"path": None, "url": url}


STEPS: list[Step] = [
    Step("teacher", teacher, "teacher", lambda recipe: recipe.teacher is not None, every_process=True),
    Step("student", student, "student", lambda recipe: recipe.student is not None, every_process=True),
    Step("prune", prune, "pruned", lambda recipe: recipe.prune is not None),
    Step("export", export, "onnx", lambda recipe: recipe.export is not None),
    Step("report", report, "report", lambda recipe: True),
    Step("card", card, "hub", lambda recipe: recipe.card is not None),
    Step("push", push, "push", lambda recipe: recipe.push is not None),
]
