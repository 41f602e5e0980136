"""hf_efficient: smaller, faster transformer encoders that keep their accuracy."""

from .data import DataConfig, load_data, load_default_task, load_text_classification
from .distill import DistillationTrainer, PKDConfig, make_student, pkd_layer_map
from .encoders import UnsupportedModelError, encoder_family, layer_stack, record_layer_outputs
from .export import (
    AccuracyDropError,
    ChoiceScorer,
    ExportResult,
    Int8ExportConfig,
    QuestionAnswerer,
    TextClassifier,
    TextEmbedder,
    TokenClassifier,
    export_int8,
)
from .layerdrop import LayerDropCallback, LayerDropConfig, apply_layerdrop, prune_layers, remove_layerdrop
from .layers import evenly_spaced_layers, every_other_layers
from .metrics import load_metric
from .recipe import RecipeError, load_recipe, run_recipe
from .report import Report
from .sharing import SharingConfig, share_layers, unshare_layers

__version__ = "0.1.0"

__all__ = [
    # encoders
    "UnsupportedModelError",
    "encoder_family",
    "layer_stack",
    "record_layer_outputs",
    # choosing layers (shared by pruning and students)
    "evenly_spaced_layers",
    "every_other_layers",  # deprecated name of evenly_spaced_layers
    # LayerDrop
    "LayerDropCallback",
    "LayerDropConfig",
    "apply_layerdrop",
    "prune_layers",
    "remove_layerdrop",
    # distillation
    "DistillationTrainer",
    "PKDConfig",
    "make_student",
    "pkd_layer_map",
    # sharing
    "SharingConfig",
    "share_layers",
    "unshare_layers",
    # export
    "AccuracyDropError",
    "ExportResult",
    "Int8ExportConfig",
    "TextClassifier",
    "TextEmbedder",
    "TokenClassifier",
    "QuestionAnswerer",
    "ChoiceScorer",
    "export_int8",
    # recipes
    "RecipeError",
    "load_recipe",
    "run_recipe",
    # reports
    "Report",
    # data and metrics
    "DataConfig",
    "load_data",
    "load_default_task",
    "load_metric",
    "load_text_classification",
]
