"""Batch augmentation on the training device, applied once per batch so teacher and student see the same pixels.

Parameters (shift dy, dx and a flip bit per image) are drawn on the CPU from the trainer's generator for the
*global* batch, so every DDP process slices the same draws and a resumed run replays them. With augment_views,
each image gets a fixed table of views instead (FKD style): inputs then repeat exactly and teacher logits can be
cached per (image, view). Mixing (mixup / cutmix) follows the shift and flip, on the same batch.
"""

from __future__ import annotations

import math

import numpy as np
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


def draw_mix(cfg: DistillConfig, gen: torch.Generator) -> tuple[str, float, int] | None:
    """One batch's mixing (Beyer et al. 2022, function matching): the kind ('mixup' or 'cutmix'), the share
    lam >= 0.5 of the first image and a roll k >= 1 that picks each image's partner; None when not mixing.
    Under DDP each process pairs images within its own share of the batch (no exchange of pixels), so partners
    differ from a single-process run's while the kind, share and box are the same.

    Drawn on the CPU for the whole batch, as a few scalars, so every DDP process draws the same (and a resumed
    run replays them) whatever its share of the batch."""
    if cfg.mix == "none":
        return None
    kind = cfg.mix if cfg.mix != "mixup_cutmix" else ("mixup", "cutmix")[int(torch.randint(2, (1,), generator=gen))]
    # numpy's Beta sampler, seeded from the trainer's generator: the generator stays the only randomness
    seed = int(torch.randint(1 << 62, (1,), generator=gen))
    lam = float(np.random.default_rng(seed).beta(cfg.mix_alpha, cfg.mix_alpha))
    k = int(torch.randint(1, 1 << 30, (1,), generator=gen))
    return kind, max(lam, 1 - lam), k


def mix(x: torch.Tensor, spec: tuple[str, float, int]) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mix each image with its partner (the batch rolled by k): mixup blends the pixels, cutmix pastes a box of
    the partner covering 1 - lam of the area (lam is then the exact kept share). One op over the whole batch on
    the device. Returns the mixed batch, the partner index per image and the first image's share."""
    kind, lam, k = spec
    n, _, h, w = x.shape
    partner = (torch.arange(n, device=x.device) + k % max(n, 1)) % n
    if n < 2:
        return x, partner, 1.0
    other = x[partner]
    if kind == "mixup":
        return x * lam + other * (1 - lam), partner, lam
    cut = math.sqrt(1 - lam)
    bh, bw = round(h * cut), round(w * cut)
    top, left = (k // 7) % (h - bh + 1), (k // 13) % (w - bw + 1)  # box position from the same draw
    out = x.clone()
    out[:, :, top:top + bh, left:left + bw] = other[:, :, top:top + bh, left:left + bw]
    return out, partner, 1 - bh * bw / (h * w)
