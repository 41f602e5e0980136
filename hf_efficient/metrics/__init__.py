"""Classification metrics that load offline: `evaluate` modules shipped inside the package, loaded by path.

`evaluate.load("accuracy")` fetches the module from the Hugging Face Hub; these numpy-only copies need no network
and no scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import evaluate
import numpy as np
from transformers import EvalPrediction

METRICS = ("accuracy", "f1", "matthews_correlation")


def load_metric(name: str) -> evaluate.EvaluationModule:
    """Load one of the shipped metrics, without touching the network.

    Args:
        name (`str`): One of `METRICS`: "accuracy", "f1" or "matthews_correlation".

    Returns:
        `evaluate.EvaluationModule`: The metric; call `.compute(predictions=..., references=...)` on it.
    """
    if name not in METRICS:
        raise ValueError(f"Unknown metric {name!r}; pass one of {METRICS}.")
    return evaluate.load(str(Path(__file__).parent / name / f"{name}.py"))


def compute_metrics_fn(names: Iterable[str] = METRICS) -> Callable[[EvalPrediction], dict[str, float]]:
    """Build a `compute_metrics` function for `transformers.Trainer` from the shipped metrics.

    The function argmaxes the logits into class ids and returns one flat dict of every metric's results. F1 is
    binary (class 1 positive) when the logits have two classes, and the macro average otherwise.

    Args:
        names (`Iterable[str]`, defaults to `METRICS`): Which metrics to compute.

    Returns:
        `Callable[[transformers.EvalPrediction], dict[str, float]]`: Pass it as `Trainer(compute_metrics=...)`.
    """
    if isinstance(names, str):
        raise ValueError(f"names must be a sequence of metric names, got the string {names!r}; pass ({names!r},).")
    names = tuple(names)
    if not names:
        raise ValueError(f"names is empty; pass some of {METRICS}.")
    metrics = {name: load_metric(name) for name in names}

    def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
        logits = eval_prediction.predictions
        # Models that also return hidden states or attentions hand the Trainer a tuple, logits first.
        if isinstance(logits, tuple):
            logits = logits[0]
        logits = np.asarray(logits)
        if logits.ndim < 2:
            raise ValueError(
                f"compute_metrics expects classification logits of shape (batch, num_labels), got shape {logits.shape}."
            )
        predictions = logits.argmax(axis=-1)
        references = np.asarray(eval_prediction.label_ids)
        results = {}
        for name, metric in metrics.items():
            kwargs = {"average": "binary" if logits.shape[-1] == 2 else "macro"} if name == "f1" else {}
            results.update(metric.compute(predictions=predictions, references=references, **kwargs))
        return results

    return compute_metrics
