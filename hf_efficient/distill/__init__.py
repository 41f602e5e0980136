"""Patient Knowledge Distillation (Sun et al. 2019): PKD-Skip, PKD-Last and plain logit KD."""

from .config import PKDConfig, pkd_layer_map
from .embedding import EmbeddingDistillationLoss
from .losses import patient_loss, soft_target_loss
from .student import make_student
from .trainer import DistillationTrainer

__all__ = [
    "DistillationTrainer",
    "EmbeddingDistillationLoss",
    "PKDConfig",
    "make_student",
    "patient_loss",
    "pkd_layer_map",
    "soft_target_loss",
]
