"""Unwrapping a SentenceTransformer to its transformers encoder, and embeddings of either."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel

# sentence-transformers' own layout: ONNX files in this subfolder of the model folder.
ONNX_DIR = "onnx"


class SentenceError(ValueError):
    """A sentence-transformers model that hf_efficient cannot work on."""


def is_sentence_transformer(model) -> bool:
    """Whether `model` is a `SentenceTransformer` (without importing sentence-transformers when unused)."""
    module = sys.modules.get("sentence_transformers")
    return module is not None and isinstance(model, module.SentenceTransformer)


def sentence_encoder(model, call: str = "hf_efficient") -> PreTrainedModel:
    """The transformers encoder inside a SentenceTransformer (its first module's `auto_model`)."""
    first = model[0] if len(model) else None
    encoder = getattr(first, "auto_model", None)
    if not isinstance(encoder, PreTrainedModel):
        what = type(first).__name__ if first is not None else "nothing"
        backend = getattr(first, "backend", "torch")
        fix = (
            f"load it with backend='torch' (it is loaded with backend={backend!r})"
            if backend != "torch"
            else "use a model whose first module is sentence_transformers.models.Transformer"
        )
        raise SentenceError(
            f"{call}: the SentenceTransformer's first module is {what}, not a transformers encoder; {fix}."
        )
    return encoder


def transformers_model(model, call: str = "hf_efficient") -> nn.Module:
    """The transformers model a technique changes: the encoder of a SentenceTransformer, else `model`."""
    if isinstance(model, (str, Path)):  # a folder or Hub id: the techniques change a loaded model in place
        raise ValueError(
            f"{call}({str(model)!r}): give a loaded model, not its name: e.g. "
            f"AutoModelForSequenceClassification.from_pretrained({str(model)!r}), or SentenceTransformer(...)."
        )
    if not isinstance(model, nn.Module):
        raise ValueError(f"{call}(model={model!r:.60}): give a transformers model or a SentenceTransformer.")
    return sentence_encoder(model, call) if is_sentence_transformer(model) else model


def calling_module(model) -> nn.Module:
    """The module whose call runs the encoder: its hooks fire once per forward.

    sentence-transformers calls its encoder's `forward` method directly, so that hooks on the
    encoder itself never fire; its first module (`Transformer`) is called as a module.
    """
    return model[0] if is_sentence_transformer(model) else transformers_model(model).base_model


def is_bare_encoder(model) -> bool:
    """A transformers encoder without a task head (`AutoModel`), whose output is `last_hidden_state`."""
    return isinstance(model, PreTrainedModel) and model.base_model is model


def mean_pool(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of the unpadded token vectors, `(batch, length, hidden) -> (batch, hidden)`."""
    mask = attention_mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def embeddings(model: nn.Module, features: dict[str, torch.Tensor]) -> torch.Tensor:
    """The sentence vectors of a tokenized batch: a SentenceTransformer's `sentence_embedding`, or the
    mean-pooled `last_hidden_state` of a bare encoder (wrapped models, e.g. by DDP, are called as they are).
    """
    inner = getattr(model, "module", model)
    if is_sentence_transformer(inner):
        return model(dict(features))["sentence_embedding"]
    accepted = inspect.signature(inner.forward).parameters
    states = model(**{k: v for k, v in features.items() if k in accepted}).last_hidden_state
    return mean_pool(states, features["attention_mask"])


def sentence_transformer_of(model_or_path):
    """The SentenceTransformer that `model_or_path` is or whose folder it names (modules.json), else None."""
    if is_sentence_transformer(model_or_path):
        return model_or_path
    if isinstance(model_or_path, (str, Path)) and (Path(model_or_path) / "modules.json").is_file():
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(model_or_path), device="cpu")
    return None


def int8_file_name(target: str) -> str:
    """The int8 file sentence-transformers' `export_dynamic_quantized_onnx_model` writes for `target`."""
    return f"model_qint8_{target}.onnx"
