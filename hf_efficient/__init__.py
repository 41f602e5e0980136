"""hf_efficient: smaller, faster transformer encoders that keep their accuracy."""

from .data import load_default_task, load_text_classification
from .distill import DistillationTrainer, PKDConfig, make_student, pkd_layer_map
from .encoders import UnsupportedModelError, encoder_family, layer_stack, record_layer_outputs
from .export import AccuracyDropError, ExportResult, TextClassifier, export_int8
from .layerdrop import (
    LayerDropCallback,
    LayerDropConfig,
    apply_layerdrop,
    every_other_layers,
    prune_layers,
    remove_layerdrop,
)
from .metrics import load_metric
from .sharing import SharingConfig, share_layers, unshare_layers

__version__ = "0.1.0"

__all__ = [
    "AccuracyDropError",
    "ExportResult",
    "TextClassifier",
    "export_int8",
    "DistillationTrainer",
    "PKDConfig",
    "make_student",
    "pkd_layer_map",
    "LayerDropCallback",
    "LayerDropConfig",
    "UnsupportedModelError",
    "apply_layerdrop",
    "encoder_family",
    "every_other_layers",
    "layer_stack",
    "load_default_task",
    "load_metric",
    "load_text_classification",
    "prune_layers",
    "record_layer_outputs",
    "remove_layerdrop",
    "share_layers",
    "unshare_layers",
    "SharingConfig",
]
