"""F1 metric for `evaluate`, in numpy only, loaded by path so that it works offline.

Matches `sklearn.metrics.f1_score` (with `zero_division=0`) for the averages it supports.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

AVERAGES = ("binary", "macro", "micro", "weighted")

_DESCRIPTION = """
The F1 score is the harmonic mean of precision and recall: F1 = 2 * TP / (2 * TP + FP + FN).
A class that is never predicted and never true scores 0.0.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): Predicted class ids.
    references (`list[int]`): True class ids.
    average (`str`, defaults to `"binary"`): How to combine the classes:
        - "binary": the F1 of class `pos_label` alone; there may be at most two classes.
        - "macro": the unweighted mean of each class's F1.
        - "micro": the F1 of the true positives, false positives and false negatives summed over all classes.
        - "weighted": the mean of each class's F1, weighted by how often the class is true.
    pos_label (`int`, defaults to `1`): The positive class when `average="binary"`.

Returns:
    f1 (`float`): Between 0.0 and 1.0, higher is better.

Examples:
    >>> from hf_efficient.metrics import load_metric
    >>> load_metric("f1").compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])
    {'f1': 0.6666666666666666}
    >>> load_metric("f1").compute(predictions=[0, 2, 1, 0], references=[0, 1, 2, 0], average="macro")
    {'f1': 0.3333333333333333}
"""

_CITATION = """
@book{van1979information,
  title={Information Retrieval},
  author={van Rijsbergen, C. J.},
  edition={2},
  publisher={Butterworth},
  year={1979}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}),
        )

    def _compute(self, predictions, references, average="binary", pos_label=1):
        if average not in AVERAGES:
            raise ValueError(f"average={average!r} is not supported; use one of {AVERAGES}.")
        predictions, references = np.asarray(predictions), np.asarray(references)
        if predictions.size == 0:
            raise ValueError("f1 needs at least one prediction, got none.")
        labels = np.union1d(predictions, references)
        if average == "binary":
            if len(labels) > 2:
                raise ValueError(
                    f"average='binary' needs at most two classes, got {labels.tolist()}; "
                    "pass average='macro', 'micro' or 'weighted'."
                )
            if len(labels) == 2 and pos_label not in labels:
                raise ValueError(f"pos_label={pos_label!r} is not a class here; pass one of {labels.tolist()}.")
            labels = np.array([pos_label])

        predicted = predictions[:, None] == labels
        true = references[:, None] == labels
        tp = (predicted & true).sum(axis=0)
        fp = (predicted & ~true).sum(axis=0)
        fn = (~predicted & true).sum(axis=0)
        if average == "micro":
            tp, fp, fn = tp.sum(keepdims=True), fp.sum(keepdims=True), fn.sum(keepdims=True)
        denominator = 2 * tp + fp + fn
        f1 = np.divide(2 * tp, denominator, out=np.zeros(len(tp)), where=denominator > 0)
        weights = tp + fn if average == "weighted" else None
        return {"f1": float(np.average(f1, weights=weights))}
