"""Matthews correlation metric for `evaluate`, in numpy only, loaded by path so that it works offline.

Matches `sklearn.metrics.matthews_corrcoef`, including its multi-class form (Gorodkin's R_K).
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
The Matthews correlation coefficient (MCC) is the correlation between predicted and true classes, from the
confusion matrix C of n samples: with t = C's row sums (true counts), p = its column sums (predicted counts)
and c = its trace (correct predictions),
MCC = (c * n - t . p) / sqrt((n^2 - p . p) * (n^2 - t . t)).
With two classes this is the usual (TP * TN - FP * FN) / sqrt((TP + FP)(TP + FN)(TN + FP)(TN + FN)).
It is 0.0 when undefined, i.e. when all predictions or all references are one class.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): Predicted class ids.
    references (`list[int]`): True class ids.

Returns:
    matthews_correlation (`float`): Between -1.0 and 1.0; 1.0 is perfect, 0.0 is no better than chance.

Examples:
    >>> from hf_efficient.metrics import load_metric
    >>> load_metric("matthews_correlation").compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])
    {'matthews_correlation': 0.5773502691896258}
"""

_CITATION = """
@article{matthews1975comparison,
  title={Comparison of the predicted and observed secondary structure of T4 phage lysozyme},
  author={Matthews, Brian W.},
  journal={Biochimica et Biophysica Acta (BBA) - Protein Structure},
  volume={405},
  number={2},
  pages={442--451},
  year={1975}
}
@article{gorodkin2004comparing,
  title={Comparing two K-category assignments by a K-category correlation coefficient},
  author={Gorodkin, Jan},
  journal={Computational Biology and Chemistry},
  volume={28},
  number={5},
  pages={367--374},
  year={2004}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MatthewsCorrelation(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}),
        )

    def _compute(self, predictions, references):
        predictions, references = np.asarray(predictions), np.asarray(references)
        if predictions.size == 0:
            raise ValueError("matthews_correlation needs at least one prediction, got none.")
        labels, ids = np.unique(np.concatenate([references, predictions]), return_inverse=True)
        n, k = len(references), len(labels)
        confusion = np.bincount(ids[:n] * k + ids[n:], minlength=k * k).reshape(k, k).astype(np.float64)
        true_counts, predicted_counts = confusion.sum(axis=1), confusion.sum(axis=0)
        covariance = np.trace(confusion) * n - true_counts @ predicted_counts
        variance_predicted = n**2 - predicted_counts @ predicted_counts
        variance_true = n**2 - true_counts @ true_counts
        if variance_predicted * variance_true == 0:
            return {"matthews_correlation": 0.0}
        return {"matthews_correlation": float(covariance / np.sqrt(variance_true * variance_predicted))}
