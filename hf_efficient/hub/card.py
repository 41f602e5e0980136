"""Hub model cards: `write_model_card(folder, report)` turns a run's report into the folder's `README.md`.

The metadata (tags, base model, dataset, model-index results) comes from the report (see
`hf_efficient.report.Report`) and the tables of techniques and tasks; the body is rendered from
the Jinja template of the final model's kind in `templates/` (one per technique, and
`finetuned.md.j2`), around the same table of models as `report.md`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from ..provenance import public_name
from ..report import Report
from ..report.render import cpu_in_words, depth_table, measured, millions, models_table, timing_note
from ..tasks import get_task
from ..techniques import TECHNIQUES, UNCHANGED, hub_tags

TEMPLATES = Path(__file__).parent / "templates"
# Hub names: `owner/name` for models; datasets may be canonical (`rotten_tomatoes`) or `owner/name`.
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")
_DATASET_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")
_DATA_FILE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".txt")


# The Hub's license ids ("apache-2.0", "cc-by-nc-4.0", "openrail++", "llama3.1", "other") and language codes
# ("en", "pt-br", "multilingual") are lowercase, without spaces; "Apache 2.0" or "English" would be
# published as given and shown as no license or language.
_LICENSE_ID = re.compile(r"[a-z0-9][a-z0-9.+-]*")
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{2,8})*|multilingual")


def check_card_metadata(license, language, where: str, sep: str = "=") -> None:
    """Refuse a license or language that is not written as a Hub id, with the id it likely means.
    The message names the setting as `{where}license{sep}'MIT'` ("card.", "="; "--", " ")."""
    for key, value, pattern, example in (
        ("license", license, _LICENSE_ID, "apache-2.0, mit, cc-by-4.0 or other"),
        ("language", language, _LANGUAGE_CODE, "en, de or multilingual"),
    ):
        if isinstance(value, str) and pattern.fullmatch(value):
            continue
        guess = re.sub(r"[\s_]+", "-", value.strip().lower()) if isinstance(value, str) else ""
        hint = f" (did you mean {guess}?)" if guess != value and pattern.fullmatch(guess) else ""
        raise ValueError(
            f"{where}{key}{sep}{value!r} is not a Hub {key} id{hint}; give one as the Hub writes it ({example})."
        )


def is_repo_id(value) -> bool:
    return _is_hub_id(value, _REPO_ID)


def repo_id_problem(value) -> str | None:
    """What keeps `value` from being a Hub model repo id (`namespace/name`), with the fix; None if it is one."""
    if is_repo_id(value):
        return None
    if not isinstance(value, str) or value.count("/") != 1 or not all(value.split("/")):
        return "write it as namespace/name, e.g. me/minilm-int8."
    if len(max(value.split("/"), key=len)) > 96:
        return "a namespace or name is at most 96 characters; shorten it."
    if ".." in value or "--" in value:
        return "'..' and '--' are not allowed in a repo id; use one '.' or '-'."
    if any(not part[0].isalnum() for part in value.split("/")):
        return "the namespace and the name start with a letter or digit."
    bad = sorted({c for c in value.replace("/", "") if not (c.isascii() and (c.isalnum() or c in "._-"))})
    return f"{''.join(bad)!r}: a repo id has only letters, digits, '-', '_' and '.'; e.g. me/minilm-int8."


def _is_hub_id(value, pattern: re.Pattern) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None and ".." not in value and "--" not in value


def _on_hub(value, pattern: re.Pattern) -> bool:
    """Whether a report's base model or dataset names a Hub repo rather than a local folder or file."""
    return _is_hub_id(value, pattern) and not value.lower().endswith(_DATA_FILE_SUFFIXES) and not Path(value).exists()


def _template(kind: str) -> str:
    """The card template of a model kind: its technique's, or the fine-tuned one's."""
    if kind in UNCHANGED:
        return "finetuned.md.j2"
    if kind == "onnx":  # an ONNX file of unknown origin: the export's card
        kind = "int8"
    if kind not in TECHNIQUES:
        raise ValueError(
            f"write_model_card: a model has kind {kind!r}; use one of {[*UNCHANGED, *sorted(TECHNIQUES)]}."
        )
    return TECHNIQUES[kind].template


def _settings(report: Report, final) -> dict[str, dict]:
    """Each technique the card's model was made with and the settings it records (for settings-dependent tags):
    the final model's own, not every model's of the run (a student of a LayerDrop teacher was not trained with
    LayerDrop, and cannot be pruned as one)."""
    unknown = [name for name in dict.fromkeys([*report.techniques, *final.techniques]) if name not in TECHNIQUES]
    if unknown:
        raise ValueError(f"write_model_card: unknown techniques {unknown}; use those of {sorted(TECHNIQUES)}.")
    return {name: final.settings.get(name) for name in final.techniques}


def _card_data(report: Report, final, license: str, language: str) -> ModelCardData:
    task, row = report.task, get_task(report.task.name)
    dataset = task.dataset
    hub_dataset = _on_hub(dataset, _DATASET_ID)
    metrics = {k: v for k, v in final.metrics.items() if k in row.card_metrics and v is not None}
    results = [
        EvalResult(
            task_type=row.pipeline_tag,
            task_name=row.title,
            # A local file keeps its suffix: its stem ("ner") may be an unrelated Hub dataset the Hub would link to.
            dataset_type=dataset if hub_dataset else Path(str(dataset)).name,
            dataset_name=str(dataset),
            dataset_split=task.split,
            metric_type=metric,
            metric_value=value,
        )
        for metric, value in metrics.items()
    ]
    return ModelCardData(
        language=language,
        license=license,
        library_name=row.library,
        base_model=report.base_model if _on_hub(report.base_model, _REPO_ID) else None,
        datasets=[dataset] if hub_dataset else None,
        pipeline_tag=row.pipeline_tag,
        tags=["hf_efficient", *hub_tags(_settings(report, final))],
        metrics=list(metrics) or None,
        model_name=f"{report.name}-{final.name}",
        eval_results=results or None,  # an empty list would still write an empty model-index
    )


def public(value):
    """A recipe's or report's values as a published file may hold them: local paths (absolute, or naming
    something that exists here) become their last part (`provenance.public_name`)."""
    if isinstance(value, dict):
        return {key: public(item) for key, item in value.items()}
    if isinstance(value, list):
        return [public(item) for item in value]
    return public_name(value) if isinstance(value, str) else value


def public_recipe(recipe_text: str | None) -> str | None:
    """A recipe's YAML as the card and the Hub folder show it: as written, comments included, unless it
    names a local path (`public`)."""
    if not recipe_text:
        return None
    recipe = yaml.safe_load(recipe_text)
    if not isinstance(recipe, dict) or public(recipe) == recipe:
        return recipe_text.strip()  # as written, comments included
    return yaml.safe_dump(public(recipe), sort_keys=False).strip()


# Arguments of the transformers `pipeline` that make its output the task's: every label's score of a
# multi-label model (not only the best one's), whole entities rather than sub-word tokens.
_PIPELINE_ARGUMENTS = {
    "multi_label_classification": "top_k=None",
    "token-classification": 'aggregation_strategy="simple"',
}


# Pipelines that some supported transformers version lacks: a card is read with whichever version its reader has
# (transformers 5 removed "question-answering"), so it shows none for them, whatever version wrote it.
_NOT_EVERYWHERE = {"question-answering"}


def _pipeline_call(row, has_tokenizer: bool) -> str | None:
    """The line of the loading snippet that wraps `model` in the task's transformers `pipeline`; None
    where transformers has no pipeline for the task (multiple choice), or not in every version."""
    from transformers.pipelines import SUPPORTED_TASKS

    if row.pipeline_tag not in SUPPORTED_TASKS or row.pipeline_tag in _NOT_EVERYWHERE or not has_tokenizer:
        return None
    extra = _PIPELINE_ARGUMENTS.get(row.problem_type) or _PIPELINE_ARGUMENTS.get(row.pipeline_tag)
    extra = f", {extra}" if extra else ""
    return f'predict = pipeline("{row.pipeline_tag}", model=model, tokenizer=tokenizer{extra})'


def _labels(config: dict) -> list[tuple[int, str]]:
    """The model's named labels, by id; none where they are transformers' placeholders (LABEL_0, ...)."""
    labels = sorted((int(i), str(label)) for i, label in (config.get("id2label") or {}).items())
    return [] if all(label == f"LABEL_{i}" for i, label in labels) else labels


def _helper(row, pairs: bool = False) -> dict | None:
    """hf_efficient's own inference helper for the int8 folder, with an example call (of pairs, for a classifier
    trained on pairs of texts)."""
    if row.helper is None:
        return None
    name, variable, example = row.helper
    if pairs:
        example = '["A man plays a guitar."], ["Someone makes music."]'
    return {"name": name, "variable": variable, "example": example}


def _reads_pairs(recipe_text: str | None) -> bool:
    """Whether the recipe trained on pairs of texts (its data name a `text_pair_column`)."""
    recipe = yaml.safe_load(recipe_text) if recipe_text else None
    data = recipe.get("data") if isinstance(recipe, dict) else None
    return isinstance(data, dict) and bool(data.get("text_pair_column"))


def _plots(report: Report, folder: Path) -> list[dict]:
    plots = []
    for plot in report.plots:
        relative = Path(plot)
        if relative.is_absolute() and relative.resolve().is_relative_to(folder.resolve()):
            relative = relative.resolve().relative_to(folder.resolve())
        # The card links plots relative to the repo root, so they must be files of the folder.
        if relative.is_absolute() or ".." in relative.parts or not (folder / relative).is_file():
            raise ValueError(f"write_model_card: plot {plot} is not in {folder}; write it there or drop it from plots.")
        plots.append({"path": relative.as_posix(), "title": relative.stem.replace("_", " ")})
    return plots


def write_model_card(
    folder: str | Path,
    report: Report | dict,
    recipe_text: str | None = None,
    *,
    license: str = "apache-2.0",
    language: str = "en",
    repo_id: str | None = None,
) -> ModelCard:
    """Write `folder/README.md`, the Hub model card of the compressed checkpoint in `folder`.

    The metadata carries the tags of the techniques, the base model and dataset (when they are Hub
    ids), and the final model's measured metrics as model-index results; the body, rendered from
    the template of the final model's kind, holds the summary, the table of every model of the run
    (with the report's warning when its absolute latencies are unreliable), the plots, the recipe,
    how to load the model (with Optimum when `folder/onnx` exists) and its limits.

    Args:
        folder (`str` or `Path`): The checkpoint folder (config.json, weights, report, plots).
        report (`Report` or `dict`): The run's report (`report.json` loaded, or `Report.load(...)`).
        recipe_text (`str`, *optional*): The recipe's YAML, shown under "How it was made".
        license (`str`): Hub license id.
        language (`str`): Language of the training data.
        repo_id (`str`, *optional*): The Hub repo the card will live in, used by every loading
            snippet; a `your-name/<run>` placeholder when not given.

    Returns:
        `huggingface_hub.ModelCard`: The card written.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"write_model_card: no folder {folder}; write the checkpoint there first.")
    if isinstance(report, dict):
        # Which model the card is about must be said, not guessed.
        missing = [key for key in ("name", "task", "final", "models") if key not in report]
        if missing:
            raise ValueError(f"write_model_card: the report lacks {missing}; pass the runner's report.json.")
        report = Report.from_dict(report)
    if not isinstance(report, Report):
        raise TypeError(f"write_model_card(report=...): a Report or report.json's dict, got {type(report).__name__}.")
    check_card_metadata(license, language, "write_model_card: ")
    if repo_id is not None and not is_repo_id(repo_id):
        raise ValueError(
            f"write_model_card(repo_id={repo_id!r}): {repo_id_problem(repo_id)} (without one, the loading snippets "
            f"name a your-name/{report.name} placeholder)"
        )
    final = report.model(report.final)
    if get_task(report.task.name).library == "sentence-transformers":
        card = ModelCard(_sentence_card(folder, report, recipe_text, license, language, repo_id))
        card.save(folder / "README.md")
        return card
    templates = {model.name: _template(model.kind) for model in report.models}
    onnx = folder / "onnx"
    if final.kind == "int8" and not onnx.is_dir():
        raise ValueError(
            f"write_model_card: the final model {final.name!r} is int8 but {folder} has no onnx/ subfolder; "
            "write it with export_int8(model, folder / 'onnx', tokenizer=tokenizer)."
        )
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").exists() else {}
    card_data = _card_data(report, final, license, language)
    row = get_task(report.task.name)
    has_tokenizer = (folder / "tokenizer_config.json").exists()
    pairs = row.auto_class == "AutoModelForSequenceClassification" and _reads_pairs(recipe_text)
    # Absolute template paths in the table (a technique kept outside the package) load from their folder.
    extra = {str(Path(t).parent) for t in templates.values() if Path(t).is_absolute()}
    environment = Environment(
        loader=FileSystemLoader([str(TEMPLATES), *sorted(extra)]),
        undefined=StrictUndefined,  # a typo in a template fails here, not silently on the Hub
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters.update(measured=measured, millions=millions)
    body = environment.get_template(Path(templates[final.name]).name).render(
        title=card_data.model_name,
        task=dataclasses.asdict(report.task),
        task_row=row,
        metric=report.task.metric,
        hardware=dataclasses.asdict(report.hardware),
        final=dataclasses.asdict(final),
        # What `from_pretrained` loads from the folder's top where the card's model is an export of it.
        source=dataclasses.asdict(report.model(final.source)) if final.source else None,
        reference=dataclasses.asdict(report.model(report.reference)),
        speedup_batch=min(final.speedup, key=int, default=None),
        speed_baseline=report.speed_baseline.replace(" at each batch size", ""),
        cpu=cpu_in_words(report) if report.hardware.cpu else "CPU not recorded",
        # A local checkpoint is named by its folder: a card never publishes a path of the machine that made it.
        base_model=report.base_model if card_data.base_model or not report.base_model else Path(report.base_model).name,
        base_model_on_hub=card_data.base_model is not None,
        dataset_on_hub=card_data.datasets is not None,
        results_table=models_table(report, highlight=final.name),
        timing_note=timing_note(report),
        depth_table=depth_table(report),
        plots=_plots(report, folder),
        recipe=public_recipe(recipe_text),
        repo=repo_id or f"your-name/{report.name}",
        repo_on_hub=repo_id is not None,
        model_type=config.get("model_type", ""),
        needs_import="sharing" in final.techniques,
        has_tokenizer=has_tokenizer,
        pipeline_call=_pipeline_call(row, has_tokenizer),
        ort_pipeline_call=_pipeline_call(row, True),  # the onnx/ folder always has the tokenizer
        labels=_labels(config),
        helper=_helper(row, pairs),
        pairs=pairs,
        onnx=onnx.is_dir(),
        export=json.loads((onnx / "export_report.json").read_text()) if (onnx / "export_report.json").exists() else {},
        energy_measured=final.energy.source is not None,
    )
    card = ModelCard("---\n" + card_data.to_yaml() + "\n---\n" + body)
    card.save(folder / "README.md")
    return card


def _sentence_card(
    folder: Path, report: Report, recipe_text: str | None, license: str, language: str, repo_id: str | None
) -> str:
    """A sentence-transformers card: the metadata of `_card_data`, usage with `SentenceTransformer` (and
    its ONNX backend, when the folder has the int8 export), the report's table and the recipe."""
    final = report.model(report.final)
    card_data = _card_data(report, final, license, language)
    card_data.tags = ["sentence-transformers", "feature-extraction", *card_data.tags]
    repo = repo_id or "path/to/this/folder"
    example = 'embeddings = model.encode(["A delight from start to finish.", "A mess."])'
    export = folder / "export_report.json"
    onnx = ""
    if final.format == "onnx" and export.is_file():
        file = json.loads(export.read_text())["int8_file"]
        onnx = (
            "\nThe int8 ONNX model, through sentence-transformers' ONNX backend (`pip install "
            "sentence-transformers[onnx]`, which runs on Optimum: its optimum-onnx 0.1 release needs "
            "transformers < 4.58):\n\n```python\n"
            "from sentence_transformers import SentenceTransformer\n\n"
            f'model = SentenceTransformer("{repo}", backend="onnx", model_kwargs={{"file_name": "{file}"}})\n'
            f"{example}\n```\n"
        )
        if final.source:  # what the metadata scores is the int8 file, not the weights the first snippet loads
            metric, source = report.task.metric, report.model(final.source)
            onnx += (
                f'\n`SentenceTransformer("{repo}")` loads `{source.name}`, the fp32 model before quantization '
                f"({metric} {measured(source.metrics.get(metric), '.4f')}); the int8 file scores "
                f"{measured(final.metrics.get(metric), '.4f')}, the figure in the metadata.\n"
            )
    threads = report.hardware.cpu_threads
    threads = f"{threads} thread{'' if threads == 1 else 's'}"
    base = report.base_model if card_data.base_model or not report.base_model else Path(report.base_model).name
    note = timing_note(report)
    recipe = public_recipe(recipe_text)
    body = (
        f"# {card_data.model_name}\n\n"
        f"A compressed sentence embedding model made with hf_efficient from `{base}`.\n\n"
        "## Usage\n\n```python\nfrom sentence_transformers import SentenceTransformer\n\n"
        f'model = SentenceTransformer("{repo}")\n{example}\n```\n{onnx}\n'
        f"## Evaluation\n\n{report.task.split.capitalize()} split of {report.task.dataset}: embedding quality "
        f"against `{report.reference}`'s embeddings, CPU latency on {threads} of "
        f"{cpu_in_words(report) if report.hardware.cpu else 'a CPU not recorded'}, side by side in one run; "
        f"speed-up against {report.speed_baseline}.\n\n{models_table(report, highlight=final.name)}\n"
        + (f"\n{note}\n" if note else "")
        + (f"\n## How it was made\n\n```yaml\n{recipe}\n```\n" if recipe else "")
    )
    return "---\n" + card_data.to_yaml() + "\n---\n" + body
