"""Classification metrics that load offline: `evaluate` modules shipped inside the package, loaded by path.

`evaluate.load("accuracy")` fetches the module from the Hugging Face Hub; these numpy-only copies need no network
and no scikit-learn. `evaluate_model` scores a PyTorch model with them; it lives here, beside the metrics, so that
training and export both use it without depending on each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import evaluate
import numpy as np
import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import EvalPrediction, PreTrainedModel

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


@torch.no_grad()
def evaluate_model(model: PreTrainedModel, dataset: Dataset, *, batch_size: int = 64, desc: str = "eval") -> dict:
    """Accuracy, F1 and Matthews correlation of `model` on a tokenized split, in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    columns = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in dataset.column_names]
    logits = []
    # disable=None: no bar where stderr is not a terminal (a log file), so logs get no carriage returns or cursor moves.
    for start in tqdm(range(0, len(dataset), batch_size), desc=desc, leave=False, disable=None):
        batch = dataset[start : start + batch_size]
        inputs = {c: torch.tensor(batch[c], device=device) for c in columns}
        logits.append(model(**inputs).logits.float().cpu().numpy())
    labels = np.asarray(dataset["label"])
    return compute_metrics_fn()(EvalPrediction(predictions=np.concatenate(logits), label_ids=labels))
