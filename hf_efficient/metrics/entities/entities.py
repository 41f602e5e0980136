"""Entity-level precision, recall and F1 of tag sequences for `evaluate`, from the `seqeval` package, offline.

The CoNLL evaluation as `seqeval` computes it by default (the Hub's `seqeval` metric does the same): an entity is a
span of B-/I- tags (IOB1, IOB2 or IOBES names such as B-PER, I-PER) and counts as found when its type and both ends
match; precision, recall and F1 are micro-averaged over entities. Token accuracy is over every tag.
"""

from __future__ import annotations

import datasets
import evaluate

_DESCRIPTION = """
- entity_precision: found entities that are true, over found entities;
- entity_recall: true entities that are found, over true entities;
- entity_f1: their harmonic mean (0.0 where there is no entity at all);
- token_accuracy: the fraction of tags that are right.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[str]]`): Predicted tags of every sequence (of its labelled positions).
    references (`list[list[str]]`): True tags, as many per sequence as predicted.

Returns:
    entity_precision, entity_recall, entity_f1, token_accuracy (`float`): Between 0.0 and 1.0, higher is better.

Examples:
    >>> from hf_efficient.metrics import load_metric
    >>> entities = load_metric("entities")
    >>> results = entities.compute(predictions=[["B-PER", "O", "B-LOC"]], references=[["B-PER", "O", "O"]])
    >>> results["entity_precision"], results["entity_recall"], round(results["entity_f1"], 3)
    (0.5, 1.0, 0.667)
"""

_CITATION = """
@misc{seqeval,
  title={{seqeval}: A Python framework for sequence labeling evaluation},
  url={https://github.com/chakki-works/seqeval},
  author={Hiroki Nakayama},
  year={2018}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Entities(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions, references):
        try:
            from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score
        except ImportError:
            raise ImportError("The entity metrics need seqeval; install it with `pip install seqeval`.") from None
        if not predictions:
            raise ValueError("entities needs at least one predicted sequence, got none.")
        for row, (predicted, true) in enumerate(zip(predictions, references, strict=True)):
            if len(predicted) != len(true):
                raise ValueError(
                    f"Sequence {row} has {len(predicted)} predicted tags for {len(true)} true ones; give one per token."
                )
        kwargs = {"zero_division": 0}
        return {
            "entity_precision": float(precision_score(references, predictions, **kwargs)),
            "entity_recall": float(recall_score(references, predictions, **kwargs)),
            "entity_f1": float(f1_score(references, predictions, **kwargs)),
            "token_accuracy": float(accuracy_score(references, predictions)),
        }
