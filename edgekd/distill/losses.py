"""Distillation losses, one registry. Each takes (student_logits, teacher_logits, targets, cfg)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from edgekd.config import DistillConfig
from edgekd.registry import Registry

Loss = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor, DistillConfig], torch.Tensor]
losses: Registry[Loss] = Registry("distillation method")


@losses.register("ce")
def cross_entropy(student: torch.Tensor, teacher: torch.Tensor | None, targets: torch.Tensor,
                  cfg: DistillConfig) -> torch.Tensor:
    """Labels only: training from scratch (the embedded teacher, the no-distillation baseline)."""
    return F.cross_entropy(student, targets)


@losses.register("kd")
def hinton_kd(student: torch.Tensor, teacher: torch.Tensor | None, targets: torch.Tensor,
              cfg: DistillConfig) -> torch.Tensor:
    """Hinton et al. 2015: (1 - l) * CE(y, p_s) + l * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)).

    T^2 keeps the soft term's gradient scale independent of the temperature.
    """
    t, lam = cfg.temperature, cfg.kd_weight
    kl = F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), log_target=True,
                  reduction="batchmean")
    return (1 - lam) * F.cross_entropy(student, targets) + lam * t * t * kl
