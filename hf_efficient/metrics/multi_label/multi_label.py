"""Multi-label metrics for `evaluate`, in numpy only, loaded by path so that it works offline.

Matches `sklearn.metrics.f1_score(average="micro"/"macro", zero_division=0)` and `accuracy_score` on multi-hot rows.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Each row has any number of labels, given as a 0/1 multi-hot list (one entry per label).
- micro_f1: F1 = 2 * TP / (2 * TP + FP + FN) with the counts summed over every label of every row;
- macro_f1: the unweighted mean of each label's F1 (a label never predicted and never true scores 0.0);
- subset_accuracy: the fraction of rows whose predicted labels are exactly their true labels.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[int]]`): Predicted multi-hot rows (e.g. `logits > 0`).
    references (`list[list[int]]`): True multi-hot rows, as wide as the predictions.

Returns:
    micro_f1 (`float`), macro_f1 (`float`), subset_accuracy (`float`): Between 0.0 and 1.0, higher is better.

Examples:
    >>> from hf_efficient.metrics import load_metric
    >>> load_metric("multi_label").compute(predictions=[[1, 0], [1, 1]], references=[[1, 0], [0, 1]])
    {'micro_f1': 0.8, 'macro_f1': 0.8333333333333333, 'subset_accuracy': 0.5}
"""


def _f1(tp, fp, fn):
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros(np.shape(tp)), where=denominator > 0)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultiLabel(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("int32")),
                    "references": datasets.Sequence(datasets.Value("int32")),
                }
            ),
        )

    def _compute(self, predictions, references):
        predictions, references = np.asarray(predictions) == 1, np.asarray(references) == 1
        if predictions.size == 0:
            raise ValueError("multi_label needs at least one prediction, got none.")
        if predictions.shape != references.shape or predictions.ndim != 2:
            raise ValueError(
                f"multi_label needs predictions and references of one shape (rows, labels), got {predictions.shape} "
                f"and {references.shape}; give every row one 0/1 per label."
            )
        tp = (predictions & references).sum(axis=0)
        fp = (predictions & ~references).sum(axis=0)
        fn = (~predictions & references).sum(axis=0)
        return {
            "micro_f1": float(_f1(tp.sum(), fp.sum(), fn.sum())),
            "macro_f1": float(_f1(tp, fp, fn).mean()),
            "subset_accuracy": float((predictions == references).all(axis=1).mean()),
        }
