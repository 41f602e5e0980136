"""What a checkpoint records of how hf_efficient made it.

Each technique writes its settings under one key, `hf_efficient`, of `model.config`, so that
`save_pretrained` stores them in `config.json`, a model card can say how the model was made, and a
technique can be applied again. Nothing is applied on load: `from_pretrained` gives the model that
transformers builds, and a technique that changes the forward pass without changing the weights
(LayerDrop) comes back only when asked (`apply_layerdrop(model)` reads the record).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

from transformers import PretrainedConfig, PreTrainedModel

CONFIG_KEY = "hf_efficient"
# Records of how the layers were trained, with settings per layer (LayerDrop's rates), by technique:
# `(settings, kept layer indices) -> the settings of the kept layers`. A pruned model keeps them, cut to
# its layers; a student, trained anew, drops them (`layers.keep_layers`), live or only recorded.
PER_LAYER_RECORDS: dict[str, Callable[[dict, list[int]], dict]] = {}


def public_name(value: str) -> str:
    """A model or file as a record that may be published names it: a path of this machine (absolute, or one
    that exists here) by its last part; a Hub id, or any other text, as it is."""
    if ("/" in value or "\\" in value) and (Path(value).expanduser().is_absolute() or _exists(value)):
        return Path(value).name
    return value


def _exists(value: str) -> bool:
    try:
        return Path(value).exists()
    except OSError:  # text that cannot be a path here, e.g. a sentence longer than a file name may be
        return False


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
