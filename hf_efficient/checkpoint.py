"""How a checkpoint remembers what hf_efficient did to it.

Each technique writes its settings under one key, `hf_efficient`, of `model.config`, so that
`save_pretrained` stores them in `config.json` and a model card can read how the model was made.
Techniques that change the forward pass without changing the weights (LayerDrop) register a
restorer: with hf_efficient imported, `from_pretrained` re-applies them.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

from transformers import PretrainedConfig, PreTrainedModel

CONFIG_KEY = "hf_efficient"

_RESTORERS: dict[str, Callable[[PreTrainedModel, dict], Any]] = {}


def record_technique(model: PreTrainedModel, technique: str, settings: dict | None) -> None:
    """Store `settings` for `technique` in `model.config` (or remove them when `settings` is None)."""
    record = copy.deepcopy(getattr(model.config, CONFIG_KEY, None) or {})
    if settings is None:
        record.pop(technique, None)
    else:
        record[technique] = settings
    setattr(model.config, CONFIG_KEY, record)


def recorded_technique(config: PretrainedConfig, technique: str) -> dict | None:
    """Return the settings stored for `technique` in `config`, or None."""
    return (getattr(config, CONFIG_KEY, None) or {}).get(technique)


def register_restorer(technique: str, restore: Callable[[PreTrainedModel, dict], Any]) -> None:
    """Make `from_pretrained` call `restore(model, settings)` when a config records `technique`."""
    _RESTORERS[technique] = restore


def _restore_techniques(model: PreTrainedModel) -> None:
    for technique, restore in _RESTORERS.items():
        settings = recorded_technique(model.config, technique)
        if settings is not None:
            restore(model, settings)


def _install_from_pretrained_hook() -> None:
    # PEFT needs its own loader for this; wrapping the one classmethod every Auto class ends in
    # lets plain `AutoModelFor...from_pretrained` restore LayerDrop with no new entry point.
    original = PreTrainedModel.from_pretrained.__func__
    if getattr(original, "_hf_efficient", False):
        return

    @functools.wraps(original)
    def from_pretrained(cls, *args, **kwargs):
        loaded = original(cls, *args, **kwargs)
        # `output_loading_info=True` returns (model, info).
        _restore_techniques(loaded[0] if isinstance(loaded, tuple) else loaded)
        return loaded

    from_pretrained._hf_efficient = True
    PreTrainedModel.from_pretrained = classmethod(from_pretrained)


_install_from_pretrained_hook()
