"""SQuAD exact match and F1 for `evaluate`, with the official normalisation, loaded by path so that it works offline.

As the official SQuAD evaluation script (v1.1, and v2.0 for questions without an answer): answers are compared
after lower-casing and removing punctuation, the articles a/an/the and extra white space; a prediction scores its
best match over the gold answers. Unlike the official script, scores are fractions (0.0 to 1.0), not percentages,
as every other metric here.
"""

from __future__ import annotations

import collections
import re
import string

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
- exact_match: the fraction of predictions equal, once normalised, to one of their gold answers;
- f1: the mean over questions of the best token-overlap F1 of the prediction with a gold answer.
A question with no gold answer (SQuAD v2) counts as right only for an empty prediction.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): Predicted answer texts.
    references (`list[list[str]]`): The gold answer texts of each question (an empty list: no answer).

Returns:
    exact_match (`float`), f1 (`float`): Between 0.0 and 1.0, higher is better.

Examples:
    >>> from hf_efficient.metrics import load_metric
    >>> squad = load_metric("squad")
    >>> squad.compute(predictions=["the Eiffel tower", "Paris"], references=[["Eiffel Tower"], ["in Paris, France"]])
    {'exact_match': 0.5, 'f1': 0.75}
"""

_CITATION = """
@inproceedings{rajpurkar-etal-2016-squad,
  title={{SQ}u{AD}: 100,000+ Questions for Machine Comprehension of Text},
  author={Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy},
  booktitle={EMNLP},
  year={2016}
}
"""

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, the articles a/an/the and extra white space (the official SQuAD script)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _f1(prediction: str, truth: str) -> float:
    predicted, true = normalize_answer(prediction).split(), normalize_answer(truth).split()
    if not predicted or not true:  # SQuAD v2: no-answer is right only against no-answer
        return float(predicted == true)
    common = sum((collections.Counter(predicted) & collections.Counter(true)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(true)
    return 2 * precision * recall / (precision + recall)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Squad(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
            ),
        )

    def _compute(self, predictions, references):
        if not predictions:
            raise ValueError("squad needs at least one prediction, got none.")
        exact, f1 = [], []
        for prediction, truths in zip(predictions, references, strict=True):
            truths = list(truths) or [""]
            exact.append(max(float(normalize_answer(prediction) == normalize_answer(t)) for t in truths))
            f1.append(max(_f1(prediction, t) for t in truths))
        return {"exact_match": float(np.mean(exact)), "f1": float(np.mean(f1))}
