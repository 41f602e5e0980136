"""Recipes: a YAML file that chains the steps of a compression run, validated field by field.

Every section is optional except `name`; a section left empty runs with its defaults, and `false`
turns it off. A recipe reads top to bottom as the run does:

    name: quickstart
    model: minilm               # the pretrained encoder: a folder, a Hub id, "minilm" or "mpnet"
    data: {max_train_samples: 4000}
    teacher: {epochs: 2, layerdrop: 0.2}        # fine-tune it (or `path:` a fine-tuned one)
    student: {num_layers: 3, distillation: {strategy: skip}}
    prune: {model: teacher, depths: [6, 4, 3, 2]}
    export: {mode: dynamic}
    card: {}
    push: {repo_id: me/minilm-pkd-int8}
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..assets import MINILM_ID, MPNET_ID, shipped_model_id
from ..data import DATA_TASKS, DataConfig
from ..data.load import TEXT_TASKS
from ..data.text import is_seed
from ..export import Int8ExportConfig
from ..tasks import DEFAULT_TASK as DEFAULT_TASK_NAME
from ..tasks import TASKS
from ..techniques import TECHNIQUES, section_techniques
from ..training import TrainingConfig

# The tasks a recipe (and so the CLI) runs: those with a data loader. The rest are Python-only.
RECIPE_TASKS = DATA_TASKS + TEXT_TASKS

# Short names for the models that come from PyPI packages, and their Hub ids (for model cards).
MODEL_SHORTCUTS = {"minilm": MINILM_ID, "mpnet": MPNET_ID}


def base_model_id(model: str) -> str:
    """What a run's report and card name as the base model of the recipe's `model`: the Hub id of a shortcut or of
    a shipped model's folder; for a model hf_efficient made, the one its making started from, as its card (a
    `hub/` folder) or the report of its run (`runs/x/teacher`) names it; else `model` as given (a Hub id, or a
    folder, which the card names by its last part and leaves out of the metadata). Another library's card
    is not read: its base model is the folder's parent, not the folder itself."""
    if model in MODEL_SHORTCUTS:
        return MODEL_SHORTCUTS[model]
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return model
    return shipped_model_id(folder) or _recorded_base_model(folder) or model


def _recorded_base_model(folder: Path) -> str | None:
    from huggingface_hub.repocard import metadata_load

    base = None
    if (folder / "README.md").is_file():  # a card, e.g. of a hub/ folder or of one downloaded from the Hub
        try:
            card = metadata_load(folder / "README.md") or {}
        except (yaml.YAMLError, ValueError):
            card = {}
        if "hf_efficient" in (card.get("tags") or []):
            base = card.get("base_model")
            base = base[0] if isinstance(base, list) and len(base) == 1 else base
    run = folder.parent
    if not isinstance(base, str) and (run / "run_state.json").is_file() and (run / "report.json").is_file():
        try:
            base = json.loads((run / "report.json").read_text()).get("base_model")
        except (json.JSONDecodeError, AttributeError):
            base = None
    return base if isinstance(base, str) else None


def check_shortcut(model, name: str) -> None:
    """Refuse a misspelt model shortcut ("minilmm"), which would otherwise be asked of the Hub as an id."""
    model = str(model)
    close = difflib.get_close_matches(model.lower(), MODEL_SHORTCUTS, n=1, cutoff=0.8)
    if close and model != close[0] and "/" not in model and not Path(model).expanduser().exists():
        raise RecipeError(
            f"{name} is no folder and no shortcut: did you mean {close[0]!r}? "
            f"(shortcuts: {', '.join(MODEL_SHORTCUTS)}; a Hub id is owner/name)"
        )


class RecipeError(ValueError):
    """A recipe field is missing, unknown or has a bad value; the message names it and the fix."""


def _help(text: str, **more) -> dict:
    """Field metadata: the help of the generated command-line flag (and its choices, if any)."""
    return {"help": text, **more}


@dataclass
class DataSection(DataConfig):
    """The data: the fields of `hf_efficient.data.DataConfig` (a file, per-split files, a `save_to_disk`
    folder or the default task, and the columns the recipe's `task` reads), checked when built."""


@dataclass
class TrainingSection(TrainingConfig):
    """How a model is trained: the fields of `hf_efficient.training.TrainingConfig`.

    Besides these fields, the section takes a key per technique of `hf_efficient.techniques` that
    lists the section (`layerdrop:`, `distillation:`, `sharing:`), holding that technique's config;
    they are in `techniques` and read as attributes (`section.layerdrop`, None when absent).
    """

    SECTION = "training"

    techniques: dict = field(default_factory=dict, metadata={"techniques": True})

    def __getattr__(self, name: str):
        # Only called when normal lookup fails: a technique this section can hold but does not.
        if name != "techniques" and name in {t.name for t in section_techniques(self.SECTION)}:
            return self.techniques.get(name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def check(self, where: str):
        _positive(self.epochs, f"{where}.epochs")
        _positive(self.batch_size, f"{where}.batch_size")
        _positive(self.learning_rate, f"{where}.learning_rate")


@dataclass
class TeacherSection(TrainingSection):
    """Fine-tune `model` as the teacher, or start from an already fine-tuned `path` (no training)."""

    SECTION = "teacher"

    path: str | None = field(default=None, metadata=_help("an already fine-tuned teacher folder (no training)"))

    def check(self, where: str):
        super().check(where)
        if self.path is None:
            return
        # A fine-tuned teacher is used as it is: a training setting beside it would do nothing but show in the card.
        default = type(self)(path=self.path)
        unused = [f.name for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(default, f.name)]
        if unused:
            name = unused[0] if unused[0] != "techniques" else next(iter(self.techniques))
            raise RecipeError(
                f"{where}.{name} trains the teacher, but {where}.path={self.path!r} is used as it is (no training); "
                f"drop {name}, or give the section whole: teacher: {{path: {self.path}}} (--set 'teacher={{path: "
                f"{self.path}}}')."
            )


@dataclass
class StudentSection(TrainingSection):
    """A shallower student, distilled from the teacher (or fine-tuned directly without `distillation`)."""

    SECTION = "student"

    num_layers: int | None = field(default=None, metadata=_help("depth of the student (default: the teacher's)"))
    init: str | list[int] = field(
        default="skip", metadata=_help("teacher layers the student starts from: skip, first, or a list like 0,2,4")
    )
    init_from: str = field(
        default="pretrained",
        metadata=_help(
            "copy the student's layers from the pretrained model or the fine-tuned teacher",
            choices=("pretrained", "teacher"),
        ),
    )

    def check(self, where: str):
        super().check(where)
        if self.num_layers is not None:
            _positive(self.num_layers, f"{where}.num_layers")
        _one_of(self.init_from, ("pretrained", "teacher"), f"{where}.init_from")
        if isinstance(self.init, str):
            _one_of(self.init, ("skip", "first"), f"{where}.init")


@dataclass
class PruneSection:
    """Evaluate `model` pruned to each of `depths` (default: every depth down to 2) without retraining,
    and keep a copy with `num_layers` layers when given."""

    model: str | None = field(default=None, metadata=_help("the model to prune: teacher or student"))
    depths: list[int] | None = field(
        default=None, metadata=_help("depths to evaluate (default: all down to 2; none when num_layers is given)")
    )
    num_layers: int | None = field(default=None, metadata=_help("depth of the pruned copy to keep"))

    def check(self, where: str):
        if self.model is not None:
            _one_of(self.model, ("teacher", "student"), f"{where}.model")
        for depth in self.depths or []:
            _positive(depth, f"{where}.depths")
        if self.num_layers is not None:
            _positive(self.num_layers, f"{where}.num_layers")
        elif self.depths == []:
            raise RecipeError(
                f"{where}.depths is empty and {where}.num_layers unset: the step would prune nothing; list depths to "
                "evaluate, give num_layers to keep one, or drop the section."
            )

    def check_depth(self, source: str, depth: int):
        """Refuse depths beyond the `depth` layers of the model pruned (`source`: teacher or student)."""
        if self.num_layers is not None and self.num_layers > depth:
            raise RecipeError(
                f"prune.num_layers={self.num_layers}: the {source} has only {depth} layers; keep 1 to {depth}."
            )
        deeper = [d for d in self.depths or [] if d > depth]
        if deeper:
            raise RecipeError(
                f"prune.depths={deeper}: the {source} has only {depth} layers; give depths of 1 to {depth}."
            )


@dataclass
class ExportSection(Int8ExportConfig):
    """ONNX export and int8 quantization of `model` (default: the last model produced), with an accuracy gate:
    the fields of `Int8ExportConfig` plus which model to export."""

    model: str | None = field(default=None, metadata=_help("the model to export: teacher, student or pruned"))

    def check(self, where: str):
        if self.model is not None:
            _one_of(self.model, ("teacher", "student", "pruned"), f"{where}.model")

    def config(self) -> Int8ExportConfig:
        """The export settings alone, as `export_int8` takes them."""
        names = {f.name for f in dataclasses.fields(Int8ExportConfig)}
        return Int8ExportConfig(**{k: v for k, v in dataclasses.asdict(self).items() if k in names})


@dataclass
class ReportSection:
    """What the report measures besides accuracy: CPU latency at each batch size, on `threads` threads."""

    batch_sizes: list[int] = field(default_factory=lambda: [1, 32])
    # Tokens per timed row; default: data.max_length, the length the run tokenizes its rows to.
    sequence_length: int | None = None
    threads: int | None = None
    seconds_per_measurement: float = 3.0
    # Also time the reference with its weights in bf16 (default: when the CPU has bf16 instructions).
    bf16_baseline: bool | None = None

    def check(self, where: str):
        if not self.batch_sizes:
            raise RecipeError(f"{where}.batch_sizes is empty: list at least one, e.g. [1, 32].")
        for size in self.batch_sizes:
            _positive(size, f"{where}.batch_sizes")
        if self.sequence_length is not None:
            _positive(self.sequence_length, f"{where}.sequence_length")
        if self.threads is not None:
            _positive(self.threads, f"{where}.threads")
        _positive(self.seconds_per_measurement, f"{where}.seconds_per_measurement")


@dataclass
class CardSection:
    """The Hub model card, written into the folder that `push` uploads."""

    license: str = "apache-2.0"
    language: str = "en"

    def check(self, where: str):
        from ..hub.card import check_card_metadata

        try:
            check_card_metadata(self.license, self.language, f"{where}.")
        except ValueError as error:
            raise RecipeError(str(error)) from None


@dataclass
class PushSection:
    """Upload the run's `hub/` folder; the token comes from the usual places (HF_TOKEN, `hf auth login`)."""

    repo_id: str
    private: bool = True

    def check(self, where: str):
        from ..hub.card import repo_id_problem

        problem = repo_id_problem(self.repo_id)
        if problem:
            raise RecipeError(f"{where}.repo_id={self.repo_id!r}: {problem}")


@dataclass
class Recipe:
    """A whole compression run. See the module docstring and `recipes/` for examples."""

    name: str
    model: str = "minilm"
    task: str = DEFAULT_TASK_NAME
    output_dir: str | None = None
    seed: int = 0
    data: DataSection = field(default_factory=DataSection)
    teacher: TeacherSection | None = None
    student: StudentSection | None = None
    prune: PruneSection | None = None
    export: ExportSection | None = None
    report: ReportSection = field(default_factory=ReportSection)
    card: CardSection | None = None
    push: PushSection | None = None

    def check(self, where: str):
        if not self.name.strip():
            raise RecipeError("name is empty: give the run a name, e.g. `name: quickstart`.")
        if "/" in self.name or "\\" in self.name or self.name.strip(".") == "":  # names runs/<name>, cards, repos
            raise RecipeError(
                f"{where}.name={self.name!r} is a run's name, not a path: give a name (e.g. quickstart), and the "
                "folder as output_dir."
            )
        if not is_seed(self.seed):
            raise RecipeError(f"{where}.seed={self.seed}: give an integer from 0 to 2**32 - 1.")
        if self.output_dir is None:
            self.output_dir = f"runs/{self.name}"
        if not str(self.output_dir).strip():  # "" would be the current folder
            raise RecipeError(f"{where}.output_dir={self.output_dir!r} is empty: give the run's folder, e.g. runs/x.")
        check_shortcut(self.model, f"{where}.model={self.model!r}")
        tasks = RECIPE_TASKS
        if self.task in TASKS and self.task not in tasks:
            raise RecipeError(
                f"{where}.task={self.task!r}: recipes run the tasks with a data loader ({', '.join(tasks)}); "
                f"compress a {self.task} model from Python (make_student, DistillationTrainer, export_int8)."
            )
        _one_of(self.task, tasks, f"{where}.task")
        try:
            self.data.check_fields_for(self.task, f"{where}.data")
        except ValueError as error:
            raise RecipeError(str(error)) from None
        # An embedding model is its own teacher: the pretrained `model`, never fine-tuned (`sentence.recipe`).
        own_teacher = TASKS[self.task].library == "sentence-transformers"
        if own_teacher:
            from ..sentence.recipe import check_recipe

            check_recipe(self, RecipeError)
        if self.teacher is None and self.student is None and not own_teacher:
            if self.prune or self.export:
                raise RecipeError(
                    "prune/export need a model: add `teacher: {path: <fine-tuned model>}` (or a teacher to fine-tune)."
                )
            raise RecipeError(
                "the recipe makes no model: add a `teacher` section (`teacher: {epochs: 3}` fine-tunes `model`, "
                "`teacher: {path: <fine-tuned model>}` starts from one)."
            )
        report, length = self.report, self.data.max_length
        if report is not None and not own_teacher and (report.sequence_length or 0) > length:
            # The rows are tokenized to data.max_length: a longer timing would silently be cut to it.
            raise RecipeError(
                f"{where}.report.sequence_length={report.sequence_length}: the run tokenizes rows to "
                f"data.max_length={length} tokens; give at most {length}, or raise data.max_length."
            )
        student = self.student
        distillation = student.distillation if student is not None else None
        if distillation is not None and not own_teacher:
            ignored = distillation.embedding_only_changes()
            if ignored:
                raise RecipeError(
                    f"{where}.student.distillation.{ignored[0]} applies to embedding models (task "
                    f"sentence-embedding), not to {self.task}: leave it out."
                )
        if distillation is not None and own_teacher:
            ignored = distillation.head_only_changes()
            if ignored:
                raise RecipeError(
                    f"{where}.student.distillation.{ignored[0]} weighs a head's soft targets, which an embedding "
                    "model has none of (its loss: embedding_loss, beta, similarity): leave it out."
                )
        if student is not None and self.teacher is None and not own_teacher:
            needing = [f"student.{name}" for name in student.techniques if TECHNIQUES[name].needs_teacher]
            if student.init_from == "teacher":
                needing.append("student.init_from=teacher")
            if needing:
                raise RecipeError(f"{' and '.join(needing)} need a `teacher` section.")
        for section, name in ((self.prune, "prune"), (self.export, "export")):
            if section is not None and section.model == "student" and student is None:
                raise RecipeError(f"{name}.model=student, but the recipe has no `student` section.")
        if self.export and self.export.model == "pruned" and not (self.prune and self.prune.num_layers):
            raise RecipeError("export.model=pruned needs prune.num_layers (the depth of the pruned copy).")
        if self.push is not None and self.card is None:
            self.card = CardSection()  # what goes to the Hub always has a card

    def to_dict(self) -> dict:
        """The recipe as a file holds it; a step that is off is written `false` (a bare `export:` turns it on)."""
        steps = {f.name for f in dataclasses.fields(self) if f.default is None and f.name != "output_dir"}
        recipe = _plain(_flatten(dataclasses.asdict(self)))
        return {key: False if key in steps and value is None else value for key, value in recipe.items()}


def load_recipe(source: str | Path | dict, overrides: list[str] | dict | None = None) -> Recipe:
    """Read and validate a recipe.

    Args:
        source (`str`, `Path` or `dict`): A YAML file, or the recipe as a dict.
        overrides (`list[str]` or `dict`, *optional*): Dotted `key=value` pairs applied on top, with
            values read as YAML, e.g. `["student.num_layers=2", "push.repo_id=me/tiny"]`.

    Returns:
        `Recipe`: validated, with defaults filled in.

    Raises:
        `RecipeError`: naming the field, the bad value and the fix (unknown keys get a suggestion).
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            inside = sorted(str(p) for p in path.glob("*.y*ml"))[:3]
            example = ", ".join(inside) or "recipes/quickstart.yaml"
            raise RecipeError(f"{path} is a folder; pass a recipe file, e.g. {example}.")
        if not path.is_file():
            raise RecipeError(f"No recipe at {str(path)!r}: pass a YAML file, e.g. recipes/quickstart.yaml.")
        try:
            raw = yaml.safe_load(path.read_text())
        except UnicodeDecodeError:
            raise RecipeError(f"{path} is not a text file; pass a YAML recipe, e.g. recipes/quickstart.yaml.") from None
        except yaml.YAMLError as error:
            mark, problem = getattr(error, "problem_mark", None), getattr(error, "problem", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark and problem else str(error)
            raise RecipeError(f"{path} is not valid YAML ({' '.join(where.split())}); fix it there.") from None
    elif isinstance(source, dict):
        raw = source
    else:
        raise RecipeError(f"load_recipe(source={type(source).__name__}): pass a YAML path or a dict.")
    if not isinstance(raw, dict):
        where = f"{source}: a" if isinstance(source, (str, Path)) else "A"
        raise RecipeError(
            f"{where} recipe is a mapping of sections (name: ..., model: ..., teacher: ...), got {type(raw).__name__}."
        )
    raw = _apply_overrides(dict(raw), overrides or [])
    return _build(Recipe, raw, "recipe")


def _apply_overrides(raw: dict, overrides: list[str] | dict) -> dict:
    if isinstance(overrides, str):  # one override would be read character by character
        raise RecipeError(f"overrides={overrides!r}: pass a list of key=value texts, e.g. [{overrides!r}].")
    pairs = overrides.items() if isinstance(overrides, dict) else [_split_override(o) for o in overrides]
    shorthands = {t.name: t.shorthand for t in TECHNIQUES.values() if t.shorthand}
    for key, value in pairs:
        *parents, leaf = key.split(".")
        node = raw
        for parent in parents:
            child = node.get(parent)
            if child is not None:  # `layerdrop: 0.5` is `{rate: 0.5}`: a sub-key keeps the rate
                child = _long_form(child, shorthands.get(parent))
            node[parent] = child = dict(child) if isinstance(child, dict) else {}
            node = child
        node[leaf] = value
    return raw


def _split_override(text) -> tuple[str, object]:
    if not isinstance(text, str):
        raise RecipeError(f"Override {text!r}: write it as a key=value text, e.g. 'student.num_layers=2'.")
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise RecipeError(f"Override {text!r}: write it as key=value, e.g. student.num_layers=2.")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as error:
        problem = " ".join(str(getattr(error, "problem", None) or error).split())
        raise RecipeError(
            f"Override {text!r}: the value is not valid YAML ({problem}); quote it or fix it, e.g. {key}=[1, 2]."
        ) from None


def _long_form(raw, shorthand: str | None):
    """A section as a mapping: `layerdrop: 0.2` is short for `layerdrop: {rate: 0.2}` (a row's `shorthand`)."""
    return {shorthand: raw} if shorthand and not isinstance(raw, (dict, bool)) else raw


def _build(cls, raw, where: str, shorthand: str | None = None):
    """Build dataclass `cls` from `raw`, checking keys and types, then its own `check`."""
    raw = _long_form(raw, shorthand)
    if not isinstance(raw, dict):
        raise RecipeError(f"{where} must be a mapping of {cls.__name__} fields, got {raw!r}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.metadata.get("techniques")}
    raw = dict(raw)
    techniques = {}
    for technique in section_techniques(getattr(cls, "SECTION", None)):
        value = raw.pop(technique.name, None)
        if value is not None and value is not False:
            techniques[technique.name] = _build(
                technique.config_class, {} if value is True else value, f"{where}.{technique.name}", technique.shorthand
            )
    known = list(fields) + [t.name for t in section_techniques(getattr(cls, "SECTION", None))]
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise RecipeError(f"{where}: unknown key {key!r}.{hint} Known keys: {', '.join(known)}.")
    missing = [
        name
        for name, f in fields.items()
        if name not in raw and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise RecipeError(f"{where}: missing {', '.join(missing)} (required).")
    values = {key: _convert(hints[key], value, f"{where}.{key}") for key, value in raw.items()}
    if "techniques" in {f.name for f in dataclasses.fields(cls)}:
        values["techniques"] = techniques
    try:
        built = cls(**values)
    except ValueError as error:  # the technique configs validate themselves
        raise RecipeError(f"{where}: {error}") from None
    if hasattr(built, "check"):
        built.check(where)
    return built


def _convert(hint, value, where: str):
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    sections = [option for option in options if dataclasses.is_dataclass(option)]
    if sections and value is False and type(None) in options:
        return None  # `export: false` turns a step off
    if sections and value is None:
        return _build(sections[0], {}, where)  # `card:` with nothing under it: the step with its defaults
    if value is None:
        if type(None) in options:
            return None
        raise RecipeError(f"{where} cannot be empty; give it a value or leave the key out for the default.")
    errors = []
    for option in options:
        if option is type(None):
            continue
        if dataclasses.is_dataclass(option):
            if isinstance(value, dict):
                return _build(option, value, where)
            errors.append(option.__name__)
        elif typing.get_origin(option) in (list, tuple):  # list[X], or tuple[X, ...]: a list in the recipe
            item = typing.get_args(option)[0]
            if isinstance(value, (list, tuple)) and all(_matches(item, v) for v in value):
                items = [float(v) if item is float else v for v in value]
                return tuple(items) if typing.get_origin(option) is tuple else items
            errors.append(f"a list of {item.__name__}")
        elif _matches(option, value):
            return float(value) if option is float else value
        else:
            errors.append(option.__name__)
    raise RecipeError(f"{where}={value!r}: expected {' or '.join(errors)}.")


def _matches(kind, value) -> bool:
    kind = typing.get_origin(kind) or kind  # dict[str, int] is checked as a dict
    if kind is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)) or _float_text(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _float_text(value) -> bool:
    """`1e-4`: a float to a reader, a string to YAML 1.1 (PyYAML), which wants `1.0e-4`."""
    return isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value) is not None


def _positive(value, where: str):
    if not 0 < value < math.inf:  # NaN too
        raise RecipeError(f"{where}={value}: must be a positive number (not nan or inf).")


def _one_of(value, allowed, where: str):
    if value not in allowed:
        close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise RecipeError(f"{where}={value!r}: use one of {', '.join(map(str, allowed))}.{hint}")


def _flatten(value):
    """A training section's techniques back among its keys, as the recipe file has them."""
    if isinstance(value, dict):
        techniques = value.pop("techniques", None) if isinstance(value.get("techniques"), dict) else None
        flat = {k: _flatten(v) for k, v in value.items()}
        flat.update({name: _flatten(config) for name, config in (techniques or {}).items()})
        return flat
    return value


def _plain(value):
    """Tuples to lists, so that the dict dumps to YAML and JSON the same way."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
