"""Choosing layers of an encoder and keeping only those: what LayerDrop pruning and PKD students share.

`prune_layers` (after LayerDrop) and `make_student` (before distillation) both cut a model down to
some of its layers; this module is the one implementation of that cut, so that neither technique
imports the other.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedModel

from .encoders import layer_stack, replace_layer_stack
from .provenance import PER_LAYER_RECORDS, record_technique, recorded_technique

# The config.json record of which original layers a model kept (by pruning or as a student).
LAYERS_RECORD = "layers"


def evenly_spaced_layers(num_layers: int, depth: int) -> list[int]:
    """Indices of `depth` layers spread evenly over `num_layers`, starting at layer 0.

    At half the depth this is the "every other" rule (0, 2, 4, ... as in fairseq's
    `--encoder-layers-to-keep`) that the LayerDrop paper found best for pruning, and PKD-Skip's
    student initialisation; other depths spread the gaps (6 -> 4 keeps 0, 1, 3, 4).
    """
    for name, value in (("num_layers", num_layers), ("depth", depth)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"evenly_spaced_layers({name}={value!r}): a whole number of layers, 1 or more.")
    if depth > num_layers:
        raise ValueError(
            f"evenly_spaced_layers(num_layers={num_layers}, depth={depth}): cannot keep more layers than there are; "
            f"give a depth of at most {num_layers}."
        )
    return [i * num_layers // depth for i in range(depth)]


def every_other_layers(num_layers: int, depth: int) -> list[int]:
    """Deprecated name of `evenly_spaced_layers`: the layers are every other one only at half depth."""
    warnings.warn(
        "every_other_layers is deprecated: use hf_efficient.evenly_spaced_layers, which returns the same layers.",
        FutureWarning,
        stacklevel=2,
    )
    return evenly_spaced_layers(num_layers, depth)


def restore_plain_layers(model: nn.Module) -> None:
    """Undo, in place, any technique that gave the layers of `model` a class of its own.

    The one convention between techniques, so that none imports another: a technique that changes
    what the layers compute by putting a subclass in front of their class (LayerDrop does) gives that
    subclass a method `restore_plain_layers(model)` that undoes it on the whole model: the layers'
    classes, its hooks and its record in the config. Code that hands back a plain transformers
    model (a pruned model, a student) calls this function and knows no technique.
    """
    for layer in layer_stack(model):
        restore = getattr(layer, "restore_plain_layers", None)
        if restore is not None:
            restore(model)


def _layers_to_keep(keep, num_layers: int, call: str) -> list[int]:
    keep = keep.tolist() if hasattr(keep, "tolist") else keep  # a numpy array or integer
    if isinstance(keep, Sequence) and not isinstance(keep, str):
        keep = [i.tolist() if hasattr(i, "tolist") else i for i in keep]
    if keep == "every_other":
        return list(range(0, num_layers, 2))
    if isinstance(keep, int) and not isinstance(keep, bool):
        if not 1 <= keep <= num_layers:
            raise ValueError(f"{call}: the depth must be between 1 and {num_layers}.")
        return evenly_spaced_layers(num_layers, keep)
    if isinstance(keep, Sequence) and not isinstance(keep, str):
        keep = list(keep)
        if not keep:
            raise ValueError(f"{call}: keep at least one layer.")
        bad = [i for i in keep if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < num_layers]
        if bad:
            raise ValueError(f"{call}: indices {bad} are not layers of this {num_layers}-layer model.")
        if len(set(keep)) != len(keep):
            raise ValueError(f"{call}: an index appears twice; each layer can be kept once.")
        if keep != sorted(keep):
            raise ValueError(f"{call}: list the layers in increasing order ({sorted(keep)}).")
        return keep
    raise ValueError(f"{call}: give a depth (int), a list of layer indices, or 'every_other'.")


# Config settings that hold one value per layer: transformers 5's attention types, Longformer's attention windows.
PER_LAYER_SETTINGS = ("layer_types", "attention_window")


def _prune_per_layer_settings(config, kept: list[int], num_layers: int) -> None:
    """Keep the per-layer settings of `PER_LAYER_SETTINGS` with their layers."""
    for name in PER_LAYER_SETTINGS:
        values = getattr(config, name, None)
        if isinstance(values, (list, tuple)) and len(values) == num_layers:
            setattr(config, name, [values[i] for i in kept])


def _check_attention_pattern(config, kept: list[int], call: str) -> None:
    every = getattr(config, "global_attn_every_n_layers", None)
    if config.model_type != "modernbert" or not every or getattr(config, "layer_types", None):
        return
    # transformers 4.x derives each ModernBERT layer's attention (global or sliding) from its
    # position, so the kept layers must fall on the same pattern to reload as they are.
    if [i % every == 0 for i in kept] != [i % every == 0 for i in range(len(kept))]:
        raise ValueError(
            f"{call}: on this transformers version a ModernBERT layer's attention (global every {every} "
            f"layers) follows its position, so layers {kept} would reload with different attention. Keep "
            "layers whose global/sliding pattern matches, or use transformers>=5, which stores `layer_types` "
            "in the config."
        )


def _check_reloads_unchanged(model: PreTrainedModel, kept: list[int], call: str) -> None:
    """Refuse a cut whose checkpoint a fresh model of the cut config could not load as it is."""
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = len(kept)
    _prune_per_layer_settings(config, kept, len(layer_stack(model)))
    with torch.device("meta"):  # a technique's own model class names its plain one (see keep_layers)
        fresh = getattr(type(model), "plain_class", type(model))(config)
    prefix = next(name for name, module in model.named_modules() if module is layer_stack(model)) + "."
    renumber = {str(old): str(new) for new, old in enumerate(kept)}
    pruned = {}
    # Every parameter under each of its names: a shared model's own state_dict lists a shared one once.
    for name, tensor in nn.Module.state_dict(model).items():
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
            f"{call}: a {type(model).__name__} with layers {kept} would not reload as it is (parameters that "
            f"differ from a fresh model: {differing[:4]}). Some families build their first layer differently "
            "(ModernBERT has no attention norm in layer 0): keep layer 0."
        )


def keep_layers(
    model: PreTrainedModel, keep: int | list[int] | str, call: str | None = None, technique: str | None = None
) -> PreTrainedModel:
    """Keep only some layers of `model`, in place, as a plain transformers model, and record which.

    Everything is checked before the model changes: the result has the same class, fewer layers and
    `num_hidden_layers` updated, and its `save_pretrained` folder loads unchanged with plain
    `AutoModelFor...from_pretrained`. Techniques on the layers are undone (`restore_plain_layers`).
    The config records the kept layers as indices of the original model under "layers", so cuts
    compose; `technique` (e.g. "pruning") records the same under that technique's name too. A PKD
    student's layer choice is provenance, not a technique the report and the card should list.

    Args:
        model (`PreTrainedModel`): An encoder of a supported family.
        keep (`int`, `list[int]` or `"every_other"`): A depth (layers from `evenly_spaced_layers`),
            0-based indices of the layers to keep, or every other layer.
        call (`str`, *optional*): How the user's call reads in error messages, e.g. "prune_layers(keep=5)".
        technique (`str`, *optional*): Also record the cut as this technique.

    Returns:
        `PreTrainedModel`: `model` itself.
    """
    call = call or f"keep_layers(keep={keep!r})"
    num_layers = len(layer_stack(model))
    kept = _layers_to_keep(keep, num_layers, call)
    _check_reloads_unchanged(model, kept, call)
    _check_attention_pattern(model.config, kept, call)
    # A technique that gives the whole model a class of its own (sharing does) names the plain class
    # (`plain_class`) and has a method `prepare_layer_cut(kept, call)`: it refuses a cut it cannot
    # follow, before anything changes, and returns what to do once the layers are cut.
    prepare = getattr(model, "prepare_layer_cut", None)
    follow_cut = prepare(kept, call) if prepare else None
    trained = {name: recorded_technique(model.config, name) for name in PER_LAYER_RECORDS} if technique else {}
    restore_plain_layers(model)
    for name, cut in PER_LAYER_RECORDS.items():  # a pruned model's layers were trained so; a student's will not be
        record_technique(model, name, cut(trained[name], kept) if trained.get(name) else None)
    _prune_per_layer_settings(model.config, kept, num_layers)
    layers = layer_stack(model)
    replace_layer_stack(model, [layers[i] for i in kept])
    if follow_cut:
        follow_cut()
    history = recorded_technique(model.config, LAYERS_RECORD) or recorded_technique(model.config, "pruning")
    original = [history["kept_layers"][i] for i in kept] if history else kept
    total = history["original_num_layers"] if history else num_layers
    record = {"kept_layers": original, "original_num_layers": total}
    record_technique(model, LAYERS_RECORD, record)
    if technique:
        record_technique(model, technique, dict(record))
    return model
