"""The one place that knows how each encoder family is built.

Every technique finds the layer stack through `layer_stack`, reads layer outputs through
`record_layer_outputs`, and never looks inside a model class itself. Supporting a new family means
adding one `EncoderFamily` here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel


@dataclass(frozen=True)
class EncoderFamily:
    """How one family of encoders stores its layers.

    Args:
        name (`str`): Family name shown in error messages.
        model_types (`tuple[str, ...]`): `config.model_type` values known to belong to the family.
        layers_path (`str`): Dotted path of the layer `nn.ModuleList`, relative to `model.base_model`.
        hidden_index (`int`): Where the hidden states sit when a layer returns a tuple
            (DistilBERT on transformers 4.x puts the attention weights first).
        attention_prefixes (`tuple[str, ...]`): Parameter names of a layer that belong to its
            attention block (with its norm); the rest is the feed-forward block.
    """

    name: str
    model_types: tuple[str, ...]
    layers_path: str
    hidden_index: int = 0
    attention_prefixes: tuple[str, ...] = ("attention.",)

    def is_attention_parameter(self, name: str) -> bool:
        """Whether parameter `name` (relative to a layer) belongs to the attention block."""
        return name.startswith(self.attention_prefixes)

    def hidden_states(self, layer_output) -> torch.Tensor:
        """Pick the hidden states out of what one layer returned (a tensor or a tuple)."""
        return layer_output if isinstance(layer_output, torch.Tensor) else layer_output[self.hidden_index]


FAMILIES: tuple[EncoderFamily, ...] = (
    EncoderFamily(
        "bert-like (encoder.layer)",
        (
            "bert",
            "roberta",
            "xlm-roberta",
            "camembert",
            "electra",
            "deberta-v2",
            "deberta",
            "mpnet",
            "ernie",
            "roformer",
            "data2vec-text",
            "xlm-roberta-xl",
        ),
        "encoder.layer",
    ),
    EncoderFamily(
        "distilbert (transformer.layer)",
        ("distilbert",),
        "transformer.layer",
        hidden_index=-1,
        attention_prefixes=("attention.", "sa_layer_norm."),
    ),
    EncoderFamily("modernbert (layers)", ("modernbert",), "layers", attention_prefixes=("attn.", "attn_norm.")),
    # transformers 5's own NomicBERT; the remote code of nomic-ai checkpoints builds its layers elsewhere.
    EncoderFamily(
        "nomic-bert (layers)",
        ("nomic_bert",),
        "layers",
        attention_prefixes=("self_attn.", "post_attention_layernorm."),
    ),
)


class UnsupportedModelError(ValueError):
    """Raised for a model that is not an encoder of a supported family."""


def _get_path(module: nn.Module, path: str) -> nn.Module | None:
    for name in path.split("."):
        module = getattr(module, name, None)
        if module is None:
            return None
    return module


def _unsupported(model: nn.Module, why: str) -> UnsupportedModelError:
    families = "; ".join(f"{f.name}: {', '.join(f.model_types)}" for f in FAMILIES)
    return UnsupportedModelError(
        f"{type(model).__name__} is not supported by hf_efficient ({why}). Supported encoder families: "
        f"{families}. Other encoders whose layers live at one of these paths work as well."
    )


def _inner_model(model) -> str:
    """Where a wrapper (sentence-transformers' `CrossEncoder`, ...) keeps its transformers model, as advice."""
    inner = getattr(model, "model", None)
    if isinstance(inner, PreTrainedModel):
        return f"; pass the {type(inner).__name__} inside it, `.model` (a folder it is saved to loads in the wrapper)"
    return ""


def encoder_family(model: nn.Module) -> EncoderFamily:
    """Return the family of `model`, or raise `UnsupportedModelError` naming the model class.

    Args:
        model (`PreTrainedModel`): A transformers encoder, bare or with a task head.
    """
    if not isinstance(model, PreTrainedModel):
        raise _unsupported(model, "it is not a transformers PreTrainedModel" + _inner_model(model))
    config = model.config
    if getattr(config, "is_encoder_decoder", False) or getattr(config, "is_decoder", False):
        raise _unsupported(model, "it is a decoder or encoder-decoder, not an encoder")
    known = [f for f in FAMILIES if config.model_type in f.model_types]
    # Unknown model types are accepted when they are built the same way as a known family.
    for family in known or FAMILIES:
        if isinstance(_get_path(model.base_model, family.layers_path), nn.ModuleList):
            return family
    raise _unsupported(model, f"model_type {config.model_type!r} has no layer list at a known path")


def layer_stack(model: nn.Module) -> nn.ModuleList:
    """Return the `nn.ModuleList` holding the transformer layers of `model`."""
    family = encoder_family(model)  # first: it explains what is wrong with a model that has no base_model
    return _get_path(model.base_model, family.layers_path)


def replace_layer_stack(model: PreTrainedModel, layers: list[nn.Module]) -> None:
    """Replace the layers of `model` with `layers` and update the config to match."""
    family = encoder_family(model)
    parent_path, _, attribute = family.layers_path.rpartition(".")
    parent = _get_path(model.base_model, parent_path) if parent_path else model.base_model
    setattr(parent, attribute, nn.ModuleList(layers))
    # `num_hidden_layers` is an alias of `n_layers` on DistilBERT, so one assignment covers every family.
    model.config.num_hidden_layers = len(layers)


@contextlib.contextmanager
def record_layer_outputs(model: nn.Module, layers: Iterable[int] | None = None) -> Iterator[dict[int, torch.Tensor]]:
    """Record the hidden states each layer outputs, with forward hooks.

    Independent of `output_hidden_states`, whose length depends on the transformers version.
    A layer that LayerDrop skipped records its input, which is what it passed on.

    Args:
        model (`nn.Module`): A model of a supported encoder family.
        layers (`Iterable[int]`, *optional*): 0-based indices of the layers to record; all when omitted.
            A hooked layer costs a slower call, so record only what is read.

    Yields:
        `dict[int, torch.Tensor]`: layer index -> hidden states of the last forward, filled as it runs.
    """
    family = encoder_family(model)
    stack = layer_stack(model)
    if layers is not None and (isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__")):
        raise ValueError(f"record_layer_outputs(layers={layers!r}): give a list of layer indices, e.g. [0, 2].")
    indices = range(len(stack)) if layers is None else list(layers)
    bad = [i for i in indices if not (isinstance(i, int) and 0 <= i < len(stack))]
    if bad:
        raise ValueError(f"record_layer_outputs(layers=...): {bad} are not layers of this {len(stack)}-layer model.")
    outputs: dict[int, torch.Tensor] = {}

    def hook(index):
        def record(module, args, output):
            outputs[index] = family.hidden_states(output)

        return record

    handles = [stack[i].register_forward_hook(hook(i)) for i in sorted(set(indices))]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()
