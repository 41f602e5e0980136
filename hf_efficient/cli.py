"""The `hf-efficient` command: run a recipe, or one technique at a time (each builds a small recipe)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .data import DEFAULT_TASK, load_text_classification, tokenize_dataset
from .pipeline import RecipeError, load_recipe, run_recipe
from .pipeline.runner import FOLDERS, measure_models, report_markdown

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
  hf-efficient evaluate --model runs/quickstart/onnx/model_quantized.onnx""",
    "benchmark": """examples:
  hf-efficient benchmark runs/quickstart/teacher runs/quickstart/student runs/quickstart/onnx/model_quantized.onnx""",
    "card": """examples:
  hf-efficient card runs/quickstart                   # (re)write runs/quickstart/hub/README.md""",
    "push": """examples:
  hf-efficient push runs/quickstart --repo-id me/minilm-pkd-int8          # private by default
  hf-efficient push runs/quickstart --repo-id me/minilm-pkd-int8 --public""",
}


def _data_arguments(parser: argparse.ArgumentParser, max_train_samples: int | None = None):
    parser.add_argument("--data", default=DEFAULT_TASK, help="CSV/TSV/JSON(L) file, or the default task")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--max-train-samples", type=int, default=max_train_samples, help="training subset size")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)


def _training_arguments(parser: argparse.ArgumentParser, epochs: float = 3):
    parser.add_argument("--epochs", type=float, default=epochs)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")


def _output_arguments(parser: argparse.ArgumentParser, default: str):
    parser.add_argument("--output-dir", default=default)
    parser.add_argument("--restart", action="store_true", help="start over instead of resuming a run in --output-dir")


def _base(args, name: str) -> dict:
    recipe = {"name": name, "output_dir": args.output_dir, "seed": args.seed}
    recipe["data"] = {
        "source": args.data,
        "text_column": args.text_column,
        "label_column": args.label_column,
        "max_train_samples": args.max_train_samples,
        "max_length": args.max_length,
    }
    if getattr(args, "model", None):
        recipe["model"] = args.model
    return recipe


def _training(args) -> dict:
    return {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "bf16": args.bf16,
    }


def _run(recipe: dict, args) -> dict:
    report = run_recipe(load_recipe(recipe), restart=args.restart)
    if report:
        print(f"\n{report_markdown(report)}\nWrote {recipe.get('output_dir')}/report.json, report.md and the plots.")
    return report


def run_command(args):
    recipe = load_recipe(args.recipe, args.set + ([f"output_dir={args.output_dir}"] if args.output_dir else []))
    report = run_recipe(recipe, restart=args.restart)
    print(f"\n{report_markdown(report)}\nWrote {recipe.output_dir}/report.json, report.md and the plots.")
    return report


def layerdrop_command(args):
    recipe = _base(args, "layerdrop")
    if args.full:
        recipe["data"]["max_train_samples"] = None
    recipe["teacher"] = {**_training(args), "layerdrop": args.rate if args.rate > 0 else None}
    recipe["prune"] = {"model": "teacher", "depths": args.depths}
    return _run(recipe, args)


def distill_command(args):
    recipe = _base(args, "distill")
    recipe.setdefault("model", args.teacher)
    recipe["teacher"] = {"path": args.teacher}
    strategy = [int(s) for s in args.strategy.split(",")] if args.strategy[0].isdigit() else args.strategy
    recipe["student"] = {
        **_training(args),
        "num_layers": args.student_layers,
        "init": args.init,
        "init_from": args.init_from,
        "layerdrop": args.layerdrop,
        "distillation": {
            "strategy": strategy,
            "alpha": args.alpha,
            "beta": args.beta,
            "temperature": args.temperature,
        },
    }
    if args.share_groups:
        recipe["student"]["sharing"] = {"num_groups": args.share_groups, "scope": args.share_scope}
    return _run(recipe, args)


def share_command(args):
    recipe = _base(args, "share")
    student = {**_training(args), "sharing": {"num_groups": args.num_groups, "scope": args.scope, "init": args.init}}
    if args.teacher:
        recipe["teacher"] = {"path": args.teacher}
        student["distillation"] = {}
    recipe["student"] = student
    return _run(recipe, args)


def prune_command(args):
    recipe = _base(args, "prune")
    recipe.setdefault("model", args.model)
    recipe["teacher"] = {"path": args.model}
    recipe["prune"] = {"model": "teacher", "num_layers": args.num_layers, "depths": args.depths}
    return _run(recipe, args)


def export_command(args):
    recipe = _base(args, "export")
    recipe["teacher"] = {"path": args.model}
    recipe["export"] = {
        "mode": args.mode,
        "per_channel": not args.per_tensor,
        "approximate_gelu": not args.exact_gelu,
        "target": args.target,
        "max_accuracy_drop": args.max_accuracy_drop,
        "allow_fallback": args.allow_fallback,
    }
    return _run(recipe, args)


def _test_split(args, model: Path):
    from transformers import AutoTokenizer

    folder = model.parent if model.suffix == ".onnx" else model
    data = load_text_classification(
        args.data, text_column=args.text_column, label_column=args.label_column, seed=args.seed
    )
    return tokenize_dataset(data, AutoTokenizer.from_pretrained(folder), max_length=args.max_length)["test"]


def evaluate_command(args):
    model = Path(args.model)
    test = _test_split(args, model)
    (entry,) = measure_models({model.name: model}, test, batch_sizes=[1], seconds=0.5)
    print(json.dumps({"model": str(model), "test_rows": len(test), **entry["metrics"]}))
    return entry["metrics"]


def benchmark_command(args):
    models = {m if Path(m).suffix == ".onnx" else Path(m).name: m for m in args.models}
    entries = measure_models(
        models, _test_split(args, Path(args.models[0])), batch_sizes=args.batch_sizes, threads=args.threads
    )
    report = {
        "name": "benchmark",
        "task": {"dataset": args.data, "rows": None},
        "hardware": {"cpu_threads": args.threads or "all", "cpu": ""},
        "reference": entries[0]["name"],
        "models": entries,
    }
    print(report_markdown(report))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=1))
    return report


def card_command(args):
    from .hub import write_model_card

    run = Path(args.run_dir)
    if not (run / "report.json").is_file():
        raise RecipeError(f"{run} has no report.json: run a recipe into it first (hf-efficient run RECIPE).")
    hub = run / FOLDERS["card"]
    if not hub.is_dir():
        recipe = load_recipe(run / "recipe.yaml", [f"output_dir={run}", f"card.license={args.license}"])
        run_recipe(recipe)
    report = json.loads((run / "report.json").read_text())
    write_model_card(hub, report, (run / "recipe.yaml").read_text(), license=args.license, language=args.language)
    print(f"Wrote {hub / 'README.md'}")


def push_command(args):
    from .hub import push_to_hub

    folder = Path(args.folder)
    if (folder / FOLDERS["card"]).is_dir():  # a run folder: push what its card step assembled
        folder = folder / FOLDERS["card"]
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

    layerdrop = command(
        "layerdrop", "fine-tune with LayerDrop, then prune to every depth and evaluate", layerdrop_command
    )
    layerdrop.add_argument("--model", help="model folder or name (default: the shipped MiniLM)")
    _data_arguments(layerdrop, max_train_samples=5000)
    layerdrop.add_argument("--full", action="store_true", help="train on the whole training set")
    _training_arguments(layerdrop, epochs=2)
    layerdrop.add_argument("--rate", type=float, default=0.2, help="LayerDrop rate (0 trains without it)")
    layerdrop.add_argument("--depths", type=int, nargs="+", help="depths to evaluate (default: all down to 2)")
    _output_arguments(layerdrop, "runs/layerdrop")

    distill = command("distill", "distill a fine-tuned teacher into a shallower student (PKD)", distill_command)
    distill.add_argument("--teacher", required=True, help="fine-tuned teacher folder")
    distill.add_argument("--model", help="pretrained model the student starts from (default: the teacher)")
    distill.add_argument("--student-layers", type=int, required=True)
    distill.add_argument("--strategy", default="skip", help="skip, last, or teacher layers like 1,3")
    distill.add_argument("--alpha", type=float, default=0.7)
    distill.add_argument("--beta", type=float, default=500.0)
    distill.add_argument("--temperature", type=float, default=10.0)
    distill.add_argument("--init", default="skip", choices=["skip", "first"])
    distill.add_argument("--init-from", default="teacher", choices=["pretrained", "teacher"])
    distill.add_argument("--layerdrop", type=float, help="LayerDrop rate of the student")
    distill.add_argument("--share-groups", type=int, help="share the student's layers in this many groups")
    distill.add_argument("--share-scope", default="all", choices=["all", "attention", "ffn"])
    _data_arguments(distill)
    _training_arguments(distill)
    _output_arguments(distill, "runs/distill")

    share = command("share", "share weights across layers (ALBERT-style), then fine-tune or distill", share_command)
    share.add_argument("--model", help="pretrained model (default: the shipped MiniLM)")
    share.add_argument("--teacher", help="distill from this fine-tuned teacher instead of fine-tuning directly")
    share.add_argument("--num-groups", type=int, default=1)
    share.add_argument("--scope", default="all", choices=["all", "attention", "ffn"])
    share.add_argument("--init", default="first", choices=["first", "mean"])
    _data_arguments(share)
    _training_arguments(share)
    _output_arguments(share, "runs/share")

    prune = command("prune", "prune a model to fewer layers without retraining", prune_command)
    prune.add_argument("--model", required=True, help="fine-tuned model folder (best trained with LayerDrop)")
    prune.add_argument("--num-layers", type=int, required=True)
    prune.add_argument("--depths", type=int, nargs="+", help="also evaluate these depths")
    _data_arguments(prune)
    _output_arguments(prune, "runs/prune")

    export = command("export", "export to ONNX and quantize to int8, with an accuracy check", export_command)
    export.add_argument("--model", required=True, help="fine-tuned model folder")
    export.add_argument("--mode", default="dynamic", choices=["dynamic", "static"])
    export.add_argument("--per-tensor", action="store_true", help="one scale per weight instead of per channel")
    export.add_argument("--exact-gelu", action="store_true", help="keep the erf GELU in int8 (default: tanh, faster)")
    export.add_argument("--target", default="avx512_vnni", choices=["avx512_vnni", "avx512", "avx2", "arm64"])
    export.add_argument("--max-accuracy-drop", type=float, default=0.01)
    export.add_argument("--allow-fallback", action="store_true", help="static may fall back to dynamic")
    _data_arguments(export)
    _output_arguments(export, "runs/export")

    evaluate = command("evaluate", "test metrics of a model folder or an .onnx file", evaluate_command)
    evaluate.add_argument("--model", required=True)
    _data_arguments(evaluate)

    benchmark = command("benchmark", "accuracy, size and CPU latency of models, side by side", benchmark_command)
    benchmark.add_argument("models", nargs="+", help="model folders or .onnx files; the first is the reference")
    benchmark.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    benchmark.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    benchmark.add_argument("--output", help="write the measurements as JSON here")
    _data_arguments(benchmark)

    card = command("card", "write the Hub model card of a run", card_command)
    card.add_argument("run_dir")
    card.add_argument("--license", default="apache-2.0")
    card.add_argument("--language", default="en")

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


if __name__ == "__main__":
    main()
