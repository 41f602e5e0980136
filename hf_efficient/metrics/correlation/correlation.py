"""Pearson and Spearman correlation for `evaluate`, in numpy only, loaded by path so that it works offline.

Matches `scipy.stats.pearsonr` and `scipy.stats.spearmanr` (ties get their average rank), except where those are
undefined (a constant input): 0.0 here, as the Matthews correlation does, so that a log or a report gets a number.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
- pearson: the linear correlation of predictions and references, between -1.0 and 1.0;
- spearman: the Pearson correlation of their ranks (ties share their average rank), between -1.0 and 1.0.
Both are 0.0 where undefined, when the predictions or the references are all equal.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[float]`): Predicted values.
    references (`list[float]`): True values.

Returns:
    pearson (`float`), spearman (`float`): Between -1.0 and 1.0, higher is better.

Examples:
    >>> from hf_efficient.metrics import load_metric
    >>> load_metric("correlation").compute(predictions=[1.0, 2.0, 4.0], references=[1.0, 3.0, 2.0])
    {'pearson': 0.3273268353539886, 'spearman': 0.5}
"""


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float(np.clip((x * y).sum() / denominator, -1.0, 1.0)) if denominator > 0 else 0.0


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their average rank (scipy's `rankdata(method="average")`)."""
    order = np.argsort(x, kind="mergesort")
    ordered = x[order]
    # Each run of equal values: its first and last position in sorted order.
    new = np.r_[True, ordered[1:] != ordered[:-1]]
    run = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], len(x)] - 1
    ranks = np.empty(len(x))
    ranks[order] = (starts[run] + ends[run]) / 2 + 1
    return ranks


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Correlation(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references):
        predictions, references = np.asarray(predictions, dtype=float), np.asarray(references, dtype=float)
        if predictions.size < 2:
            raise ValueError(f"correlation needs at least two predictions, got {predictions.size}.")
        if not (np.isfinite(predictions).all() and np.isfinite(references).all()):
            raise ValueError("correlation got a NaN or infinite value; give finite predictions and references.")
        return {
            "pearson": _pearson(predictions, references),
            "spearman": _pearson(_ranks(predictions), _ranks(references)),
        }
