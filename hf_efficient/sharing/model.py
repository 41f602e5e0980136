"""Cross-layer parameter sharing on any supported encoder, stored once on disk.

A shared model keeps its class's code: the layers stay distinct modules (with their own attributes,
e.g. ModernBERT's attention type) whose parameters in scope are the same `nn.Parameter` objects.
Its class becomes `Shared<Class>`: `state_dict()` lists each shared tensor once under its first
layer's name, `save_pretrained` writes the config with model type `hf-efficient-shared-<type>`
(which plain transformers refuses instead of loading independent random layers), and
`tie_weights()`, which `from_pretrained` calls after loading, ties the layers again.
"""

from __future__ import annotations

import dataclasses
import functools

import torch
from torch import nn
from transformers import CONFIG_MAPPING, AutoConfig, PreTrainedModel
from transformers.models.auto import modeling_auto

from ..encoders import FAMILIES, encoder_family, layer_stack
from ..provenance import record_technique, recorded_technique
from ..sentence import transformers_model
from .config import SharingConfig

MODEL_TYPE_PREFIX = "hf-efficient-shared-"
# Every Auto model class of the installed transformers: the heads a family has differ between
# families and between transformers versions, and each of them should load a shared checkpoint.
AUTO_CLASSES = tuple(
    cls for name, cls in vars(modeling_auto).items() if name.startswith("AutoModel") and hasattr(cls, "_model_mapping")
)


def _layers_prefix(model: nn.Module) -> str:
    stack = layer_stack(model)
    return next(name for name, module in model.named_modules() if module is stack) + "."


def sharing_plan(model: PreTrainedModel, config: SharingConfig) -> dict[str, str]:
    """Which parameters become which: `{alias name: owner name}`, full names in `model`.

    Within each group, a parameter in scope is owned by the first layer that has it with that shape
    (ModernBERT's first layer has no attention norm, so layer 1 owns the group's).
    """
    family = encoder_family(model)
    layers = layer_stack(model)
    size = config.group_size(len(layers))
    prefix = _layers_prefix(model)
    plan = {}
    for start in range(0, len(layers), size):
        group = range(start, start + size)
        params = {i: dict(layers[i].named_parameters(remove_duplicate=False)) for i in group}
        names = list(dict.fromkeys(name for i in group for name in params[i]))
        for name in names:
            if config.scope != "all" and family.is_attention_parameter(name) != (config.scope == "attention"):
                continue
            holders = [i for i in group if name in params[i]]
            shape = params[holders[0]][name].shape
            holders = [i for i in holders if params[i][name].shape == shape]
            for i in holders[1:]:
                plan[f"{prefix}{i}.{name}"] = f"{prefix}{holders[0]}.{name}"
    return plan


def _tie(model: nn.Module, plan: dict[str, str]) -> None:
    for alias, owner in plan.items():
        module_name, _, parameter_name = alias.rpartition(".")
        setattr(model.get_submodule(module_name), parameter_name, model.get_parameter(owner))


@torch.no_grad()
def _initialize(model: nn.Module, plan: dict[str, str], config: SharingConfig) -> None:
    if config.init == "first":
        return
    prefix = _layers_prefix(model)
    size = config.group_size(len(layer_stack(model)))
    if config.init_layer is not None and config.init_layer >= size:
        raise ValueError(f"SharingConfig(init_layer={config.init_layer}): each group has only {size} layers.")
    members: dict[str, list[str]] = {}
    for alias, owner in plan.items():
        members.setdefault(owner, [owner]).append(alias)
    for owner, names in members.items():
        if config.init == "mean":
            value = torch.stack([model.get_parameter(n) for n in names]).mean(dim=0)
        else:
            layer = int(owner[len(prefix) :].split(".")[0]) // size * size + config.init_layer
            chosen = [n for n in names if n.startswith(f"{prefix}{layer}.")]
            value = model.get_parameter(chosen[0]) if chosen else model.get_parameter(owner)
        model.get_parameter(owner).copy_(value)


class SharedLayersModel:
    """Mixin in front of a model class whose layers share parameters (see the module docstring)."""

    sharing_plan: dict[str, str]

    def __init__(self, config, *args, **kwargs):
        # Building from a shared config (as `from_pretrained` does): tie the layers again.
        super().__init__(config, *args, **kwargs)
        self.sharing_plan = sharing_plan(self, SharingConfig(**recorded_technique(config, "sharing")))
        _tie(self, self.sharing_plan)

    def state_dict(self, *args, **kwargs):
        state = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", "")
        for alias in getattr(self, "sharing_plan", {}):
            state.pop(prefix + alias, None)
        return state

    def save_pretrained(self, *args, **kwargs):
        # The config object may be shared with other models, so its class changes only while saving.
        plain_class = getattr(type(self.config), "plain_class", type(self.config))
        self.config.__class__ = _shared_config_class(plain_class)
        try:
            return super().save_pretrained(*args, **kwargs)
        finally:
            self.config.__class__ = plain_class

    def prepare_layer_cut(self, kept: list[int], call: str):
        """Refuse a cut to layers `kept` that would leave groups of unequal size; else return what
        makes the cut model's sharing its own (the convention of `hf_efficient.layers.keep_layers`).

        A group keeps its kept layers, still sharing; a group left with one layer shares nothing.
        """
        config = SharingConfig(**recorded_technique(self.config, "sharing"))
        size = config.group_size(len(layer_stack(self)))
        counts = [sum(1 for i in kept if i // size == group) for group in dict.fromkeys(i // size for i in kept)]
        if len(set(counts)) > 1:
            raise ValueError(
                f"{call}: layers {kept} keep {counts} layers of the groups that share weights ({size} layers "
                "each, in order), and shared groups must be equal: keep as many layers of each group, or call "
                "unshare_layers(model) first."
            )
        if counts[0] == 1:  # one layer per group: nothing is shared any more
            return lambda: _make_plain(self)
        cut = dataclasses.replace(config, num_groups=len(counts))  # init: how the shared weights started

        def follow() -> None:
            self.sharing_plan = sharing_plan(self, cut)
            record_technique(self, "sharing", cut.to_dict())

        return follow

    def tie_weights(self, *args, **kwargs):
        result = super().tie_weights(*args, **kwargs)
        _tie(self, getattr(self, "sharing_plan", {}))
        return result


@functools.cache
def _shared_config_class(config_class: type) -> type:
    attributes = {"model_type": MODEL_TYPE_PREFIX + config_class.model_type, "plain_class": config_class}
    return type(f"Shared{config_class.__name__}", (config_class,), attributes)


@functools.cache
def _shared_model_class(model_class: type) -> type:
    attributes = {"config_class": _shared_config_class(model_class.config_class), "plain_class": model_class}
    return type(f"Shared{model_class.__name__}", (SharedLayersModel, model_class), attributes)


def register_shared_model_type(model_type: str) -> None:
    """Let Auto classes load shared checkpoints of `model_type` (done at import for every type of `FAMILIES`)."""
    base_config = CONFIG_MAPPING[model_type]
    shared_config = _shared_config_class(base_config)
    AutoConfig.register(shared_config.model_type, shared_config, exist_ok=True)
    for auto_class in AUTO_CLASSES:
        if base_config in auto_class._model_mapping:  # the family has this head
            auto_class.register(
                shared_config, _shared_model_class(auto_class._model_mapping[base_config]), exist_ok=True
            )


def share_layers(model: PreTrainedModel, config: SharingConfig | None = None) -> PreTrainedModel:
    """Make the layers of `model` share parameters, ALBERT-style, in place.

    Works before fine-tuning, as the student of `DistillationTrainer`, and with LayerDrop. The
    shared weights stay one tensor through training; `save_pretrained` writes each once and
    `AutoModelFor...from_pretrained` (with hf_efficient imported) restores the sharing.

    Args:
        model (`PreTrainedModel` or `SentenceTransformer`): An encoder of a supported family, or a
            SentenceTransformer around one (its saved folder then loads with hf_efficient imported).
        config (`SharingConfig`, *optional*): Groups, scope and init; `SharingConfig()` shares all
            parameters of all layers, starting from the first layer.

    Returns:
        `PreTrainedModel`: `model` itself, now of class `Shared<Class>`.
    """
    config = SharingConfig() if config is None else config
    if not isinstance(config, SharingConfig):
        raise TypeError(f"share_layers(config={config!r}): expected a SharingConfig.")
    wrapper, model = model, transformers_model(model, "share_layers")
    encoder_family(model)
    if isinstance(model, SharedLayersModel):
        raise ValueError("share_layers: this model's layers are already shared; call unshare_layers(model) first.")
    plan = sharing_plan(model, config)
    _initialize(model, plan, config)
    _tie(model, plan)
    register_shared_model_type(model.config.model_type)
    model.__class__ = _shared_model_class(type(model))
    model.sharing_plan = plan
    record_technique(model, "sharing", config.to_dict())
    return wrapper


def unshare_layers(model: PreTrainedModel) -> PreTrainedModel:
    """Give every layer its own copy of the shared weights, in place: a plain model of the base class."""
    wrapper, model = model, transformers_model(model, "unshare_layers")
    if not isinstance(model, SharedLayersModel):
        return wrapper
    with torch.no_grad():
        for alias in model.sharing_plan:
            module_name, _, parameter_name = alias.rpartition(".")
            copy = nn.Parameter(model.get_parameter(alias).detach().clone())
            setattr(model.get_submodule(module_name), parameter_name, copy)
    _make_plain(model)
    return wrapper


def _make_plain(model: SharedLayersModel) -> None:
    """The plain class and config of a model whose layers no longer share anything."""
    model.__class__ = model.plain_class
    model.config.__class__ = getattr(type(model.config), "plain_class", type(model.config))
    model.config.__dict__.pop("model_type", None)  # a loaded config may hold the shared type itself
    del model.sharing_plan
    record_technique(model, "sharing", None)


def shared_parameter_groups(model: nn.Module) -> list[list[str]]:
    """Names that point at one tensor, one list per shared tensor (empty for an unshared model)."""
    groups: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(parameter), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


# Registered at import, so that `AutoModelFor...from_pretrained` loads the shared checkpoint of any
# model type the encoder families name. Types this transformers version lacks are skipped: nomic_bert
# is in transformers from 5.x; before, it exists only as remote code, which has no Auto mapping.
for _model_type in (model_type for family in FAMILIES for model_type in family.model_types):
    if _model_type in CONFIG_MAPPING:
        register_shared_model_type(_model_type)
