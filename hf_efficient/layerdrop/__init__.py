"""LayerDrop (Fan et al. 2019): structured dropout of whole layers, then pruning to any depth."""

from ..layers import every_other_layers  # deprecated, kept importable from here
from .callback import LayerDropCallback
from .config import LayerDropConfig
from .model import apply_layerdrop, prune_layers, remove_layerdrop

__all__ = [
    "LayerDropCallback",
    "LayerDropConfig",
    "apply_layerdrop",
    "every_other_layers",
    "prune_layers",
    "remove_layerdrop",
]
