"""Training-free scores of an untrained candidate on one minibatch; higher is better. One registry."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from edgekd.registry import Registry

Score = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor | None], float]
scores: Registry[Score] = Registry("search score")


@scores.register("nwot")
def nwot(model: nn.Module, x: torch.Tensor, y: torch.Tensor, teacher_logits: torch.Tensor | None) -> float:
    """Mellor et al. 2021 (NASWOT): log|K_H| of the Hamming-similarity kernel of ReLU on/off codes.

    Networks whose activation patterns tell the samples apart at initialization train better.
    """
    n = x.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def hook(_m, _inp, out):
        codes = (out.detach().reshape(n, -1) > 0).double()
        kernel.add_(codes @ codes.T + (1 - codes) @ (1 - codes).T)

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return float(torch.linalg.slogdet(kernel)[1])


@scores.register("params")
def params(model: nn.Module, x: torch.Tensor, y: torch.Tensor, teacher_logits: torch.Tensor | None) -> float:
    """Parameter count: the naive baseline every proxy must beat."""
    return float(sum(p.numel() for p in model.parameters()))
