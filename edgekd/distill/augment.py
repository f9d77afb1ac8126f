"""Batch augmentation on the training device, applied once per batch so teacher and student see the same pixels.

Parameters (shift dy, dx and a flip bit per image) are drawn on the CPU from the trainer's generator for the
*global* batch, so every DDP process slices the same draws and a resumed run replays them. With augment_views,
each image gets a fixed table of views instead (FKD style): inputs then repeat exactly and teacher logits can be
cached per (image, view).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgekd.config import DistillConfig


def max_shift_px(cfg: DistillConfig, size: tuple[int, int]) -> int:
    return max(1, round(cfg.augment_shift_fraction * min(size))) if cfg.augment != "none" else 0


def draw(cfg: DistillConfig, n: int, size: tuple[int, int], gen: torch.Generator) -> torch.Tensor:
    """(n, 3) int64: dy, dx in [-s, s] and flip in {0, 1}; all zero without augmentation."""
    s = max_shift_px(cfg, size)
    params = torch.zeros(n, 3, dtype=torch.int64)
    if s:
        params[:, :2] = torch.randint(-s, s + 1, (n, 2), generator=gen)
    if cfg.augment == "shift_flip":
        params[:, 2] = torch.randint(0, 2, (n,), generator=gen)
    return params


def apply(x: torch.Tensor, params: torch.Tensor, max_px: int) -> torch.Tensor:
    """Translate each image by (dy, dx) with zero fill (in 0..1 pixel space, before normalization) and flip it
    horizontally where asked; one gather for the whole batch."""
    if max_px == 0:
        return x
    any_flip = bool(params[:, 2].any()) if params.device.type == "cpu" else True  # decided on the CPU: no sync
    params = params.to(x.device, non_blocking=True)
    n, c, h, w = x.shape
    if any_flip:
        x = torch.where(params[:, 2].bool()[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (max_px, max_px, max_px, max_px))
    rows = (max_px - params[:, 0])[:, None] + torch.arange(h, device=x.device)  # (n, h)
    cols = (max_px - params[:, 1])[:, None] + torch.arange(w, device=x.device)  # (n, w)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]
