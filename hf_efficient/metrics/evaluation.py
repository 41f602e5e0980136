"""Scoring a task's predictions: the Trainer's `compute_metrics`, arrays of outputs, and a PyTorch model.

Each task row names its scorer (`score`, below): (model outputs, label ids, context) -> every metric of the row's
`metrics`, from the shipped modules:

- text-classification: argmax; accuracy, F1 (binary with two classes, else macro), Matthews correlation;
- multi-label-classification: a label is predicted where its logit is above 0 (probability above 0.5); micro and
  macro F1 and subset accuracy;
- text-regression: the single output; Pearson and Spearman correlation;
- token-classification: argmax per token, scored on the positions whose label is not -100 (the first sub-word of
  each word) as tag names; seqeval's entity precision, recall, F1 and the token accuracy;
- question-answering: the start and end logits of every window, post-processed into one answer text per example
  (`hf_efficient.data.postprocess_qa_predictions`); SQuAD exact match and F1 against the gold answer texts;
- multiple-choice: argmax over the choices; accuracy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import EvalPrediction

# The tokenized columns a model's forward takes (the rest are labels or bookkeeping).
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_QA_NEEDS = (
    "Question-answering metrics need examples= (the split of load_data(task='question-answering')) and "
    "features= (that split tokenized, in the order of the predictions); pass both."
)


@functools.cache
def _metric(name: str):
    from . import load_metric

    return load_metric(name)


def _logits(predictions) -> np.ndarray:
    # Models that also return hidden states or attentions hand the Trainer a tuple, logits first.
    return np.asarray(predictions[0] if isinstance(predictions, (tuple, list)) else predictions)


def score_single_label(predictions, label_ids, names, **_):
    logits = _logits(predictions)
    if logits.ndim < 2:
        raise ValueError(
            f"compute_metrics expects classification logits of shape (batch, num_labels), got shape {logits.shape}."
        )
    predicted, references = logits.argmax(axis=-1), np.asarray(label_ids)
    results = {}
    for name in names:
        kwargs = {"average": "binary" if logits.shape[-1] == 2 else "macro"} if name == "f1" else {}
        results.update(_metric(name).compute(predictions=predicted, references=references, **kwargs))
    return results


def score_multi_label(predictions, label_ids, **_):
    logits, references = _logits(predictions), np.asarray(label_ids)
    if logits.shape != references.shape:
        raise ValueError(
            f"Multi-label logits of shape {logits.shape} do not match the multi-hot labels of shape "
            f"{references.shape}; the head needs num_labels={references.shape[-1]}."
        )
    return _metric("multi_label").compute(predictions=(logits > 0).astype(int), references=(references > 0.5))


def score_regression(predictions, label_ids, **_):
    outputs = _logits(predictions)
    if outputs.ndim > 2 or (outputs.ndim == 2 and outputs.shape[1] != 1):
        raise ValueError(f"Regression outputs must be one number per row, got shape {outputs.shape}; use num_labels=1.")
    return _metric("correlation").compute(predictions=outputs.reshape(-1), references=np.asarray(label_ids))


def score_tags(predictions, label_ids, label_names=None, **_):
    if not label_names:
        raise ValueError(
            "Token classification metrics need the tag names (label_names=[...], in id order, e.g. from "
            "hf_efficient.data.label_names or the model's config.id2label)."
        )
    predicted, labels = _logits(predictions).argmax(axis=-1), np.asarray(label_ids)
    keep = labels != -100
    tags = np.asarray(label_names, dtype=object)
    return _metric("entities").compute(
        predictions=[tags[row[mask]].tolist() for row, mask in zip(predicted, keep, strict=True)],
        references=[tags[row[mask]].tolist() for row, mask in zip(labels, keep, strict=True)],
    )


def score_answers(predictions, label_ids, examples, features, names, label_names, **kwargs):
    from ..data import postprocess_qa_predictions

    predicted = postprocess_qa_predictions(examples, features, predictions, **kwargs)
    return _metric("squad").compute(
        predictions=[predicted[example_id] for example_id in examples["id"]],
        references=[answers["text"] for answers in examples["answers"]],
    )


def score_choices(predictions, label_ids, **_):
    return _metric("accuracy").compute(predictions=_logits(predictions).argmax(axis=-1), references=label_ids)


def _scored(task):
    """The row of `task` (a name or a row of `hf_efficient.tasks`), which must have a scorer."""
    from ..tasks import TASKS, get_task

    row = get_task(task) if isinstance(task, str) else task
    if row.score is None:
        scored = [name for name, other in TASKS.items() if other.score is not None]
        raise ValueError(f"task={row.name!r} has no metrics here; use one of {', '.join(scored)}.")
    return row


def _check_names(names, row) -> tuple[str, ...]:
    if names is None:
        return row.metrics
    if isinstance(names, str):
        raise ValueError(f"names must be a sequence of metric names, got the string {names!r}; pass ({names!r},).")
    names = tuple(names)
    if not names:
        raise ValueError(f"names is empty; pass some of {row.metrics}.")
    if row.score is score_single_label:
        return names  # each is a module of its name: an unknown one fails as load_metric fails
    unknown = [name for name in names if name not in row.metrics]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not a metric of task={row.name!r}; pass some of {row.metrics}.")
    return names


def compute_metrics_fn(
    names: Iterable[str] | None = None,
    *,
    task: str = "text-classification",
    label_names: list[str] | None = None,
    examples=None,
    features=None,
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> Callable[[EvalPrediction], dict[str, float]]:
    """Build a `compute_metrics` function for `transformers.Trainer` from the shipped metrics of a task.

    See the module docstring for how each task's predictions are scored. F1 of text classification is binary (class 1
    positive) when the logits have two classes, and the macro average otherwise.

    Args:
        names (`Iterable[str]`, *optional*): Which metrics to return; defaults to all of the task row's `metrics`.
        task (`str`, defaults to `"text-classification"`): The task of the predictions (or its row of
            `hf_efficient.tasks`).
        label_names (`list[str]`, *optional*): token-classification: the tag names in id order.
        examples (`datasets.Dataset`, *optional*): question-answering: the evaluated examples (a split of
            `load_data(task="question-answering")`, with `id`, `context` and `answers`).
        features (`datasets.Dataset`, *optional*): question-answering: those examples tokenized (with `example_id`
            and `offset_mapping`), in the order the Trainer predicts them (its `eval_dataset`).
        n_best_size, max_answer_length (`int`): question-answering: see `postprocess_qa_predictions`.

    Returns:
        `Callable[[transformers.EvalPrediction], dict[str, float]]`: Pass it as `Trainer(compute_metrics=...)`.
    """
    row = _scored(task)  # a row of hf_efficient.tasks, or its name
    task = row.name
    names = _check_names(names, row)
    if row.score is score_single_label:
        for name in names:
            _metric(name)  # fail on an unknown name now, not at the first evaluation
    scorer = row.score
    context = {
        "names": names,
        "label_names": None if label_names is None else list(label_names),
        "examples": examples,
        "features": features,
    }
    if task == "question-answering":
        context.update(n_best_size=n_best_size, max_answer_length=max_answer_length)
        if examples is None or features is None:
            raise ValueError(_QA_NEEDS)

    def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
        results = scorer(eval_prediction.predictions, eval_prediction.label_ids, **context)
        return {name: results[name] for name in names}

    return compute_metrics


def _label_ids(dataset, task: str):
    if task == "question-answering":
        return None
    for column in ("labels", "label"):
        if column in dataset.column_names:
            return np.asarray(dataset[column])
    raise ValueError(
        f"The dataset has no 'labels' or 'label' column (columns: {', '.join(dataset.column_names)}); "
        f"tokenize it with tokenize_dataset(..., task={task!r})."
    )


def score_predictions(
    predictions,
    dataset,
    task: str = "text-classification",
    *,
    names: Iterable[str] | None = None,
    label_names: list[str] | None = None,
    examples=None,
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> dict[str, float]:
    """The task's metrics of model outputs on a tokenized split (from PyTorch, ONNX Runtime or anywhere).

    Args:
        predictions (`np.ndarray` or `tuple[np.ndarray, np.ndarray]`): The logits of every row of `dataset`, in
            order; for question answering, (start_logits, end_logits) of every feature.
        dataset (`datasets.Dataset`): The tokenized split (`tokenize_dataset(..., task=task)[split]`), whose label
            column (`labels` or `label`) holds the references.
        task, names, label_names, n_best_size, max_answer_length: As in `compute_metrics_fn`.
        examples (`datasets.Dataset`, *optional*): question-answering: the untokenized split `dataset` was made from.

    Returns:
        `dict[str, float]`: The metrics, by name.
    """
    compute = compute_metrics_fn(
        names,
        task=task,
        label_names=label_names,
        examples=examples,
        features=dataset,
        n_best_size=n_best_size,
        max_answer_length=max_answer_length,
    )
    return compute(EvalPrediction(predictions=predictions, label_ids=_label_ids(dataset, task)))


@torch.no_grad()
def evaluate_model(
    model,
    dataset,
    *,
    batch_size: int = 64,
    desc: str = "eval",
    task: str | None = None,
    examples=None,
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> dict[str, float]:
    """The task's metrics of `model` on a tokenized split, in eval mode.

    Args:
        model (`PreTrainedModel`): A model with the head of its task.
        dataset (`datasets.Dataset`): The tokenized split (`tokenize_dataset(..., task=task)[split]`).
        batch_size (`int`, defaults to 64): Rows per forward pass.
        desc (`str`): The progress bar's label.
        task (`str`, *optional*): The task (a name or a row of `hf_efficient.tasks`); defaults to the row of
            `task_of(model)`, and must be that row when given.
        examples (`datasets.Dataset`, *optional*): question-answering (required there): the untokenized split that
            `dataset` was tokenized from (`load_data(..., task="question-answering")[split]`); its answers are the
            references and its contexts give the answer texts.
        n_best_size, max_answer_length (`int`): question-answering: see `postprocess_qa_predictions`.

    Returns:
        `dict[str, float]`: Every metric of the task row's `metrics`, by name; token classification names the tags from
        the model's `config.id2label`.
    """
    from ..tasks import task_of

    row = task_of(model)  # a ValueError naming the class where no task covers its head
    head = row.name
    task = head if task is None else getattr(task, "name", task)
    if task != head:
        raise ValueError(
            f"evaluate_model(task={task!r}): {type(model).__name__} (problem_type "
            f"{model.config.problem_type!r}) is a {head!r} model; pass task={head!r} or a model with the head of "
            f"{task!r}."
        )
    _check_rows(model, dataset, task, batch_size)
    model.eval()
    device = next(model.parameters()).device
    columns = [c for c in _INPUTS if c in dataset.column_names]
    qa = task == "question-answering"
    if qa and examples is None:
        raise ValueError(
            "evaluate_model(task='question-answering') needs examples=, the untokenized split the features were "
            "made from (load_data(..., task='question-answering')[split])."
        )
    outputs = []
    # disable=None: no bar where stderr is not a terminal (a log file), so logs get no carriage returns or cursor moves.
    for start in tqdm(range(0, len(dataset), batch_size), desc=desc, leave=False, disable=None):
        batch = dataset[start : start + batch_size]
        output = model(**{c: torch.tensor(batch[c], device=device) for c in columns})
        parts = (output.start_logits, output.end_logits) if qa else (output.logits,)
        outputs.append([part.float().cpu().numpy() for part in parts])
    predictions = [np.concatenate([batch[i] for batch in outputs]) for i in range(len(outputs[0]))]
    id2label = getattr(model.config, "id2label", None) or {}
    label_names = [id2label[i] for i in sorted(id2label)] if row.labels == "tag" else None
    return score_predictions(
        tuple(predictions) if qa else predictions[0],
        dataset,
        task,
        label_names=label_names,
        examples=examples,
        n_best_size=n_best_size,
        max_answer_length=max_answer_length,
    )


def _check_rows(model, dataset, task: str, batch_size) -> None:
    """What `evaluate_model` refuses in one line rather than fail inside the model or score wrongly."""
    from ..checks import check_rows

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"evaluate_model(batch_size={batch_size!r}): give a positive int, e.g. 64.")
    check_rows(model, dataset, task, "evaluate_model(dataset=...)")
    if task == "token-classification":
        names = list((getattr(model.config, "id2label", None) or {}).values())
        if not all(name == "O" or name[:2] in ("B-", "I-", "E-", "S-") for name in names):
            raise ValueError(
                f"evaluate_model: the model's labels {names[:4]} are not IOB tags (O, B-x, I-x), which entity F1 "
                "reads; set model.config.id2label to the data's tag names (hf_efficient.data.label_names)."
            )
