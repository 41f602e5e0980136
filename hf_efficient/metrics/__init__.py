"""Metrics that load offline: `evaluate` modules shipped inside the package, loaded by path.

`evaluate.load("accuracy")` fetches the module from the Hugging Face Hub; these copies (numpy only, and the
`seqeval` package for entities) need no network. `compute_metrics_fn` and `evaluate_model` score a task's
predictions with them; they live here, beside the metrics, so that training and export both use them without
depending on each other.

The metric names (the keys of the results) of a task are its row's `metrics` (`hf_efficient.tasks`); the
module computing each is `METRIC_MODULES`.
"""

from __future__ import annotations

from pathlib import Path

import evaluate

from .evaluation import compute_metrics_fn, evaluate_model, score_predictions

# Text classification's metrics, each one module of its name.
METRICS = ("accuracy", "f1", "matthews_correlation")
# Every shipped module.
MODULES = (*METRICS, "multi_label", "correlation", "entities", "squad")
# The module that computes each metric of a task row's `metrics`.
METRIC_MODULES = {
    "accuracy": "accuracy",
    "f1": "f1",
    "matthews_correlation": "matthews_correlation",
    "micro_f1": "multi_label",
    "macro_f1": "multi_label",
    "subset_accuracy": "multi_label",
    "pearson": "correlation",
    "spearman": "correlation",
    "entity_precision": "entities",
    "entity_recall": "entities",
    "entity_f1": "entities",
    "token_accuracy": "entities",
    "exact_match": "squad",
}

__all__ = [
    "METRICS",
    "METRIC_MODULES",
    "MODULES",
    "compute_metrics_fn",
    "evaluate_model",
    "load_metric",
    "score_predictions",
]


def load_metric(name: str) -> evaluate.EvaluationModule:
    """Load one of the shipped metric modules, without touching the network.

    Args:
        name (`str`): One of `MODULES`: "accuracy", "f1", "matthews_correlation", "multi_label" (micro_f1, macro_f1,
            subset_accuracy), "correlation" (pearson, spearman), "entities" (entity_precision, entity_recall,
            entity_f1, token_accuracy) or "squad" (exact_match, f1).

    Returns:
        `evaluate.EvaluationModule`: The metric; call `.compute(predictions=..., references=...)` on it.
    """
    if name not in MODULES:
        raise ValueError(f"Unknown metric {name!r}; pass one of {MODULES}.")
    return evaluate.load(str(Path(__file__).parent / name / f"{name}.py"))
