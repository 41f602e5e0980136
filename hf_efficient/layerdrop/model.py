"""LayerDrop in the model: layers that skip themselves in training, and pruning for inference."""

from __future__ import annotations

import copy
import functools
import inspect
import random
from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedModel

from ..checkpoint import record_technique, recorded_technique, register_restorer
from ..encoders import encoder_family, layer_stack, replace_layer_stack
from .config import LayerDropConfig


class DropSchedule:
    """Which layers the current training forward skips; one per model, shared by its layers.

    The decisions of a forward come from a generator seeded with (seed, step, forward within the
    step), never from the global RNG: every rank of a distributed run skips the same layers, and a
    resumed run repeats them. `LayerDropCallback` sets `step` from the Trainer's global step.
    """

    def __init__(self, rates: list[float], seed: int):
        self.rates = rates
        self.seed = seed
        self.step = 0
        self.forward_in_step = 0
        self.skipped = [False] * len(rates)
        # What a layer returns (tensor, or tuple of a given length), learnt from the layers themselves
        # because it differs between transformers versions; keyed by whether attentions are requested.
        self.output_structure: dict[bool, int | None] = {}

    def set_step(self, step: int) -> None:
        self.step = step
        self.forward_in_step = 0

    def draw(self) -> None:
        rng = random.Random(f"{self.seed}:{self.step}:{self.forward_in_step}")
        self.skipped = [rng.random() < rate for rate in self.rates]
        self.forward_in_step += 1


class LayerDropLayer:
    """Mixin put in front of a layer's own class: the layer returns its input when it is skipped.

    Swapping the class (as `torch.nn.utils.parametrize` does) keeps the module, its attributes
    (ModernBERT reads `attention_type`), its `state_dict` keys and `isinstance` checks unchanged,
    and the layer is still called, so hooks that collect hidden states see one entry per layer.
    """

    layerdrop_original_class: type
    layerdrop_schedule: DropSchedule
    layerdrop_index: int

    def forward(self, *args, **kwargs):
        schedule = self.layerdrop_schedule
        hidden_states, wants_attentions = _call_arguments(self, args, kwargs)
        skip = self.training and schedule.skipped[self.layerdrop_index]
        if not skip or wants_attentions not in schedule.output_structure:
            # The first skip of a model can come before any layer ran: then one probe without
            # gradients learns what the layers return, and the layer stays skipped.
            with torch.set_grad_enabled(torch.is_grad_enabled() and not skip):
                output = super().forward(*args, **kwargs)
            schedule.output_structure[wants_attentions] = None if isinstance(output, torch.Tensor) else len(output)
            if not skip:
                return output
        length = schedule.output_structure[wants_attentions]
        if length is None:
            return hidden_states
        skipped = [None] * length
        skipped[self.layerdrop_family.hidden_index] = hidden_states
        return tuple(skipped)


def _call_arguments(layer: nn.Module, args: tuple, kwargs: dict) -> tuple[torch.Tensor, bool]:
    """The hidden states (first argument) of this layer call, and whether it asks for attentions."""
    signature = _forward_signature(layer.layerdrop_original_class)
    bound = signature.bind_partial(layer, *args, **kwargs).arguments
    extra = next((bound.get(p.name, {}) for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD), {})
    wants_attentions = bound.get("output_attentions", extra.get("output_attentions"))
    return bound[list(signature.parameters)[1]], bool(wants_attentions)


@functools.cache
def _forward_signature(cls: type) -> inspect.Signature:
    return inspect.signature(cls.forward)


@functools.cache
def _layerdrop_class(cls: type) -> type:
    return type(f"LayerDrop{cls.__name__}", (LayerDropLayer, cls), {"layerdrop_original_class": cls})


def _draw_before_forward(module: nn.Module, args, kwargs) -> None:
    if module.training:
        module.layerdrop_schedule.draw()


def apply_layerdrop(model: PreTrainedModel, config: LayerDropConfig | None = None) -> PreTrainedModel:
    """Make the layers of `model` skip themselves at random in training, in place.

    In training each forward skips each layer with its rate; a skipped layer is not computed. In eval
    mode nothing is skipped and outputs equal those of the unchanged model. The config is recorded
    in `model.config`, so `save_pretrained` keeps it and `from_pretrained` (with hf_efficient
    imported) applies it again. Use `LayerDropCallback` with a `Trainer`.

    Args:
        model (`PreTrainedModel`): An encoder of a supported family, with or without a task head.
        config (`LayerDropConfig`, *optional*): Rates and seed; `LayerDropConfig()` when omitted.

    Returns:
        `PreTrainedModel`: `model` itself.

    Example:
        ```python
        >>> from hf_efficient import LayerDropConfig, apply_layerdrop
        >>> model = apply_layerdrop(model, LayerDropConfig(rate=0.2))
        ```
    """
    config = LayerDropConfig() if config is None else config
    if not isinstance(config, LayerDropConfig):
        raise TypeError(f"apply_layerdrop(config={config!r}): expected a LayerDropConfig.")
    family = encoder_family(model)
    if layerdrop_schedule(model) is not None:
        remove_layerdrop(model)
    layers = layer_stack(model)
    schedule = DropSchedule(config.layer_rates(len(layers)), config.seed)
    for index, layer in enumerate(layers):
        layer.__class__ = _layerdrop_class(type(layer))
        layer.layerdrop_schedule = schedule
        layer.layerdrop_index = index
        layer.layerdrop_family = family
    base = model.base_model
    base.layerdrop_schedule = schedule
    base.layerdrop_hook = base.register_forward_pre_hook(_draw_before_forward, with_kwargs=True)
    record_technique(model, "layerdrop", config.to_dict())
    return model


def layerdrop_schedule(model: nn.Module) -> DropSchedule | None:
    """The `DropSchedule` of a model that `apply_layerdrop` changed, else None."""
    base = getattr(model, "base_model", model)
    return getattr(base, "layerdrop_schedule", None)


def remove_layerdrop(model: PreTrainedModel) -> PreTrainedModel:
    """Undo `apply_layerdrop` in place: the layers and the config are plain again."""
    base = model.base_model
    if getattr(base, "layerdrop_schedule", None) is None:
        return model
    for layer in layer_stack(model):
        layer.__class__ = layer.layerdrop_original_class
        del layer.layerdrop_schedule, layer.layerdrop_index, layer.layerdrop_family
    base.layerdrop_hook.remove()
    del base.layerdrop_schedule, base.layerdrop_hook
    record_technique(model, "layerdrop", None)
    return model


def every_other_layers(num_layers: int, depth: int) -> list[int]:
    """Indices of `depth` layers spread evenly over `num_layers`, starting at layer 0.

    For half the depth this is the paper's "every other" rule (0, 2, 4, ... as in fairseq's
    `--encoder-layers-to-keep`), which it found best for pruning a LayerDrop model.
    """
    return [i * num_layers // depth for i in range(depth)]


def _layers_to_keep(keep, num_layers: int) -> list[int]:
    if keep == "every_other":
        return list(range(0, num_layers, 2))
    if isinstance(keep, int) and not isinstance(keep, bool):
        if not 1 <= keep <= num_layers:
            raise ValueError(f"prune_layers(keep={keep}): the depth must be between 1 and {num_layers}.")
        return every_other_layers(num_layers, keep)
    if isinstance(keep, Sequence) and not isinstance(keep, str):
        keep = list(keep)
        if not keep:
            raise ValueError("prune_layers(keep=[]): keep at least one layer.")
        bad = [i for i in keep if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < num_layers]
        if bad:
            raise ValueError(
                f"prune_layers(keep={keep}): indices {bad} are not layers of this {num_layers}-layer model."
            )
        if len(set(keep)) != len(keep):
            raise ValueError(f"prune_layers(keep={keep}): an index appears twice; each layer can be kept once.")
        if keep != sorted(keep):
            raise ValueError(f"prune_layers(keep={keep}): list the layers in increasing order ({sorted(keep)}).")
        return keep
    raise ValueError(f"prune_layers(keep={keep!r}): give a depth (int), a list of layer indices, or 'every_other'.")


def _prune_layer_types(config, kept: list[int], num_layers: int) -> None:
    """Keep per-layer attention types (transformers 5 configs store them) with their layers."""
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == num_layers:
        config.layer_types = [layer_types[i] for i in kept]


def _check_attention_pattern(config, kept: list[int]) -> None:
    every = getattr(config, "global_attn_every_n_layers", None)
    if config.model_type != "modernbert" or not every or getattr(config, "layer_types", None):
        return
    # transformers 4.x derives each ModernBERT layer's attention (global or sliding) from its
    # position, so the kept layers must fall on the same pattern to reload as they are.
    if [i % every == 0 for i in kept] != [i % every == 0 for i in range(len(kept))]:
        raise ValueError(
            f"prune_layers(keep={kept}): on this transformers version a ModernBERT layer's attention "
            f"(global every {every} layers) follows its position, so these layers would reload with "
            "different attention. Keep layers whose global/sliding pattern matches, or use "
            "transformers>=5, which stores `layer_types` in the config."
        )


def _check_reloads_unchanged(model: PreTrainedModel, kept: list[int]) -> None:
    """Refuse a pruning whose checkpoint a fresh model of the pruned config could not load as it is."""
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = len(kept)
    _prune_layer_types(config, kept, len(layer_stack(model)))
    with torch.device("meta"):
        fresh = type(model)(config)
    prefix = next(name for name, module in model.named_modules() if module is layer_stack(model)) + "."
    renumber = {str(old): str(new) for new, old in enumerate(kept)}
    pruned = {}
    for name, tensor in model.state_dict().items():
        if name.startswith(prefix):
            index, _, rest = name[len(prefix) :].partition(".")
            if index not in renumber:
                continue
            name = f"{prefix}{renumber[index]}.{rest}"
        pruned[name] = tensor.shape
    expected = {name: tensor.shape for name, tensor in fresh.state_dict().items()}
    if pruned != expected:
        differing = sorted(set(pruned).symmetric_difference(expected)) or [
            name for name in pruned if pruned[name] != expected[name]
        ]
        raise ValueError(
            f"prune_layers(keep={kept}): a {type(model).__name__} with these layers would not reload as it is "
            f"(parameters that differ from a fresh model: {differing[:4]}). Some families build their first "
            "layer differently (ModernBERT has no attention norm in layer 0): keep layer 0."
        )


def prune_layers(model: PreTrainedModel, keep: int | list[int] | str) -> PreTrainedModel:
    """Keep only some layers of `model`, in place, and return it as a plain transformers model.

    The result has the same class, fewer layers and `num_hidden_layers` updated; LayerDrop is
    removed. Its `save_pretrained` folder loads with plain `AutoModelFor...from_pretrained`, without
    hf_efficient, and gives the same outputs as the pruned model in memory.

    Args:
        model (`PreTrainedModel`): An encoder of a supported family, usually trained with LayerDrop.
        keep (`int`, `list[int]` or `"every_other"`): The target depth (layers spread evenly, see
            `every_other_layers`), the 0-based indices of the layers to keep, or every other layer.

    Returns:
        `PreTrainedModel`: `model` itself, pruned.
    """
    encoder_family(model)
    num_layers = len(layer_stack(model))
    kept = _layers_to_keep(keep, num_layers)
    _check_reloads_unchanged(model, kept)
    _check_attention_pattern(model.config, kept)
    _prune_layer_types(model.config, kept, num_layers)
    remove_layerdrop(model)
    layers = layer_stack(model)
    replace_layer_stack(model, [layers[i] for i in kept])
    history = recorded_technique(model.config, "pruning")
    original = [history["kept_layers"][i] for i in kept] if history else kept
    total = history["original_num_layers"] if history else num_layers
    record_technique(model, "pruning", {"kept_layers": original, "original_num_layers": total})
    return model


register_restorer("layerdrop", lambda model, settings: apply_layerdrop(model, LayerDropConfig(**settings)))
