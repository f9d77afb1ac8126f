"""The training loop shared by distillation and the embedded teacher: in-memory batches, SGD with a
cosine schedule, bf16 autocast on CUDA, a rich progress bar."""

from __future__ import annotations

import math

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from edgekd.config import DistillConfig
from edgekd.distill.losses import losses
from edgekd.errors import StageFailed


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        from edgekd.errors import InputError

        raise InputError("--device cuda: no CUDA device is visible here; use --device auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, device: torch.device, batch: int = 512) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        logits = model(torch.from_numpy(x[i:i + batch]).to(device))
        correct += int((logits.argmax(1).cpu().numpy() == y[i:i + batch]).sum())
    return correct / len(y)


def fit(model: nn.Module, x: np.ndarray, y: np.ndarray, cfg: DistillConfig, device: torch.device, seed: int,
        teacher=None, description: str = "distill") -> nn.Module:
    """Train `model` on (x, y) with the loss `cfg.method` names; `teacher.logits` feeds the soft targets."""
    loss_fn = losses.get(cfg.method)
    torch.manual_seed(seed)
    model.to(device).train()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    steps_per_epoch = math.ceil(len(x) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    gen = torch.Generator().manual_seed(seed)
    use_bf16 = device.type == "cuda"
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.3f}"), TimeRemainingColumn())
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(f"{description} ({cfg.method}, {device.type})", total=cfg.epochs, loss=float("nan"))
        for _ in range(cfg.epochs):
            perm = torch.randperm(len(x), generator=gen)
            running = 0.0
            for i in range(0, len(x), cfg.batch_size):
                idx = perm[i:i + cfg.batch_size]
                xb, yb = xt[idx].to(device, non_blocking=True), yt[idx].to(device, non_blocking=True)
                soft = teacher.logits(xb) if teacher is not None else None
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    loss = loss_fn(model(xb).float(), soft, yb, cfg)
                if not torch.isfinite(loss):
                    raise StageFailed(f"{description}: loss became {loss.item()} at step {sched.last_epoch}; "
                                      "lower --set distill.lr")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                running += loss.item() * len(idx)
            progress.update(task, advance=1, loss=running / len(x))
    return model.eval()
