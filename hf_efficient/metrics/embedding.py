"""Embedding quality measured offline on held-out text, in numpy and torch (no scikit-learn).

- `cosine_to_teacher`: mean cosine of each student embedding to the teacher's of the same text.
- `neighbour_overlap`: how many of each text's k nearest neighbours (cosine, itself left out) the
  student and the teacher share, as a fraction of k: retrieval agreement.
- `knn_accuracy`: k-nearest-neighbour classification (k = 10, cosine, majority vote), and
  `probe_accuracy`: a multinomial logistic regression on the frozen embeddings, as MTEB's
  classification tasks score an embedding model (scikit-learn's `LogisticRegression(max_iter=100)`:
  L2 with C = 1, fitted here with L-BFGS in torch).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _unit(vectors) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"embedding metrics: expected a 2-d array of embeddings, got shape {vectors.shape}.")
    return vectors / np.clip(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12, None)


def _same_rows(a: np.ndarray, b: np.ndarray, call: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{call}: {len(a)} student rows but {len(b)} teacher rows; embed the same texts with both.")


def cosine_to_teacher(student, teacher) -> float:
    """Mean cosine similarity of matching rows (the same text embedded by both models)."""
    student, teacher = _unit(student), _unit(teacher)
    _same_rows(student, teacher, "cosine_to_teacher")
    return float((student * teacher).sum(-1).mean())


def _neighbours(vectors: np.ndarray, k: int) -> np.ndarray:
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


def neighbour_overlap(student, teacher, k: int = 10) -> float:
    """Mean fraction of each text's `k` nearest neighbours (by cosine) that student and teacher share."""
    student, teacher = _unit(student), _unit(teacher)
    _same_rows(student, teacher, "neighbour_overlap")
    if not 1 <= k < len(student):
        raise ValueError(
            f"neighbour_overlap(k={k}): k must be between 1 and the number of texts - 1 ({len(student) - 1})."
        )
    ours, theirs = _neighbours(student, k), _neighbours(teacher, k)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ours, theirs, strict=True)]))


def knn_accuracy(train, train_labels, test, test_labels, k: int = 10) -> float:
    """Accuracy of a k-nearest-neighbour vote (cosine; ties go to the smaller label, as scikit-learn's)."""
    train, test = _unit(train), _unit(test)
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    classes, train_ids = np.unique(train_labels, return_inverse=True)
    nearest = np.argsort(-(test @ train.T), axis=1, kind="stable")[:, :k]
    votes = np.zeros((len(test), len(classes)))
    np.add.at(votes, (np.arange(len(test))[:, None], train_ids[nearest]), 1)
    return float((classes[votes.argmax(1)] == test_labels).mean())


def probe_accuracy(train, train_labels, test, test_labels, max_iter: int = 100, c: float = 1.0) -> float:
    """Accuracy of a multinomial logistic regression (L2, C = `c`) fitted on frozen embeddings."""
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    classes, targets = np.unique(train_labels, return_inverse=True)
    x = torch.as_tensor(np.asarray(train, dtype=np.float32), dtype=torch.float64)
    y = torch.as_tensor(targets)
    # Two classes: one weight vector and the logistic loss, as scikit-learn fits them; more: softmax.
    columns = 1 if len(classes) == 2 else len(classes)
    weight = torch.zeros(x.shape[1], columns, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(columns, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        scores = x @ weight + bias
        if columns == 1:
            log_loss = F.binary_cross_entropy_with_logits(scores[:, 0], y.double(), reduction="sum")
        else:
            log_loss = F.cross_entropy(scores, y, reduction="sum")
        # scikit-learn's objective: C * sum of log losses + 0.5 * |w|^2 (the bias is not penalised).
        loss = c * log_loss + 0.5 * (weight**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        scores = torch.as_tensor(np.asarray(test, dtype=np.float32), dtype=torch.float64) @ weight + bias
    predicted = (scores[:, 0] > 0).long() if columns == 1 else scores.argmax(1)
    return float((classes[predicted.numpy()] == test_labels).mean())


def embedding_quality(student, teacher, *, labels=None, train=None, train_labels=None, k: int = 10) -> dict[str, float]:
    """Every measure at once: cosine and neighbour overlap to the teacher on the evaluation texts, and,
    where labels exist, kNN and probe accuracy (fitted on `train` embeddings with `train_labels`)."""
    quality = {
        "cosine_to_teacher": cosine_to_teacher(student, teacher),
        f"top{k}_overlap": neighbour_overlap(student, teacher, k),
    }
    if labels is not None and train is not None and train_labels is not None:
        quality["knn_accuracy"] = knn_accuracy(train, train_labels, student, labels, k)
        quality["probe_accuracy"] = probe_accuracy(train, train_labels, student, labels)
    return quality
