"""LayerDrop in the model: layers that skip themselves in training, and pruning for inference."""

from __future__ import annotations

import functools
import inspect
import random

import torch
from torch import nn
from transformers import PreTrainedModel

from ..encoders import encoder_family, layer_stack
from ..layers import keep_layers
from ..provenance import PER_LAYER_RECORDS, record_technique, recorded_technique
from ..sentence import calling_module, transformers_model
from .config import LayerDropConfig


def _kept_rates(settings: dict, kept: list[int]) -> dict:
    rate = settings["rate"]
    return {**settings, "rate": [rate[i] for i in kept] if isinstance(rate, list) else rate}


PER_LAYER_RECORDS["layerdrop"] = _kept_rates  # a pruned model keeps the rates of its layers


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

    def restore_plain_layers(self, model: nn.Module) -> None:
        """Undo LayerDrop on the whole model (the convention of `hf_efficient.layers.restore_plain_layers`)."""
        remove_layerdrop(model)


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


def _draw_before_forward(schedule: DropSchedule, module: nn.Module, args, kwargs) -> None:
    if module.training:
        schedule.draw()


def apply_layerdrop(model: PreTrainedModel, config: LayerDropConfig | None = None) -> PreTrainedModel:
    """Make the layers of `model` skip themselves at random in training, in place.

    In training each forward skips each layer with its rate; a skipped layer is not computed. In eval
    mode nothing is skipped and outputs equal those of the unchanged model. The config is recorded
    in `model.config`, so that `save_pretrained` keeps it. `from_pretrained` gives back a plain model
    (nothing is applied on load); call `apply_layerdrop(model)` to train it with LayerDrop again, or
    let `LayerDropCallback` do it at the start of training. Use `LayerDropCallback` with a `Trainer`.

    Args:
        model (`PreTrainedModel` or `SentenceTransformer`): An encoder of a supported family, with or
            without a task head, or a SentenceTransformer around one (its encoder changes).
        config (`LayerDropConfig`, *optional*): Rates and seed. When omitted: the LayerDropConfig
            that `model.config` records (a model saved with LayerDrop and reloaded gets its own rates
            and seed back), or `LayerDropConfig()` for a model that records none.

    Returns:
        `PreTrainedModel`: `model` itself.

    Raises:
        `ValueError`: when `config` is omitted and the recorded settings are not a valid LayerDropConfig.

    Example:
        ```python
        >>> from hf_efficient import LayerDropConfig, apply_layerdrop
        >>> model = apply_layerdrop(model, LayerDropConfig(rate=0.2))
        >>> reloaded = apply_layerdrop(AutoModelForSequenceClassification.from_pretrained(folder))  # recorded rates
        ```
    """
    wrapper, model = model, transformers_model(model, "apply_layerdrop")
    if config is None:
        config = recorded_layerdrop(model.config) or LayerDropConfig()
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
    # One draw per forward, before any layer runs, from the module whose call runs the encoder.
    base.layerdrop_hook = calling_module(wrapper).register_forward_pre_hook(
        functools.partial(_draw_before_forward, schedule), with_kwargs=True
    )
    record_technique(model, "layerdrop", config.to_dict())
    return wrapper


def recorded_layerdrop(config) -> LayerDropConfig | None:
    """The `LayerDropConfig` that a model config (as `config.json` stores it) records, or None."""
    settings = recorded_technique(config, "layerdrop")
    if settings is None:
        return None
    try:
        return LayerDropConfig(**settings)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"The model config records LayerDrop settings {settings!r} that are not a LayerDropConfig ({error}); "
            "give the settings: apply_layerdrop(model, LayerDropConfig(rate=..., seed=...))."
        ) from None


def layerdrop_schedule(model: nn.Module) -> DropSchedule | None:
    """The `DropSchedule` of a model that `apply_layerdrop` changed, else None."""
    model = transformers_model(model)
    base = getattr(model, "base_model", model)
    return getattr(base, "layerdrop_schedule", None)


def remove_layerdrop(model: PreTrainedModel) -> PreTrainedModel:
    """Undo `apply_layerdrop` in place: the layers and the config are plain again."""
    wrapper, model = model, transformers_model(model, "remove_layerdrop")
    encoder_family(model)  # a model that could never have had LayerDrop is refused, as everywhere
    base = model.base_model
    if getattr(base, "layerdrop_schedule", None) is None:
        return wrapper
    for layer in layer_stack(model):
        layer.__class__ = layer.layerdrop_original_class
        del layer.layerdrop_schedule, layer.layerdrop_index, layer.layerdrop_family
    base.layerdrop_hook.remove()
    del base.layerdrop_schedule, base.layerdrop_hook
    record_technique(model, "layerdrop", None)
    return wrapper


def prune_layers(model: PreTrainedModel, keep: int | list[int] | str) -> PreTrainedModel:
    """Keep only some layers of `model`, in place, and return it as a plain transformers model.

    The result has the same class, fewer layers and `num_hidden_layers` updated; LayerDrop is
    removed from the layers, and config.json keeps its settings for the kept layers (how they were
    trained; `apply_layerdrop(model)` restores them). Its `save_pretrained` folder loads with plain
    `AutoModelFor...from_pretrained`, without hf_efficient, and gives the same outputs as the pruned
    model in memory. The cut itself is `hf_efficient.layers.keep_layers`, which PKD students share.

    Args:
        model (`PreTrainedModel` or `SentenceTransformer`): An encoder of a supported family, usually
            trained with LayerDrop; a SentenceTransformer is pruned in its encoder and stays one.
        keep (`int`, `list[int]` or `"every_other"`): The target depth (layers spread evenly, see
            `evenly_spaced_layers`), the 0-based indices of the layers to keep, or every other layer.

    Returns:
        `PreTrainedModel`: `model` itself, pruned.
    """
    call = f"prune_layers(keep={keep!r})"
    keep_layers(transformers_model(model, "prune_layers"), keep, call=call, technique="pruning")
    return model
