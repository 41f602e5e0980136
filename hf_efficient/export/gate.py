"""The accuracy gate's measure: how much of the PyTorch model an int8 export kept, per kind of head.

A measure turns a batch of outputs into small per-row predictions (class ids, spans, pooled
embeddings) and scores predictions against the labels where the evaluation rows have them, else
against the PyTorch model's own predictions (agreement: 1.0 for PyTorch itself). Higher is better;
the gate compares the int8 score with PyTorch's. The measure is chosen from what the head outputs
(the task table's `onnx_outputs`) and its `problem_type`, so no task is named here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# The longest answer span, in tokens, that the span measure considers (as transformers' QA pipeline).
MAX_ANSWER_TOKENS = 15


@dataclass(frozen=True)
class Measure:
    """One gate measure.

    Args:
        name: Recorded in the export result ("accuracy", "cosine", ...).
        predict: (outputs, batch) -> predictions of the batch (per row, or per counted token).
        score: (predictions, references) -> a score, higher is better.
        references: batch -> its labels in the layout of `predict`; None: scored against PyTorch.
    """

    name: str
    predict: Callable[[dict, dict], np.ndarray]
    score: Callable[[np.ndarray, np.ndarray], float]
    references: Callable[[dict], np.ndarray] | None = None


def _counted(batch: dict, shape: tuple[int, ...]) -> np.ndarray:
    """Which predictions count: labelled ones (not -100) where there are labels, attended tokens per token."""
    keep = np.ones(shape, dtype=bool)
    labels = batch.get("labels", batch.get("label"))
    if labels is not None and np.shape(labels) == shape:
        keep &= np.asarray(labels) != -100
    elif batch["attention_mask"].shape == shape:  # per-token predictions without labels
        keep &= batch["attention_mask"] == 1
    return keep


def _argmax(outputs: dict, batch: dict) -> np.ndarray:
    ids = outputs["logits"].argmax(-1)
    return ids[_counted(batch, ids.shape)]


def _labels(columns: tuple[str, ...]) -> Callable[[dict], np.ndarray]:
    def references(batch: dict) -> np.ndarray:
        labels = [np.asarray(batch[name]) for name in columns]
        if len(labels) > 1:  # start and end positions
            return np.stack(labels, axis=-1)
        return labels[0][_counted(batch, labels[0].shape)] if labels[0].ndim > 1 else labels[0]

    return references


def _multi_hot(outputs: dict, batch: dict) -> np.ndarray:
    """Every (row, label) decision, flattened: sigmoid(logit) > 0.5."""
    return (outputs["logits"] > 0).astype(np.int64).reshape(-1)


def _value(outputs: dict, batch: dict) -> np.ndarray:
    return outputs["logits"].reshape(len(outputs["logits"]), -1)[:, 0]


def _best_span(outputs: dict, batch: dict) -> np.ndarray:
    """(start, end) of each row's best span among attended tokens, end >= start, at most MAX_ANSWER_TOKENS long."""
    attended = batch["attention_mask"] == 1
    start = np.where(attended, outputs["start_logits"], -np.inf)
    end = np.where(attended, outputs["end_logits"], -np.inf)
    scores = start[:, :, None] + end[:, None, :]
    length = np.arange(start.shape[1])
    allowed = (length[None, :] >= length[:, None]) & (length[None, :] - length[:, None] < MAX_ANSWER_TOKENS)
    flat = np.where(allowed, scores, -np.inf).reshape(len(start), -1).argmax(-1)
    return np.stack(np.unravel_index(flat, allowed.shape), axis=-1)


def _tag_rows(ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each row's labelled-token tag ids, rows joined by -1 (read as "O", so no entity crosses rows)."""
    rows = [np.append(row[keep], -1) for row, keep in zip(ids, labels != -100, strict=True)]
    return np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)


def _tags_predicted(outputs: dict, batch: dict) -> np.ndarray:
    return _tag_rows(outputs["logits"].argmax(-1), np.asarray(batch["labels"]))


def _tags_labelled(batch: dict) -> np.ndarray:
    return _tag_rows(np.asarray(batch["labels"]), np.asarray(batch["labels"]))


def _entity_f1(label_names: list[str]) -> Callable[[np.ndarray, np.ndarray], float]:
    """seqeval's entity F1 (the token-classification metric) over the joined rows."""

    def score(predictions: np.ndarray, references: np.ndarray) -> float:
        from seqeval.metrics import f1_score

        def tags(ids):
            return [label_names[i] if i >= 0 else "O" for i in ids.tolist()]

        return float(f1_score([tags(references)], [tags(predictions)], zero_division=0))

    return score


def _mean_pooled(outputs: dict, batch: dict) -> np.ndarray:
    mask = batch["attention_mask"][..., None].astype(np.float32)
    return (outputs["last_hidden_state"] * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)


def _equal(predictions: np.ndarray, references: np.ndarray) -> float:
    equal = predictions == references
    return float(equal.reshape(len(equal), -1).all(-1).mean()) if len(equal) else 1.0


def _span_f1(predictions: np.ndarray, references: np.ndarray) -> float:
    """SQuAD's F1 (token overlap of predicted and gold answer), counted in sub-word positions."""
    start, end = predictions[:, 0], predictions[:, 1]
    gold_start, gold_end = references[:, 0], references[:, 1]
    overlap = np.maximum(0, np.minimum(end, gold_end) - np.maximum(start, gold_start) + 1)
    length, gold_length = end - start + 1, gold_end - gold_start + 1
    f1 = np.where(overlap > 0, 2 * overlap / np.maximum(length + gold_length, 1), 0.0)
    return float(f1.mean()) if len(f1) else 1.0


def _micro_f1(predictions: np.ndarray, references: np.ndarray) -> float:
    references = np.asarray(references) > 0.5
    true_positives = (predictions.astype(bool) & references).sum()
    wrong = (predictions.astype(bool) != references).sum()
    return float(2 * true_positives / (2 * true_positives + wrong)) if true_positives + wrong else 1.0


def _pearson(predictions: np.ndarray, references: np.ndarray) -> float:
    # The metric's own: 0.0 where undefined (a constant side), as evaluate_model reports it, never NaN.
    from ..metrics.correlation.correlation import _pearson as pearson

    return pearson(np.asarray(predictions, dtype=np.float64).ravel(), np.asarray(references, dtype=np.float64).ravel())


def _cosine(predictions: np.ndarray, references: np.ndarray) -> float:
    norms = np.linalg.norm(predictions, axis=-1) * np.linalg.norm(references, axis=-1)
    return float(((predictions * references).sum(-1) / np.maximum(norms, 1e-12)).mean())


def gate_measure(task, columns, label_names: list[str] | None = None) -> Measure:
    """The measure for a row of the task table, scored on labels where `columns` has them.

    Args:
        task (`Task`): The model's row (its `onnx_outputs`, `problem_type` and `label_columns`).
        columns (`Iterable[str]`): The evaluation rows' columns.
        label_names (`list[str]`, *optional*): The head's labels (`config.id2label`); IOB tags
            (B-/I-) make a labelled token-classification gate the entity F1 of seqeval.
    """
    columns = set(columns)
    # Text classification datasets name their label column "label"; the head's loss reads "labels".
    names = tuple("label" if name == "labels" and name not in columns else name for name in task.label_columns)
    labels = _labels(names) if names and set(names) <= columns else None
    outputs = tuple(task.onnx_outputs)
    if outputs == ("last_hidden_state",):
        return Measure("cosine", _mean_pooled, _cosine)
    if outputs == ("start_logits", "end_logits"):
        # Labelled: SQuAD's F1 over sub-word positions (the metric's own F1 needs the answers' text).
        return Measure("span_f1" if labels else "span_agreement", _best_span, _span_f1 if labels else _equal, labels)
    iob = bool(label_names) and any(name[:2] in ("B-", "I-") for name in label_names)
    if task.token_level and labels and iob:
        return Measure("entity_f1", _tags_predicted, _entity_f1(label_names), _tags_labelled)
    if task.problem_type == "multi_label_classification":
        return Measure("micro_f1" if labels else "agreement", _multi_hot, _micro_f1 if labels else _equal, labels)
    if task.problem_type == "regression":
        return Measure("pearson" if labels else "pearson_to_pytorch", _value, _pearson, labels)
    if task.metric == "accuracy" or task.token_level:  # one class per row (or per labelled token): argmax
        return Measure("accuracy" if labels else "agreement", _argmax, _equal, labels)
    raise ValueError(
        f"export_int8: the accuracy gate has no measure for task {task.name!r} (metric {task.metric!r}); "
        "add one to hf_efficient/export/gate.py."
    )
