"""The shipped numpy metrics agree with scikit-learn, load offline, and plug into the Trainer."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import EvalPrediction

from hf_efficient.metrics import METRICS, MODULES, compute_metrics_fn, load_metric

sklearn_metrics = pytest.importorskip("sklearn.metrics")

_RNG = np.random.default_rng(0)
BINARY = (_RNG.integers(0, 2, 200), _RNG.integers(0, 2, 200))
THREE_CLASS = (_RNG.integers(0, 3, 300), _RNG.integers(0, 3, 300))
# Class 2 is never predicted and class 3 is never true.
SKEWED = (np.array([0, 0, 1, 1, 3, 0, 1, 0]), np.array([0, 1, 1, 2, 2, 0, 0, 1]))
CONSTANT = (np.zeros(10, dtype=int), _RNG.integers(0, 2, 10))


pytestmark = pytest.mark.usefixtures("no_network")


@pytest.fixture(scope="module")
def metrics():
    return {name: load_metric(name) for name in METRICS}


def test_metrics_load_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    for name in METRICS:
        metric = load_metric(name)
        assert metric.name == name
        # 1 true positive, 1 false positive, 1 true negative: accuracy 2/3, F1 2/3, MCC 1/sqrt(2 * 1 * 2 * 1)
        expected = {"accuracy": 2 / 3, "f1": 2 / 3, "matthews_correlation": 0.5}[name]
        assert metric.compute(predictions=[0, 1, 1], references=[0, 1, 0]) == {name: pytest.approx(expected)}


@pytest.mark.parametrize(
    "data", [BINARY, THREE_CLASS, SKEWED, CONSTANT], ids=["binary", "3-class", "skewed", "constant"]
)
def test_accuracy_and_matthews_match_sklearn(metrics, data):
    predictions, references = data
    accuracy = metrics["accuracy"].compute(predictions=predictions, references=references)
    assert accuracy == {"accuracy": pytest.approx(sklearn_metrics.accuracy_score(references, predictions))}
    matthews = metrics["matthews_correlation"].compute(predictions=predictions, references=references)
    expected = sklearn_metrics.matthews_corrcoef(references, predictions)
    assert matthews == {"matthews_correlation": pytest.approx(expected, abs=1e-12)}


def test_matthews_is_zero_when_undefined(metrics):
    assert metrics["matthews_correlation"].compute(predictions=[1, 1, 1], references=[0, 1, 0]) == {
        "matthews_correlation": 0.0
    }


@pytest.mark.parametrize(
    "data, kwargs",
    [
        (BINARY, {}),
        (BINARY, {"pos_label": 0}),
        (BINARY, {"average": "macro"}),
        (CONSTANT, {}),
        (THREE_CLASS, {"average": "macro"}),
        (THREE_CLASS, {"average": "micro"}),
        (THREE_CLASS, {"average": "weighted"}),
        (SKEWED, {"average": "macro"}),
        (SKEWED, {"average": "micro"}),
        (SKEWED, {"average": "weighted"}),
    ],
)
def test_f1_matches_sklearn(metrics, data, kwargs):
    predictions, references = data
    expected = sklearn_metrics.f1_score(references, predictions, zero_division=0, **kwargs)
    assert metrics["f1"].compute(predictions=predictions, references=references, **kwargs) == {
        "f1": pytest.approx(expected, abs=1e-12)
    }


def test_f1_rejects_bad_arguments(metrics):
    with pytest.raises(ValueError, match="average='macro'"):
        metrics["f1"].compute(predictions=[0, 1, 2], references=[0, 1, 1])
    with pytest.raises(ValueError, match="average='samples'"):
        metrics["f1"].compute(predictions=[0, 1], references=[0, 1], average="samples")
    with pytest.raises(ValueError, match="pos_label=2"):
        metrics["f1"].compute(predictions=[0, 1], references=[0, 1], pos_label=2)


def test_load_metric_unknown_name():
    with pytest.raises(ValueError, match="'bleu'") as error:
        load_metric("bleu")
    assert str(MODULES) in str(error.value)


@pytest.mark.parametrize("num_labels", [2, 3])
def test_compute_metrics_fn(num_labels):
    logits = np.random.default_rng(1).normal(size=(64, num_labels)).astype(np.float32)
    labels = np.random.default_rng(2).integers(0, num_labels, 64)
    predictions = logits.argmax(-1)
    average = "binary" if num_labels == 2 else "macro"
    expected = {
        "accuracy": sklearn_metrics.accuracy_score(labels, predictions),
        "f1": sklearn_metrics.f1_score(labels, predictions, average=average),
        "matthews_correlation": sklearn_metrics.matthews_corrcoef(labels, predictions),
    }

    compute_metrics = compute_metrics_fn()
    assert compute_metrics(EvalPrediction(predictions=logits, label_ids=labels)) == pytest.approx(expected)
    # Models that return more than logits hand the Trainer a tuple, logits first.
    hidden = np.zeros((64, 5, 8), dtype=np.float32)
    assert compute_metrics(EvalPrediction(predictions=(logits, hidden), label_ids=labels)) == pytest.approx(expected)
    assert compute_metrics_fn(["accuracy"])(EvalPrediction(predictions=logits, label_ids=labels)) == {
        "accuracy": pytest.approx(expected["accuracy"])
    }


def test_compute_metrics_fn_validates():
    with pytest.raises(ValueError, match=r"\('accuracy',\)"):
        compute_metrics_fn("accuracy")
    with pytest.raises(ValueError, match="empty"):
        compute_metrics_fn([])
    with pytest.raises(ValueError, match="'recall'"):
        compute_metrics_fn(["accuracy", "recall"])
    with pytest.raises(ValueError, match="shape"):
        compute_metrics_fn(["accuracy"])(EvalPrediction(predictions=np.zeros(4), label_ids=np.zeros(4)))
