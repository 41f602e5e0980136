"""The `hf-efficient` command: run a recipe, or one technique at a time (each builds a small recipe).

The flags of the technique commands are generated from the fields of the recipe's sections and
of the technique configs (`LayerDropConfig`, `PKDConfig`, `SharingConfig`, `Int8ExportConfig`), so
that a default lives in one place: the dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import re
import shlex
import sys
import types
import typing
import warnings
from pathlib import Path

import yaml
from accelerate import PartialState

from .checks import model_source
from .data import DEFAULT_TASK as DEFAULT_DATA
from .data import SPLITS, DataConfig, label_names, load_data, tokenize_dataset
from .data.load import align_labels, model_labels
from .data.text import is_seed
from .distill import PKDConfig
from .export import AccuracyDropError, Int8ExportConfig
from .layerdrop import LayerDropConfig
from .recipe import Recipe, RecipeError, load_recipe, run_recipe
from .recipe.config import (
    MODEL_SHORTCUTS,
    RECIPE_TASKS,
    CardSection,
    DataSection,
    PruneSection,
    StudentSection,
    TrainingSection,
    check_shortcut,
)
from .recipe.run import end_process_group, fine_tuned_task, folder_task
from .report import Report, measure_models, report_markdown
from .sharing import SharingConfig
from .tasks import DEFAULT_TASK as DEFAULT_TASK_NAME
from .tasks import get_task
from .techniques import TECHNIQUES

EXAMPLES = {
    "run": """examples:
  hf-efficient run recipes/quickstart.yaml
  hf-efficient run recipes/quickstart.yaml --set student.num_layers=2 --set output_dir=runs/two-layers
  accelerate launch --multi_gpu --num_processes 2 -m hf_efficient run recipes/quickstart.yaml""",
    "layerdrop": """examples:
  hf-efficient layerdrop --max-train-samples 5000 --epochs 2   # shipped MiniLM, Rotten Tomatoes, 5,000 rows
  hf-efficient layerdrop --rate 0.3                             # the whole training set, 3 epochs
  hf-efficient layerdrop --model path/to/encoder --data reviews.csv --text-column review --label-column stars""",
    "distill": """examples:
  hf-efficient distill --teacher runs/quickstart/teacher --num-layers 3
  hf-efficient distill --teacher runs/quickstart/teacher --num-layers 3 --strategy last --layerdrop 0.1""",
    "share": """examples:
  hf-efficient share --num-groups 1                   # all layers share one set of weights, fine-tuned directly
  hf-efficient share --teacher runs/quickstart/teacher --num-groups 2 --scope attention""",
    "prune": """examples:
  hf-efficient prune --model runs/layerdrop/teacher --num-layers 3""",
    "export": """examples:
  hf-efficient export --model runs/quickstart/student
  hf-efficient export --model runs/quickstart/student --mode static --max-accuracy-drop 0.005""",
    "evaluate": """examples:
  hf-efficient evaluate --model runs/quickstart/student
  hf-efficient evaluate --model runs/quickstart/student --data reviews.csv --split all   # every row of the file
  hf-efficient evaluate --model runs/quickstart/onnx/model_quantized.onnx""",
    "benchmark": """examples:
  hf-efficient benchmark runs/quickstart/teacher runs/quickstart/student runs/quickstart/onnx/model_quantized.onnx""",
    "card": """examples:
  hf-efficient card runs/quickstart                   # (re)write runs/quickstart/hub/README.md""",
    "push": """examples:
  hf-efficient push runs/quickstart --repo-id me/minilm-pkd-int8          # private by default
  hf-efficient push runs/quickstart --repo-id me/minilm-pkd-int8 --public""",
}


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: `hf-efficient COMMAND: what is wrong; see --help`."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message}; see `{self.prog} --help`.\n")


def positive_int(text: str) -> int:
    """An argparse type: an integer of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _flag_type(hint):
    """An argparse `type` for a dataclass field's type hint (`int | None`, `str | list[int]`, ...)."""
    options = [
        o for o in (typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)) if o is not type(None)
    ]
    lists = [typing.get_args(o)[0] for o in options if typing.get_origin(o) is list]
    scalars = [o for o in options if typing.get_origin(o) is not list]
    if lists and scalars:  # e.g. `init: str | list[int]`: "skip", or "0,2,4"

        def parse(text: str):
            if "," in text or text[:1].isdigit():
                values = [lists[0](part) for part in text.split(",") if part]
                # A name or a list of numbers (`--init 0` for one student layer): one number is a list of one.
                return values if "," in text or str in scalars else values[0]
            return scalars[0](text)

        return parse, None
    if lists:
        return lists[0], "+"
    return scalars[0], None


def docstring_help(cls) -> dict[str, str]:
    """Field name -> the first sentence of its entry in `cls`'s "Args:" docstring section."""
    found, name = {}, None
    for line in (cls.__doc__ or "").split("Args:", 1)[-1].splitlines():
        match = re.match(r"\s{8}(\w+) \(.*?\):\s*(.*)", line)
        if match:
            name = match.group(1)
            found[name] = match.group(2)
        elif name and line.startswith(" " * 12):
            found[name] += " " + line.strip()
        else:
            name = None
    first = {
        key: re.split(r"(?<=[a-z0-9)])[.;] ", text + " ", maxsplit=1)[0].strip().rstrip(".")
        for key, text in found.items()
    }
    # Lower-case like argparse's own help lines ("show this help message"), but not an acronym ("ONNX ...").
    return {key: text[:1].lower() + text[1:] if text[1:2].islower() else text for key, text in first.items()}


def add_config_arguments(parser: argparse.ArgumentParser, cls, *, prefix: str = "", skip=(), title: str = "") -> list:
    """Add a `--flag` per field of dataclass `cls` (help and choices from the field's metadata).

    A flag that another group already added gets `prefix` (e.g. `--layerdrop-seed`). Returns
    `(field name, argparse dest)` pairs, to read the values back with `config_values`.
    """
    group = parser.add_argument_group(title or cls.__name__)
    hints = typing.get_type_hints(cls)
    taken = {option for action in parser._actions for option in action.option_strings}
    added, documented = [], docstring_help(cls)
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip or f.metadata.get("techniques"):
            continue
        name = f.metadata.get("flag", f.name.replace("_", "-"))
        if f"--{name}" in taken:
            if not prefix:  # a bug of the caller: without a prefix the flag would be `---name`
                raise ValueError(
                    f"add_config_arguments({cls.__name__}): --{name} is taken; skip the field or give a prefix"
                )
            name = f"{prefix}-{name}"
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        dest = name.replace("-", "_")
        help_text = f.metadata.get("help") or documented.get(f.name, "")
        if hints[f.name] is bool:
            if default:
                group.add_argument(
                    f"--no-{name}", dest=dest, action="store_false", help=f"turn off (default: on): {help_text}"
                )
            else:
                group.add_argument(f"--{name}", dest=dest, action="store_true", help=help_text)
            added.append((f.name, dest))
            continue
        kind, nargs = _flag_type(hints[f.name])
        shown = f" (default: {default})" if default not in (None, [], "") else ""
        group.add_argument(
            f"--{name}",
            dest=dest,
            type=kind,
            nargs=nargs,
            default=default,
            choices=f.metadata.get("choices"),
            help=help_text + shown,
        )
        added.append((f.name, dest))
    return added


def config_values(args, fields: list) -> dict:
    return {name: getattr(args, dest) for name, dest in fields}


def _common(parser: argparse.ArgumentParser, output: str, training: bool = True) -> dict:
    """The data, seed, training and output flags every technique command has."""
    parser.add_argument(
        "--task",
        choices=list(RECIPE_TASKS),
        help="what the model is fine-tuned for (default: the task of the fine-tuned model given, else "
        f"{DEFAULT_TASK_NAME})",
    )
    fields = {"data": add_config_arguments(parser, DataSection, title="data")}
    parser.add_argument("--seed", type=int, default=0, help="seed of data order, heads and dropout")
    if training:
        fields["training"] = add_config_arguments(parser, TrainingSection, title="training")
    parser.add_argument("--output-dir", default=output, help=f"run folder (default: {output})")
    parser.add_argument("--restart", action="store_true", help="start over instead of resuming a run in --output-dir")
    return fields


def _base(args, name: str) -> dict:
    """The recipe's common part, once the model flags name models that exist (a second, not a failed training)."""
    for flag in ("model", "teacher"):
        value = getattr(args, flag, None)
        pretrained = flag == "model" and name not in ("prune", "export")  # the others' --model is fine-tuned
        if value and not (pretrained and value in MODEL_SHORTCUTS):  # "minilm": the recipe resolves it
            check_shortcut(value, f"--{flag} {value}")
            model_source(value, f"--{flag}", tokenizer=True)
    recipe = {"name": name, "output_dir": args.output_dir, "seed": args.seed}
    if args.task:
        recipe["task"] = args.task
    recipe["data"] = config_values(args, args.fields["data"])
    if getattr(args, "model", None):
        recipe["model"] = args.model
    return recipe


def _fine_tuned(recipe: dict, path: str) -> dict:
    """The recipe with `path` as its fine-tuned teacher, and that model's task unless --task said one."""
    recipe["teacher"] = {"path": path}
    recipe.setdefault("task", folder_task(path) or DEFAULT_TASK_NAME)
    return recipe


def _run(recipe, args) -> dict:
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    report = run_recipe(recipe, restart=args.restart)
    if report and PartialState().is_main_process:  # under `accelerate launch`, said once (the run's process state)
        table = report_markdown(Report.from_dict(report))
        print(f"\n{table}\nWrote {Path(recipe.output_dir) / 'report.json'}, report.md and the plots.")
    return report


def run_command(args):
    if args.output_dir is not None and not args.output_dir.strip():  # the recipe's folder would be used instead
        raise ValueError(f"--output-dir {args.output_dir!r} is empty: give the run's folder, e.g. runs/x.")
    if args.output_dir is not None:
        named = [text for text in args.set if text.split("=", 1)[0].strip() == "output_dir"]
        if named:  # which one wins would be a guess
            raise ValueError(
                f"--set {named[-1]} and --output-dir {args.output_dir} both name the run folder; give one."
            )
    recipe = load_recipe(args.recipe, args.set + ([f"output_dir={args.output_dir}"] if args.output_dir else []))
    return _run(recipe, args)


def _no_embedding_models(recipe: dict) -> dict:
    """layerdrop, share and prune have no sentence-embedding form (a recipe's message would name its sections)."""
    if recipe.get("task") == "sentence-embedding":
        raise ValueError(
            f"hf-efficient {recipe['name']} does not compress sentence-embedding models; distil one into fewer layers "
            "with hf-efficient distill --teacher FOLDER, or quantize it with hf-efficient export --model FOLDER."
        )
    return recipe


def layerdrop_command(args):
    recipe = _no_embedding_models(_base(args, "layerdrop"))
    layerdrop = config_values(args, args.fields["layerdrop"])
    off = not isinstance(layerdrop["rate"], list) and layerdrop["rate"] == 0
    recipe["teacher"] = {**config_values(args, args.fields["training"]), "layerdrop": None if off else layerdrop}
    recipe["prune"] = {"model": "teacher", "depths": args.depths}
    return _run(recipe, args)


def distill_command(args):
    recipe = _base(args, "distill")
    recipe.setdefault("model", args.teacher)
    _fine_tuned(recipe, args.teacher)
    recipe["student"] = {
        **config_values(args, args.fields["training"]),
        **config_values(args, args.fields["student"]),
        "layerdrop": args.layerdrop,
        "distillation": config_values(args, args.fields["distillation"]),
    }
    return _run(recipe, args)


def share_command(args):
    recipe = _base(args, "share")
    student = {**config_values(args, args.fields["training"]), "sharing": config_values(args, args.fields["sharing"])}
    if args.teacher:
        recipe.setdefault("model", args.teacher)  # as distill: a student of the teacher's vocabulary and shape
        _fine_tuned(recipe, args.teacher)
        student["distillation"] = {}
    _no_embedding_models(recipe)
    recipe["student"] = student
    return _run(recipe, args)


def prune_command(args):
    recipe = _base(args, "prune")
    recipe.setdefault("model", args.model)
    _no_embedding_models(_fine_tuned(recipe, args.model))
    recipe["prune"] = {"model": "teacher", **config_values(args, args.fields["prune"])}
    return _run(recipe, args)


def export_command(args):
    recipe = _base(args, "export")
    _fine_tuned(recipe, args.model)
    recipe["export"] = config_values(args, args.fields["export"])
    return _run(recipe, args)


# Below this many rows an accuracy is not worth comparing: one row moves it by more than 3 points, and its
# standard error, sqrt(p (1 - p) / n), is 7 points at p = 0.8 and n = 30: more than the gaps between the
# models a run compares.
MIN_RELIABLE_ROWS = 30
EVALUATE_SPLITS = ("test", "validation", "train", "all")


def _model_folder(model: Path) -> Path:
    """The folder of a model: itself, or the folder an .onnx file lies in (with the config it was exported from)."""
    return model.parent if model.suffix == ".onnx" else model


def _load_split(args, model: Path, split: str = "test"):
    """The tokenized rows of `split` of the data flags ("all": every row), what they are, a line saying so, and
    the scoring arguments of `measure_models` (the task, from the model's head)."""
    import datasets
    from transformers import AutoTokenizer

    if not is_seed(args.seed):
        raise ValueError(f"--seed {args.seed}: give an integer from 0 to 2**32 - 1.")
    if split in ("test", "validation") and getattr(args, "max_train_samples", None) is not None:
        raise ValueError(
            f"--max-train-samples {args.max_train_samples} keeps fewer training rows, and the {split} split is "
            "scored: leave it out" + (" (or score --split train or all)." if hasattr(args, "split") else ".")
        )
    folder = _model_folder(model)
    # evaluate's --model; benchmark's first model, which its help calls the reference.
    task = fine_tuned_task(str(folder), "model" if hasattr(args, "model") else "reference") or DEFAULT_TASK_NAME
    config = DataConfig(**config_values(args, args.fields["data"]))
    data = load_data(config, task, seed=args.seed)
    labels = model_labels(folder)
    if config.label_names is not None and labels and len(config.label_names) > len(labels):  # ids it cannot output
        raise ValueError(
            f"--label-names gives {len(config.label_names)} names, but --model {model} has {len(labels)} labels "
            f"({', '.join(map(str, labels.values()))}); give the names of its ids, in order."
        )
    # Named labels numbered as the model numbers them, --label-names or not: the names are what both agree on.
    data = align_labels(data, labels, f"--model {model}", task=task, named=config.label_names is not None)
    total = sum(len(part) for part in data.values())
    rows = datasets.concatenate_datasets([data[name] for name in SPLITS]) if split == "all" else data[split]
    source = config.train_file or config.source
    default = source == DEFAULT_DATA
    name = source if default else Path(source).name
    if split == "all":
        line = f"scored all {total:,} rows of {name} (a model trained on it has seen its train rows among them)"
    else:
        if default:
            how = "split by movie"
        elif split == "train":
            how = f"what the validation and test splits drawn with seed {args.seed} leave"
        else:
            how = f"a {len(rows) / total:.0%} split drawn with seed {args.seed}"
        line = (
            f"scored the {split} split: {len(rows):,} of {total:,} rows of {name} ({how}; --split all scores every row)"
        )
    scope = {"data": str(source), "split": split, "rows": len(rows), "data_rows": total}
    tokenized = tokenize_dataset(
        datasets.DatasetDict({split: rows}),
        AutoTokenizer.from_pretrained(folder),
        config.max_length,
        task=task,
        doc_stride=config.doc_stride,
    )
    scoring = {
        "task": task,
        "examples": rows,
        "label_names": label_names(data),
        "n_best_size": config.n_best_size,
        "max_answer_length": config.max_answer_length,
    }
    return tokenized[split], scope, line, scoring


def _warn_if_few(scope: dict, split_flag: bool = False) -> None:
    """Say on stderr that a metric on fewer than `MIN_RELIABLE_ROWS` rows is not to be trusted (and, where the
    command has `--split`, that it can score every row)."""
    rows = scope["rows"]
    if rows >= MIN_RELIABLE_ROWS:
        return
    more = f"; --split all scores all {scope['data_rows']} rows" if split_flag and rows < scope["data_rows"] else ""
    print(
        f"warning: {rows} row{'s' * (rows != 1)} scored: a metric on fewer than {MIN_RELIABLE_ROWS} rows is "
        f"not reliable (one row moves an accuracy by {100 / max(rows, 1):.1f} points){more}.",
        file=sys.stderr,
        flush=True,
    )


def _refuse_embedding_model(path: str, what: str) -> None:
    """`evaluate` and `benchmark` score a task head on labelled rows; an embedding model has none (its export keeps
    the graphs in onnx/ and the tokenizer one folder up)."""
    path = Path(path)
    folders = (path.parent, path.parent.parent) if path.suffix == ".onnx" else (path,)
    if any((folder / "modules.json").is_file() for folder in folders):
        raise ValueError(
            f"{what}{path} is a sentence-transformers model, which evaluate and benchmark do not score: a "
            "sentence-embedding recipe measures one against its teacher (cosine, top-10 overlap, kNN accuracy), e.g. "
            "recipes/sentence_minilm.yaml with its model: set to the folder."
        )


def evaluate_command(args):
    _refuse_embedding_model(args.model, "--model ")
    model = Path(model_source(args.model, "--model", onnx=True, tokenizer=True))
    rows, scope, line, scoring = _load_split(args, model, args.split)
    print(line, flush=True)
    _warn_if_few(scope, split_flag=True)
    # Scored, not timed (`benchmark` times), and without the bf16 copy a reference gets in a comparison.
    (entry,) = measure_models(
        {model.name: model}, rows, task=scoring["task"], scoring=scoring, batch_sizes=(), bf16_baseline=False
    )
    print(json.dumps({"model": str(model), **scope, **entry.metrics}))
    return entry.metrics


def benchmark_command(args):
    from .report import TaskInfo
    from .report.cpu import check_threads, usable_cores
    from .report.measure import hardware

    for number, model in enumerate(args.models):  # before evaluating the others for minutes
        _refuse_embedding_model(model, "")
        model_source(model, "", onnx=True, tokenizer=number == 0)
    if args.output and (Path(args.output).is_dir() or not Path(args.output).parent.is_dir()):
        raise ValueError(f"--output {args.output}: give a file path in an existing folder, e.g. benchmark.json.")
    check_threads(args.threads, f"--threads {args.threads}")
    models = _row_names(args.models)
    test, scope, _, scoring = _load_split(args, Path(args.models[0]))
    _warn_if_few(scope)
    task = get_task(scoring["task"])
    reference = model_labels(_model_folder(Path(args.models[0])))
    for model in args.models[1:]:  # scored with the reference's head and metric: the same task, fine-tuned
        other = fine_tuned_task(str(_model_folder(Path(model))), "models")
        if other not in (None, task.name):
            raise ValueError(
                f"{model} is a {other} model, but the reference, {args.models[0]}, is {task.name}: benchmark models "
                "of one task together."
            )
        _check_same_labels(model_labels(_model_folder(Path(model))), reference, model, args.models[0])
    entries = measure_models(
        models,
        test,
        task=task,
        scoring=scoring,
        batch_sizes=args.batch_sizes,
        threads=args.threads,
        bf16_baseline=args.bf16_baseline,
    )
    report = Report(
        name="benchmark",
        task=TaskInfo(
            dataset=Path(scope["data"]).name, split="test", rows=scope["rows"], metric=task.metric, name=task.name
        ),
        hardware=hardware(args.threads or usable_cores()),
        timing=entries.timing,
        models=list(entries),
    )
    print(report_markdown(report))
    if args.output:
        report.save(args.output)
    return report


def _row_names(paths: list[str]) -> dict[str, str]:
    """Each model's name in the table (its folder's name, an .onnx file's path), or its path where names clash, with
    each other or with the reference's bf16 copy (`<reference>-bf16`, a row of its own)."""
    resolved = [Path(p).resolve() for p in paths]
    twice = next((p for p, r in zip(paths, resolved, strict=True) if resolved.count(r) > 1), None)
    if twice is not None:
        raise ValueError(f"{twice} is given twice; give each model once.")
    names = [p if Path(p).suffix == ".onnx" else Path(p).name for p in paths]
    clash = len(set(names)) < len(names) or f"{names[0]}-bf16" in names
    return dict(zip(paths if clash else names, paths, strict=True))


def _check_same_labels(labels: dict | None, reference: dict | None, model: str, reference_path: str) -> None:
    """Refuse a model whose head numbers other labels than the reference's: its scores would be read by the
    reference's ids (a model of its ids only, LABEL_0..., agrees with any names of as many ids)."""
    if labels is None or reference is None or labels == reference:
        return
    generic = any(all(re.fullmatch(r"LABEL_\d+", str(n)) for n in names.values()) for names in (labels, reference))
    if len(labels) == len(reference) and generic:
        return

    def shown(names: dict) -> str:
        return ", ".join(f"{i} {names[i]}" for i in sorted(names)[:8])

    raise ValueError(
        f"{model} numbers its labels {shown(labels)}, but the reference, {reference_path}, {shown(reference)}: "
        "benchmark models whose heads number the same labels alike."
    )


def card_command(args):
    from .hub import write_model_card
    from .hub.card import check_card_metadata, public_recipe, repo_id_problem

    run = Path(args.run_dir)
    if not run.is_dir():
        raise ValueError(f"{run}: no such folder; give the output_dir of a run (hf-efficient run RECIPE writes one).")
    if not (run / "report.json").is_file():
        raise RecipeError(f"{run} has no report.json: run a recipe into it first (hf-efficient run RECIPE).")
    recipe, hub = load_recipe(run / "recipe.yaml", [f"output_dir={run}"]), run / "hub"
    # The license and language given, else those of the card written before (`card --license ...`), else the recipe's.
    before = _card_metadata(hub / "README.md")
    for key, example in (("license", "apache-2.0"), ("language", "en")):
        value = getattr(args, key)
        if value is not None and not value.strip():  # not silently the earlier card's or the recipe's
            raise ValueError(f"--{key} {value!r}: give the card's {key}, e.g. {example}, or leave the flag out.")
    defaults = CardSection()
    check_card_metadata(args.license or defaults.license, args.language or defaults.language, "--", " ")
    problem = repo_id_problem(args.repo_id) if args.repo_id is not None else None
    if problem:
        raise ValueError(f"--repo-id {args.repo_id!r}: {problem}")
    section = recipe.card or CardSection()
    chosen = {key: getattr(args, key) or before.get(key) or getattr(section, key) for key in ("license", "language")}
    if not hub.is_dir():  # a run without a card step: its card step assembles hub/ (never a push)
        card = [f"card.{key}={value}" for key, value in chosen.items()] + ["push=false"]
        run_recipe(load_recipe(run / "recipe.yaml", [f"output_dir={run}", *card]))
    # The recipe the card shows, with the card's settings in it.
    shown = yaml.safe_dump({**yaml.safe_load((run / "recipe.yaml").read_text()), "card": chosen}, sort_keys=False)
    (hub / "recipe.yaml").write_text(public_recipe(shown) + "\n")
    repo_id = args.repo_id or (recipe.push.repo_id if recipe.push else None)  # the repo the loading snippets name
    write_model_card(hub, Report.load(run / "report.json"), shown, **chosen, repo_id=repo_id)
    print(f"Wrote {hub / 'README.md'}")


def _card_metadata(card: Path) -> dict:
    """The license and language a model card's metadata names (none for a folder without a card)."""
    from huggingface_hub import ModelCard

    data = ModelCard(card.read_text()).data if card.is_file() else None
    return {key: value for key in ("license", "language") if isinstance(value := getattr(data, key, None), str)}


def push_command(args):
    from .hub import push_to_hub, write_model_card
    from .hub.card import repo_id_problem

    problem = repo_id_problem(args.repo_id)
    if problem:
        raise ValueError(f"--repo-id {args.repo_id!r}: {problem}")
    folder = Path(args.folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder; give a run folder or a model folder to upload.")
    if (folder / "hub").is_dir():  # a run folder: push what its card step assembled
        folder = folder / "hub"
    elif (folder / "run_state.json").is_file():
        raise ValueError(
            f"{folder} is a run without hub/ (its recipe has no card step, or hub/ was deleted): assemble it with "
            f"hf-efficient card {folder}, then push."
        )
    card = folder / "README.md"
    before = card.read_text() if card.is_file() else None
    if (folder / "report.json").is_file() and before is not None:
        # The card's loading snippets name the repo: write them for the one pushed to, keeping what the card says
        # of its license and language (`card --license ...` chose them).
        recipe = folder / "recipe.yaml"
        write_model_card(
            folder,
            Report.load(folder / "report.json"),
            recipe.read_text() if recipe.is_file() else None,
            repo_id=args.repo_id,
            **_card_metadata(card),
        )
    try:
        url = push_to_hub(folder, args.repo_id, private=not args.public)
    except BaseException:
        if before is not None:  # nothing was uploaded: the folder stays as it was
            card.write_text(before)
        raise
    print(f"Uploaded {folder} to {url}")
    return url


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="hf-efficient",
        description="Make transformer encoders smaller and faster: LayerDrop, PKD, cross-layer sharing, int8.",
        epilog="Run `hf-efficient COMMAND --help` for a command's options and examples.",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error, not one line")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, run) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help,
            description=help,
            epilog=EXAMPLES[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(run=run, fields={}, command_parser=sub)
        # Also after the command; SUPPRESS keeps `hf-efficient --debug COMMAND` from being reset.
        sub.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error"
        )
        return sub

    def technique_command(technique: str, run):
        """The command of a row of the technique table: its name and help come from the row."""
        row = TECHNIQUES[technique]
        return command(row.command, row.summary, run)

    run = command("run", "run a recipe (YAML): the whole pipeline, resumable", run_command)
    run.add_argument("recipe", help="a recipe file, e.g. recipes/quickstart.yaml")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe field")
    run.add_argument("--output-dir", help="override the recipe's output_dir")
    run.add_argument("--restart", action="store_true", help="start over instead of resuming")

    layerdrop = technique_command("layerdrop", layerdrop_command)
    layerdrop.add_argument("--model", help="model folder or name (default: the shipped MiniLM)")
    fields = _common(layerdrop, "runs/layerdrop")
    fields["layerdrop"] = add_config_arguments(layerdrop, LayerDropConfig, prefix="layerdrop", title="LayerDrop")
    layerdrop.add_argument("--depths", type=int, nargs="+", help="depths to evaluate (default: all down to 2)")
    layerdrop.set_defaults(fields=fields)

    distill = technique_command("distillation", distill_command)
    distill.add_argument("--teacher", required=True, help="fine-tuned teacher folder")
    distill.add_argument("--model", help="pretrained model the student starts from (default: the teacher)")
    fields = _common(distill, "runs/distill")
    # The student's training fields are the --epochs, --batch-size, ... flags `_common` added.
    training = tuple(f.name for f in dataclasses.fields(TrainingSection))
    fields["student"] = add_config_arguments(distill, StudentSection, skip=("path", *training), title="student")
    fields["distillation"] = add_config_arguments(distill, PKDConfig, prefix="pkd", title="PKD")
    distill.add_argument("--layerdrop", type=float, help="LayerDrop rate of the student (default: none)")
    distill.set_defaults(fields=fields)

    share = technique_command("sharing", share_command)
    share.add_argument("--model", help="pretrained model (default: the teacher, else the shipped MiniLM)")
    share.add_argument("--teacher", help="distill from this fine-tuned teacher instead of fine-tuning directly")
    fields = _common(share, "runs/share")
    fields["sharing"] = add_config_arguments(share, SharingConfig, prefix="sharing", title="sharing")
    share.set_defaults(fields=fields)

    prune = technique_command("pruning", prune_command)
    prune.add_argument("--model", required=True, help="fine-tuned model folder (best trained with LayerDrop)")
    fields = _common(prune, "runs/prune", training=False)
    fields["prune"] = add_config_arguments(prune, PruneSection, skip=("model",), title="pruning")
    prune.set_defaults(fields=fields)

    export = technique_command("int8", export_command)
    export.add_argument("--model", required=True, help="fine-tuned model folder")
    fields = _common(export, "runs/export", training=False)
    fields["export"] = add_config_arguments(export, Int8ExportConfig, prefix="export", title="int8 export")
    export.set_defaults(fields=fields)

    evaluate = command(
        "evaluate", "metrics of a model folder or an .onnx file on a split of the data", evaluate_command
    )
    evaluate.add_argument("--model", required=True, help="model folder, or an ONNX file in one")
    evaluate.set_defaults(fields={"data": add_config_arguments(evaluate, DataSection, title="data")})
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the split of a single data file")
    evaluate.add_argument(
        "--split",
        choices=EVALUATE_SPLITS,
        default="test",
        help="rows to score: a split (a single file's are carved with --seed), or all rows (default: test)",
    )

    benchmark = command("benchmark", "accuracy, size and CPU latency of models, side by side", benchmark_command)
    benchmark.add_argument("models", nargs="+", help="model folders or .onnx files; the first is the reference")
    benchmark.add_argument(
        "--batch-sizes", type=positive_int, nargs="+", default=[1, 32], help="batch sizes to time (default: 1 32)"
    )
    benchmark.add_argument(
        "--bf16-baseline",
        action=argparse.BooleanOptionalAction,
        help="also time the first model with its weights in bf16 (default: when the CPU has bf16 instructions)",
    )
    benchmark.add_argument("--threads", type=positive_int, help="CPU threads (default: all cores)")
    benchmark.add_argument("--output", help="write the measurements as JSON here")
    benchmark.set_defaults(fields={"data": add_config_arguments(benchmark, DataSection, title="data")})
    benchmark.add_argument("--seed", type=int, default=0, help="seed of the split of a single data file")

    card = command("card", "write the Hub model card of a run", card_command)
    card.add_argument("run_dir")
    card.add_argument("--license", help="the card's license (default: the run's, else apache-2.0)")
    card.add_argument("--language", help="the card's language (default: the run's, else en)")
    card.add_argument("--repo-id", help="the Hub repo the card's loading snippets name (default: a placeholder)")

    push = command("push", "upload a run (its hub/ folder) or a model folder to the Hugging Face Hub", push_command)
    push.add_argument("folder")
    push.add_argument("--repo-id", required=True, help="namespace/name")
    push.add_argument("--public", action="store_true", help="make the repository public (default: private)")
    return parser


# Anticipated errors (bad input, a missing file or package, a failed accuracy check): one line, no traceback.
# Anything else is a bug.
ANTICIPATED = (ValueError, OSError, ImportError, AccuracyDropError)
BAD_INPUT, FAILED, INTERRUPTED = 2, 1, 130
# `name=value` in a message (a recipe field like `data.max_length=0`, or a call like `Config(rate=1.5)`).
_CALL = r"\b[A-Za-z_]\w*\((?P<argument>\w+)=(?P<call_value>[^()]*)\)"
_FIELD = r"(?<![\w.-])(?P<path>(?:\w+\.)*)(?P<name>\w+)=(?P<value>\[[^\]]*\]|'[^']*'|\"[^\"]*\"|[^\s:;,()`]+)"
_NAMED = re.compile(f"{_CALL}|{_FIELD}")


def one_line(error: BaseException, limit: int = 400) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def flag_names(message: str, args) -> str:
    """`message` with the flags of this command in place of the recipe fields and Python arguments they set:
    `recipe.data.max_length=0` -> `--max-length 0`, `LayerDropConfig(rate=1.5)` -> `--rate 1.5`."""
    options = {a.dest: max(a.option_strings, key=len) for a in args.command_parser._actions if a.option_strings}
    flags = dict(options)
    for group, pairs in args.fields.items():
        for field, dest in pairs:
            flags[f"{group}.{field}"] = options[dest]
            flags.setdefault(field, options[dest])
    if "teacher" in options or args.command in ("prune", "export"):  # the fine-tuned model: the recipe's teacher
        flags["teacher.path"] = options.get("teacher") or options["model"]

    def swap(match: re.Match) -> str:
        if match["argument"]:
            name, value, qualified = match["argument"], match["call_value"], None
        else:
            name, value, qualified = match["name"], match["value"], match["path"].split(".")[-2:-1]
        flag = flags.get(".".join([*(qualified or []), name])) or flags.get(name)
        if flag is None:
            return match[0]
        if len(value) > 1 and value[0] in "'\"" and value[-1] == value[0] and not re.search(r"\s", value):
            value = value[1:-1]
        return f"{flag} {value}"

    return re.sub(r"^[\w.]+: (?=--)", "", _NAMED.sub(swap, message))


# Where the commands without --task read the task from, for a user who passes one.
TASK_FROM = {
    "run": "the recipe names it: task: in the file, or --set task=NAME",
    "card": "the card reads it from the run's report",
}


def main(argv: list[str] | None = None):
    """The command line. A user's error prints one line and exits with 2 (130 for Ctrl-C); `--debug` shows
    the traceback instead."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:  # said by the command's parser, whose --help lists its flags
        options = [option for action in args.command_parser._actions for option in action.option_strings]
        close = difflib.get_close_matches(unknown[0].replace("_", "-"), options, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        if unknown[0].split("=")[0] == "--task":  # what other commands take, this one reads elsewhere
            hint = f" ({TASK_FROM.get(args.command, 'the task comes from the model folder')})"
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    try:
        with warnings.catch_warnings():  # restores showwarning, for a caller that runs main() in its own process
            if not args.debug:
                warnings.showwarning = _warning_printer(args, warnings.showwarning)
            args.run(args)
        # Under `accelerate launch`: join the process group's threads before the interpreter's teardown.
        end_process_group()
    except KeyboardInterrupt:
        if args.debug:
            raise
        message = "interrupted."
        if hasattr(args, "restart"):  # a run folder keeps the steps it completed
            command = shlex.join(["hf-efficient", *(a for a in argv if a != "--restart")])
            message += f" Completed steps are kept: resume with `{command}`."
        _exit(args, message, INTERRUPTED)
    except ANTICIPATED as error:
        if args.debug:
            raise
        message = one_line(error) if args.command == "run" else flag_names(one_line(error), args)
        _exit(args, message, FAILED if isinstance(error, AccuracyDropError) else BAD_INPUT)
    except Exception as error:
        if args.debug:
            raise
        _exit(
            args,
            f"unexpected {type(error).__name__}: {one_line(error, 200)} (a bug of hf_efficient: "
            "rerun with --debug for the traceback, and report it).",
            FAILED,
        )


def _warning_printer(args, show_other):
    """hf_efficient's own warnings as its errors are: one line, naming the flags (others as Python shows them)."""
    package = str(Path(__file__).parent)

    def show(message, category, filename, lineno, file=None, line=None):
        if not str(filename).startswith(package):
            return show_other(message, category, filename, lineno, file, line)
        text = str(message) if args.command == "run" else flag_names(str(message), args)
        print(f"hf-efficient {args.command}: warning: {' '.join(text.split())}", file=sys.stderr, flush=True)

    return show


def _exit(args, message: str, code: int):
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):  # a bar cut short: its last state above the message
        bar.close()
    print(f"hf-efficient {args.command}: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
