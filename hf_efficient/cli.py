"""The `hf-efficient` command: run a recipe, or one technique at a time (each builds a small recipe).

The flags of the technique commands are generated from the fields of the recipe's sections and
of the technique configs (`LayerDropConfig`, `PKDConfig`, `SharingConfig`, `Int8ExportConfig`), so
that a default lives in one place: the dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path

from .data import DEFAULT_TASK, SPLITS, load_text_classification, tokenize_dataset
from .distill import PKDConfig
from .export import Int8ExportConfig
from .layerdrop import LayerDropConfig
from .recipe import Recipe, RecipeError, load_recipe, run_recipe
from .recipe.config import DataSection, PruneSection, StudentSection, TrainingSection
from .report import Report, measure_models, report_markdown
from .sharing import SharingConfig
from .techniques import TECHNIQUES

EXAMPLES = {
    "run": """examples:
  hf-efficient run recipes/quickstart.yaml
  hf-efficient run recipes/quickstart.yaml --set student.num_layers=2 --set output_dir=runs/two-layers
  accelerate launch --multi_gpu --num_processes 2 -m hf_efficient run recipes/quickstart.yaml""",
    "layerdrop": """examples:
  hf-efficient layerdrop                              # shipped MiniLM, Rotten Tomatoes, 5,000 training rows
  hf-efficient layerdrop --full --epochs 3            # the whole training set
  hf-efficient layerdrop --model path/to/encoder --data reviews.csv --text-column review --label-column stars""",
    "distill": """examples:
  hf-efficient distill --teacher runs/quickstart/teacher --student-layers 3
  hf-efficient distill --teacher runs/quickstart/teacher --student-layers 3 --strategy last --layerdrop 0.1""",
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


def _values(text: str, item: type):
    """`0,2,4` -> [0, 2, 4]; a single value stays a value."""
    parts = [item(part) for part in text.split(",")]
    return parts if "," in text else parts[0]


def _flag_type(hint):
    """An argparse `type` for a dataclass field's type hint (`int | None`, `str | list[int]`, ...)."""
    options = [
        o for o in (typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)) if o is not type(None)
    ]
    lists = [typing.get_args(o)[0] for o in options if typing.get_origin(o) is list]
    scalars = [o for o in options if typing.get_origin(o) is not list]
    if lists and scalars:  # e.g. `init: str | list[int]`: "skip", or "0,2,4"

        def parse(text: str):
            return _values(text, lists[0]) if "," in text or text[:1].isdigit() else scalars[0](text)

        return parse, None
    if lists:
        return lists[0], "+"
    return scalars[0], None


def add_config_arguments(parser: argparse.ArgumentParser, cls, *, prefix: str = "", skip=(), title: str = "") -> list:
    """Add a `--flag` per field of dataclass `cls` (help and choices from the field's metadata).

    A flag that another group already added gets `prefix` (e.g. `--layerdrop-seed`). Returns
    `(field name, argparse dest)` pairs, to read the values back with `config_values`.
    """
    group = parser.add_argument_group(title or cls.__name__)
    hints = typing.get_type_hints(cls)
    taken = {option for action in parser._actions for option in action.option_strings}
    added = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip or f.metadata.get("techniques"):
            continue
        name = f.metadata.get("flag", f.name.replace("_", "-"))
        if f"--{name}" in taken:
            name = f"{prefix}-{name}"
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        dest = name.replace("-", "_")
        help_text = f.metadata.get("help", "")
        if hints[f.name] is bool:
            if default:
                group.add_argument(f"--no-{name}", dest=dest, action="store_false", help=f"do not: {help_text}")
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
    fields = {"data": add_config_arguments(parser, DataSection, title="data")}
    parser.add_argument("--seed", type=int, default=0, help="seed of data order, heads and dropout")
    if training:
        fields["training"] = add_config_arguments(parser, TrainingSection, title="training")
    parser.add_argument("--output-dir", default=output)
    parser.add_argument("--restart", action="store_true", help="start over instead of resuming a run in --output-dir")
    return fields


def _base(args, name: str) -> dict:
    recipe = {"name": name, "output_dir": args.output_dir, "seed": args.seed}
    recipe["data"] = config_values(args, args.fields["data"])
    if getattr(args, "model", None):
        recipe["model"] = args.model
    return recipe


def _run(recipe, args) -> dict:
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    report = run_recipe(recipe, restart=args.restart)
    if report:
        table = report_markdown(Report.from_dict(report))
        print(f"\n{table}\nWrote {recipe.output_dir}/report.json, report.md and the plots.")
    return report


def run_command(args):
    recipe = load_recipe(args.recipe, args.set + ([f"output_dir={args.output_dir}"] if args.output_dir else []))
    return _run(recipe, args)


def layerdrop_command(args):
    recipe = _base(args, "layerdrop")
    layerdrop = config_values(args, args.fields["layerdrop"])
    off = not isinstance(layerdrop["rate"], list) and layerdrop["rate"] == 0
    recipe["teacher"] = {**config_values(args, args.fields["training"]), "layerdrop": None if off else layerdrop}
    recipe["prune"] = {"model": "teacher", "depths": args.depths}
    return _run(recipe, args)


def distill_command(args):
    recipe = _base(args, "distill")
    recipe.setdefault("model", args.teacher)
    recipe["teacher"] = {"path": args.teacher}
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
        recipe["teacher"] = {"path": args.teacher}
        student["distillation"] = {}
    recipe["student"] = student
    return _run(recipe, args)


def prune_command(args):
    recipe = _base(args, "prune")
    recipe.setdefault("model", args.model)
    recipe["teacher"] = {"path": args.model}
    recipe["prune"] = {"model": "teacher", **config_values(args, args.fields["prune"])}
    return _run(recipe, args)


def export_command(args):
    recipe = _base(args, "export")
    recipe["teacher"] = {"path": args.model}
    recipe["export"] = config_values(args, args.fields["export"])
    return _run(recipe, args)


# Below this many rows an accuracy is not worth comparing: one row moves it by more than 3 points, and its
# standard error, sqrt(p (1 - p) / n), is 7 points at p = 0.8 and n = 30: more than the gaps between the
# models a run compares.
MIN_RELIABLE_ROWS = 30
EVALUATE_SPLITS = ("test", "validation", "train", "all")


def _load_split(args, model: Path, split: str = "test"):
    """The tokenized rows of `split` of `--data` ("all": every row), what they are, and a line saying so."""
    import datasets
    from transformers import AutoTokenizer

    folder = model.parent if model.suffix == ".onnx" else model
    data = load_text_classification(
        args.data, text_column=args.text_column, label_column=args.label_column, seed=args.seed
    )
    total = sum(len(part) for part in data.values())
    rows = datasets.concatenate_datasets([data[name] for name in SPLITS]) if split == "all" else data[split]
    name = args.data if args.data == DEFAULT_TASK else Path(args.data).name
    if split == "all":
        line = f"scored all {total:,} rows of {name} (a model trained on it has seen its train rows among them)"
    else:
        if args.data == DEFAULT_TASK:
            how = "split by movie"
        elif split == "train":
            how = f"what the validation and test splits drawn with seed {args.seed} leave"
        else:
            how = f"a {len(rows) / total:.0%} split drawn with seed {args.seed}"
        line = (
            f"scored the {split} split: {len(rows):,} of {total:,} rows of {name} ({how}; --split all scores every row)"
        )
    scope = {"data": str(args.data), "split": split, "rows": len(rows), "data_rows": total}
    tokenized = tokenize_dataset(
        datasets.DatasetDict({split: rows}), AutoTokenizer.from_pretrained(folder), args.max_length
    )
    return tokenized[split], scope, line


def _warn_if_few(scope: dict, split_flag: bool = False) -> None:
    """Say on stderr that an accuracy on fewer than `MIN_RELIABLE_ROWS` rows is not to be trusted (and, where the
    command has `--split`, that it can score every row)."""
    rows = scope["rows"]
    if rows >= MIN_RELIABLE_ROWS:
        return
    more = f"; --split all scores all {scope['data_rows']} rows" if split_flag and rows < scope["data_rows"] else ""
    print(
        f"warning: {rows} row{'s' * (rows != 1)} scored: an accuracy on fewer than {MIN_RELIABLE_ROWS} rows is "
        f"not reliable (one row moves it by {100 / max(rows, 1):.1f} points){more}.",
        file=sys.stderr,
        flush=True,
    )


def evaluate_command(args):
    model = Path(args.model)
    rows, scope, line = _load_split(args, model, args.split)
    print(line, flush=True)
    _warn_if_few(scope, split_flag=True)
    (entry,) = measure_models({model.name: model}, rows, batch_sizes=[1], seconds=0.5)
    print(json.dumps({"model": str(model), **scope, **entry.metrics}))
    return entry.metrics


def benchmark_command(args):
    from .report import TaskInfo
    from .report.measure import hardware

    missing = [m for m in args.models if not Path(m).exists()]
    if missing:  # before evaluating the others for minutes
        raise ValueError(f"benchmark: {', '.join(missing)} does not exist; give model folders or .onnx files.")
    models = {m if Path(m).suffix == ".onnx" else Path(m).name: m for m in args.models}
    test, scope, _ = _load_split(args, Path(args.models[0]))
    _warn_if_few(scope)
    entries = measure_models(
        models, test, batch_sizes=args.batch_sizes, threads=args.threads, bf16_baseline=args.bf16_baseline
    )
    report = Report(
        name="benchmark",
        task=TaskInfo(dataset=Path(args.data).name, split="test", rows=len(test)),
        hardware=hardware(args.threads or "all"),
        timing=entries.timing,
        models=list(entries),
    )
    print(report_markdown(report))
    if args.output:
        report.save(args.output)
    return report


def card_command(args):
    from .hub import write_model_card

    run = Path(args.run_dir)
    if not (run / "report.json").is_file():
        raise RecipeError(f"{run} has no report.json: run a recipe into it first (hf-efficient run RECIPE).")
    hub = run / "hub"
    if not hub.is_dir():
        recipe = load_recipe(run / "recipe.yaml", [f"output_dir={run}", f"card.license={args.license}"])
        run_recipe(recipe)
    write_model_card(
        hub,
        Report.load(run / "report.json"),
        (run / "recipe.yaml").read_text(),
        license=args.license,
        language=args.language,
        repo_id=args.repo_id,
    )
    print(f"Wrote {hub / 'README.md'}")


def push_command(args):
    from .hub import push_to_hub, write_model_card

    folder = Path(args.folder)
    if (folder / "hub").is_dir():  # a run folder: push what its card step assembled
        folder = folder / "hub"
    if (folder / "report.json").is_file() and (folder / "README.md").is_file():
        # The card's loading snippets name the repo: write them for the one pushed to.
        recipe = folder / "recipe.yaml"
        write_model_card(
            folder,
            Report.load(folder / "report.json"),
            recipe.read_text() if recipe.is_file() else None,
            repo_id=args.repo_id,
        )
    url = push_to_hub(folder, args.repo_id, private=not args.public)
    print(f"Uploaded {folder} to {url}")
    return url


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-efficient",
        description="Make transformer encoders smaller and faster: LayerDrop, PKD, cross-layer sharing, int8.",
        epilog="Run `hf-efficient COMMAND --help` for a command's options and examples.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, run) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help,
            description=help,
            epilog=EXAMPLES[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(run=run)
        return sub

    run = command("run", "run a recipe (YAML): the whole pipeline, resumable", run_command)
    run.add_argument("recipe", help="a recipe file, e.g. recipes/quickstart.yaml")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe field")
    run.add_argument("--output-dir", help="override the recipe's output_dir")
    run.add_argument("--restart", action="store_true", help="start over instead of resuming")

    layerdrop = command("layerdrop", TECHNIQUES["layerdrop"].summary, layerdrop_command)
    layerdrop.add_argument("--model", help="model folder or name (default: the shipped MiniLM)")
    fields = _common(layerdrop, "runs/layerdrop")
    fields["layerdrop"] = add_config_arguments(layerdrop, LayerDropConfig, prefix="layerdrop", title="LayerDrop")
    layerdrop.add_argument("--depths", type=int, nargs="+", help="depths to evaluate (default: all down to 2)")
    layerdrop.set_defaults(fields=fields)

    distill = command("distill", TECHNIQUES["distillation"].summary, distill_command)
    distill.add_argument("--teacher", required=True, help="fine-tuned teacher folder")
    distill.add_argument("--model", help="pretrained model the student starts from (default: the teacher)")
    fields = _common(distill, "runs/distill")
    fields["student"] = add_config_arguments(distill, StudentSection, skip=("path",), title="student")
    fields["distillation"] = add_config_arguments(distill, PKDConfig, prefix="pkd", title="PKD")
    distill.add_argument("--layerdrop", type=float, help="LayerDrop rate of the student (default: none)")
    distill.set_defaults(fields=fields)

    share = command("share", TECHNIQUES["sharing"].summary, share_command)
    share.add_argument("--model", help="pretrained model (default: the shipped MiniLM)")
    share.add_argument("--teacher", help="distill from this fine-tuned teacher instead of fine-tuning directly")
    fields = _common(share, "runs/share")
    fields["sharing"] = add_config_arguments(share, SharingConfig, prefix="sharing", title="sharing")
    share.set_defaults(fields=fields)

    prune = command("prune", TECHNIQUES["pruning"].summary, prune_command)
    prune.add_argument("--model", required=True, help="fine-tuned model folder (best trained with LayerDrop)")
    fields = _common(prune, "runs/prune", training=False)
    fields["prune"] = add_config_arguments(prune, PruneSection, skip=("model",), title="pruning")
    prune.set_defaults(fields=fields)

    export = command("export", TECHNIQUES["int8"].summary, export_command)
    export.add_argument("--model", required=True, help="fine-tuned model folder")
    fields = _common(export, "runs/export", training=False)
    fields["export"] = add_config_arguments(export, Int8ExportConfig, prefix="export", title="int8 export")
    export.set_defaults(fields=fields)

    evaluate = command(
        "evaluate", "metrics of a model folder or an .onnx file on a split of the data", evaluate_command
    )
    evaluate.add_argument("--model", required=True)
    add_config_arguments(evaluate, DataSection, title="data")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the split of a single data file")
    evaluate.add_argument(
        "--split",
        choices=EVALUATE_SPLITS,
        default="test",
        help="rows to score: a split (a single file's are carved with --seed), or all rows (default: test)",
    )

    benchmark = command("benchmark", "accuracy, size and CPU latency of models, side by side", benchmark_command)
    benchmark.add_argument("models", nargs="+", help="model folders or .onnx files; the first is the reference")
    benchmark.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    benchmark.add_argument(
        "--bf16-baseline",
        action=argparse.BooleanOptionalAction,
        help="also time the first model with its weights in bf16 (default: when the CPU has bf16 instructions)",
    )
    benchmark.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    benchmark.add_argument("--output", help="write the measurements as JSON here")
    add_config_arguments(benchmark, DataSection, title="data")
    benchmark.add_argument("--seed", type=int, default=0, help="seed of the split of a single data file")

    card = command("card", "write the Hub model card of a run", card_command)
    card.add_argument("run_dir")
    card.add_argument("--license", default="apache-2.0")
    card.add_argument("--language", default="en")
    card.add_argument("--repo-id", help="the Hub repo the card's loading snippets name (default: a placeholder)")

    push = command("push", "upload a run (its hub/ folder) or a model folder to the Hugging Face Hub", push_command)
    push.add_argument("folder")
    push.add_argument("--repo-id", required=True, help="namespace/name")
    push.add_argument("--public", action="store_true", help="make the repository public (default: private)")
    return parser


def main(argv: list[str] | None = None):
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (RecipeError, ValueError) as error:
        sys.exit(f"hf-efficient {args.command}: {error}")
    except KeyboardInterrupt:
        resume = " Run the same command again to resume where it stopped." if args.command != "push" else ""
        sys.exit(f"hf-efficient {args.command}: interrupted.{resume}")


if __name__ == "__main__":
    main()
