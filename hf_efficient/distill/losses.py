from __future__ import annotations

import torch
import torch.nn.functional as F

from ..tasks import softmax_kl_rows


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(teacher/T || student/T), averaged over the batch (Hinton et al.'s scaling): the
    single-label divergence of `hf_efficient.tasks` on two logit tensors."""
    return softmax_kl_rows(student_logits, teacher_logits, temperature).mean()


def patient_loss(student_cls: torch.Tensor, teacher_cls: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Mean squared difference of [CLS] vectors of matched layers, both `(batch, layers, hidden)`."""
    student_cls, teacher_cls = student_cls.float(), teacher_cls.float()
    if normalize:
        student_cls, teacher_cls = F.normalize(student_cls, dim=-1), F.normalize(teacher_cls, dim=-1)
    return F.mse_loss(student_cls, teacher_cls)
