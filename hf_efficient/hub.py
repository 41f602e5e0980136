"""Hub model cards for compressed checkpoints, and their upload.

`write_model_card(folder, report)` turns a run's `report.json` (see below) into the folder's
`README.md`: Hub metadata (tags, base model, dataset, model-index results) and a body rendered from
the Jinja templates in `hf_efficient/model_cards/`, one per kind of final model. `push_to_hub`
uploads the folder.

The report: `name`, `base_model`, `task` (`dataset`, `split`, `rows`, `metric`), `hardware`,
`reference` and `final` (model names), `techniques`, `models` (each with `name`, `kind`, `layers`,
`parameters`, `size_mb`, `metrics`, `accuracy_retained`, `latency_ms` and `speedup` per batch size,
`training_seconds`, `energy`), `depths` and `plots`. Values measured nowhere are None.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from .report import markdown_table
from .report.measure import NOT_MEASURED
from .sharing.model import MODEL_TYPE_PREFIX

# "pruned" is a LayerDrop model cut to fewer layers: it gets the LayerDrop card.
TEMPLATES = {
    "finetuned": "finetuned.md.j2",
    "layerdrop": "layerdrop.md.j2",
    "pruned": "layerdrop.md.j2",
    "pkd": "pkd.md.j2",
    "shared": "shared.md.j2",
    "int8": "int8.md.j2",
}
# The techniques a run records (see `hf_efficient.pipeline.runner`) and the Hub tags of each.
TECHNIQUE_TAGS = {
    "layerdrop": ["layerdrop"],
    "pruning": ["pruning"],
    "pkd": ["knowledge-distillation", "pkd"],
    "knowledge-distillation": ["knowledge-distillation"],
    "albert-sharing": ["albert-sharing"],
    "int8": ["int8", "onnx"],
}
CARD_METRICS = ("accuracy", "f1", "matthews_correlation")
# Hub names: `owner/name` for models; datasets may be canonical (`rotten_tomatoes`) or `owner/name`.
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")
_DATASET_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")
_DATA_FILE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".txt")


def _is_hub_id(value, pattern: re.Pattern) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None and ".." not in value and "--" not in value


def _on_hub(value, pattern: re.Pattern) -> bool:
    """Whether a report's base model or dataset names a Hub repo rather than a local folder or file."""
    return _is_hub_id(value, pattern) and not value.lower().endswith(_DATA_FILE_SUFFIXES) and not Path(value).exists()


def _check_report(report: dict) -> None:
    """Refuse a report the card cannot be written from, naming the bad value and the fix."""
    if not isinstance(report, dict):
        raise TypeError(f"write_model_card(report=...): a dict (report.json loaded), got {type(report).__name__}.")
    missing = [key for key in ("name", "task", "final", "models") if key not in report]
    if missing:
        raise ValueError(f"write_model_card: the report lacks {missing}; pass the runner's report.json.")
    if not isinstance(report["task"], dict) or not {"dataset", "split"} <= set(report["task"]):
        raise ValueError(f"write_model_card: report['task'] = {report['task']!r} needs 'dataset' and 'split'.")
    if not isinstance(report["models"], list) or not report["models"]:
        raise ValueError("write_model_card: report['models'] is empty; it lists every model the run measured.")
    models = {model.get("name"): model for model in report["models"]}
    for name, model in models.items():
        if model.get("kind") not in TEMPLATES:
            raise ValueError(
                f"write_model_card: model {name!r} has kind {model.get('kind')!r}; use one of {sorted(TEMPLATES)}."
            )
    for key in ("final", "reference"):
        if key in report and report[key] not in models:
            raise ValueError(
                f"write_model_card: report[{key!r}] = {report[key]!r} names no model; use one of {sorted(models)}."
            )
    unknown = [t for t in report.get("techniques", []) if t not in TECHNIQUE_TAGS]
    if unknown:
        raise ValueError(f"write_model_card: unknown techniques {unknown}; use those of {sorted(TECHNIQUE_TAGS)}.")


def _measured(value, spec: str = "", suffix: str = "") -> str:
    return NOT_MEASURED if value is None else f"{value:{spec}}{suffix}"


def _millions(count) -> str:
    return NOT_MEASURED if count is None else f"{count / 1e6:.1f}M"


def _with_defaults(model: dict) -> dict:
    """The model's entry with every field the card reads, None (or empty) where the report has none."""
    fields = ("layers", "parameters", "size_mb", "accuracy_retained", "training_seconds")
    return {
        **dict.fromkeys(fields),
        "metrics": {},
        "latency_ms": {},
        "speedup": {},
        **model,
        "energy": model.get("energy") or {},
    }


def _latency(model: dict, batch: str) -> str:
    latency, speedup = model["latency_ms"].get(batch), model["speedup"].get(batch)
    if latency is None:
        return NOT_MEASURED
    return f"{latency:.1f} ms" + ("" if speedup is None else f" ({speedup:.2f}x)")


def _energy(model: dict, key: str) -> str:
    energy = model["energy"]
    if energy.get(key) is None:
        return NOT_MEASURED
    return f"{energy[key]:,.1f} J" + (f" ({energy['source']})" if energy.get("source") else "")


def _results_table(models: list[dict], final: str, metric: str) -> str:
    """Every model of the run, one latency column per batch size."""
    batches = sorted({batch for model in models for batch in model["latency_ms"]}, key=int)
    columns = ["model", "kind", "layers", "parameters", "size (MB)", metric, f"{metric} retained"]
    columns += [f"CPU latency, batch {batch} (speed-up)" for batch in batches]
    columns += ["training time", "training energy", "energy / 1000 predictions"]
    rows = [
        [
            f"`{model['name']}`" + (" (this model)" if model["name"] == final else ""),
            model["kind"],
            _measured(model["layers"]),
            _millions(model["parameters"]),
            _measured(model["size_mb"], ".1f"),
            _measured(model["metrics"].get(metric), ".4f"),
            _measured(model["accuracy_retained"], ".1%"),
            *[_latency(model, batch) for batch in batches],
            _measured(model["training_seconds"], ".0f", " s"),
            _energy(model, "training_joules"),
            _energy(model, "per_1000_predictions_joules"),
        ]
        for model in models
    ]
    return markdown_table(columns, rows)


def _depth_table(depths: dict[str, dict[str, float]]) -> str | None:
    if not depths:
        return None
    columns = sorted({depth for by_depth in depths.values() for depth in by_depth}, key=int, reverse=True)
    rows = [[f"`{name}`"] + [_measured(by_depth.get(d), ".4f") for d in columns] for name, by_depth in depths.items()]
    return markdown_table(["model"] + [f"{d} layers" for d in columns], rows)


def _card_data(report: dict, final: dict, license: str, language: str) -> ModelCardData:
    task = report["task"]
    dataset = task.get("dataset")
    hub_dataset = _on_hub(dataset, _DATASET_ID)
    metrics = {k: v for k, v in final["metrics"].items() if k in CARD_METRICS and v is not None}
    results = [
        EvalResult(
            task_type="text-classification",
            task_name="Text Classification",
            dataset_type=dataset if hub_dataset else Path(str(dataset)).stem,
            dataset_name=str(dataset),
            dataset_split=task.get("split"),
            metric_type=metric,
            metric_value=value,
        )
        for metric, value in metrics.items()
    ]
    tags = list(
        dict.fromkeys(["hf_efficient"] + [tag for t in report.get("techniques", []) for tag in TECHNIQUE_TAGS[t]])
    )
    return ModelCardData(
        language=language,
        license=license,
        library_name="transformers",
        base_model=report.get("base_model") if _on_hub(report.get("base_model"), _REPO_ID) else None,
        datasets=[dataset] if hub_dataset else None,
        pipeline_tag="text-classification",
        tags=tags,
        metrics=list(metrics) or None,
        model_name=f"{report['name']}-{final['name']}",
        eval_results=results or None,  # an empty list would still write an empty model-index
    )


def write_model_card(
    folder: str | Path,
    report: dict,
    recipe_text: str | None = None,
    *,
    license: str = "apache-2.0",
    language: str = "en",
    repo_id: str | None = None,
) -> ModelCard:
    """Write `folder/README.md`, the Hub model card of the compressed checkpoint in `folder`.

    The metadata carries the tags of the techniques, the base model and dataset (when they are Hub
    ids), and the final model's measured metrics as model-index results; the body, rendered from
    the template of the final model's kind, holds the summary, the table of every model of the run,
    the plots, the recipe, how to load the model (with Optimum when `folder/onnx` exists) and its
    limits.

    Args:
        folder (`str` or `Path`): The checkpoint folder (config.json, weights, report, plots).
        report (`dict`): The run's report (`report.json`, see the module docstring).
        recipe_text (`str`, *optional*): The recipe's YAML, shown under "How it was made".
        license (`str`): Hub license id.
        language (`str`): Language of the training data.
        repo_id (`str`, *optional*): The Hub repo the card will live in, used by the loading code;
            a local-path placeholder when not given.

    Returns:
        `huggingface_hub.ModelCard`: The card written.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"write_model_card: no folder {folder}; write the checkpoint there first.")
    _check_report(report)
    if repo_id is not None and not _is_hub_id(repo_id, _REPO_ID):
        raise ValueError(f"write_model_card(repo_id={repo_id!r}): use 'namespace/name', or None for a local folder.")
    models = [_with_defaults(model) for model in report["models"]]
    by_name = {model["name"]: model for model in models}
    final = by_name[report["final"]]
    plots = []
    for plot in report.get("plots", []):
        relative = Path(plot)
        if relative.is_absolute() and relative.resolve().is_relative_to(folder.resolve()):
            relative = relative.resolve().relative_to(folder.resolve())
        # The card links plots relative to the repo root, so they must be files of the folder.
        if relative.is_absolute() or ".." in relative.parts or not (folder / relative).is_file():
            raise ValueError(f"write_model_card: plot {plot} is not in {folder}; write it there or drop it from plots.")
        plots.append({"path": relative.as_posix(), "title": relative.stem.replace("_", " ")})
    onnx = folder / "onnx"
    if final["kind"] == "int8" and not onnx.is_dir():
        raise ValueError(
            f"write_model_card: the final model {final['name']!r} is int8 but {folder} has no onnx/ subfolder; "
            "write it with export_int8(model, folder / 'onnx', tokenizer=tokenizer)."
        )
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").exists() else {}
    card_data = _card_data(report, final, license, language)
    metric = report["task"].get("metric", "accuracy")
    environment = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "model_cards"),
        undefined=StrictUndefined,  # a typo in a template fails here, not silently on the Hub
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters.update(measured=_measured, millions=_millions)
    body = environment.get_template(TEMPLATES[final["kind"]]).render(
        title=card_data.model_name,
        task=report["task"],
        metric=metric,
        hardware=report.get("hardware") or {},
        final=final,
        reference=by_name[report.get("reference", final["name"])],
        speedup_batch=min(final["speedup"], key=int, default=None),
        base_model=report.get("base_model"),
        base_model_on_hub=card_data.base_model is not None,
        dataset_on_hub=card_data.datasets is not None,
        results_table=_results_table(models, final["name"], metric),
        depth_table=_depth_table(report.get("depths") or {}),
        plots=plots,
        recipe=recipe_text.strip() if recipe_text else None,
        repo=repo_id or f"your-name/{report['name']}",
        repo_on_hub=repo_id is not None,
        model_type=config.get("model_type", ""),
        needs_import=config.get("model_type", "").startswith(MODEL_TYPE_PREFIX),
        has_tokenizer=(folder / "tokenizer_config.json").exists(),
        onnx=onnx.is_dir(),
        export=json.loads((onnx / "export_report.json").read_text()) if (onnx / "export_report.json").exists() else {},
        energy_measured=final["energy"].get("source") is not None,
    )
    card = ModelCard("---\n" + card_data.to_yaml() + "\n---\n" + body)
    card.save(folder / "README.md")
    return card


def push_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
) -> str:
    """Upload a checkpoint folder (model, onnx/, report, plots, card) to a Hub model repo.

    Creates the repo (and the `revision` branch) when missing. With `token=None`, huggingface_hub
    finds the token (`HF_TOKEN`, then `hf auth login`'s).

    Args:
        folder (`str` or `Path`): The folder to upload, as written by the runner.
        repo_id (`str`): `namespace/name`, e.g. `your-name/minilm-rotten-tomatoes-int8`.
        private (`bool`): Create the repo private (an existing repo keeps its visibility).
        token (`str`, *optional*): A Hub token with write access.
        commit_message (`str`, *optional*): Defaults to "Upload <folder name> with hf_efficient".
        revision (`str`, *optional*): Branch to commit to; the default branch when None.

    Returns:
        `str`: The URL of the commit.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"push_to_hub: no folder {folder}; run the recipe first, it writes the folder.")
    if not ((folder / "config.json").exists() or (folder / "README.md").exists()):
        raise ValueError(f"push_to_hub: {folder} holds no config.json nor README.md; is it a checkpoint folder?")
    if not _is_hub_id(repo_id, _REPO_ID):
        raise ValueError(f"push_to_hub(repo_id={repo_id!r}): use 'namespace/name', e.g. 'your-name/{folder.name}'.")
    api = HfApi()  # built per call, so that a patched `huggingface_hub.constants.ENDPOINT` applies
    api.create_repo(repo_id, private=private, token=token, exist_ok=True, repo_type="model")
    if revision is not None:
        api.create_branch(repo_id, branch=revision, token=token, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        repo_type="model",
        token=token,
        revision=revision,
        commit_message=commit_message or f"Upload {folder.name} with hf_efficient",
    )
    return info.commit_url
