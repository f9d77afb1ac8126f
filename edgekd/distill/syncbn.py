"""BatchNorm whose training statistics span every DDP process, so N processes train the model one process would.

CUDA uses torch's SyncBatchNorm. torch has none for CPU (gloo), so GlooSyncBatchNorm does the same with two
all_reduce calls: forward sums (x, x^2, count) over processes for the global batch mean/variance; backward sums
(dy, dy * x_hat) for the global terms of the gradient. Per-process BatchNorm would otherwise normalize each
process's share with its own statistics and drift from the single-process run.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _SyncBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        dtype, x = x.dtype, x.float()  # statistics in float32 even under autocast
        c = x.shape[1]
        dims = [0, *range(2, x.ndim)]
        stats = torch.cat([x.sum(dims), (x * x).sum(dims), x.new_tensor([x.numel() // c])])
        dist.all_reduce(stats)
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)
        invstd = torch.rsqrt(var + eps)
        shape = (1, c, *([1] * (x.ndim - 2)))
        xhat = (x - mean.view(shape)) * invstd.view(shape)
        ctx.save_for_backward(xhat, weight, invstd)
        ctx.n, ctx.dims, ctx.shape = n, dims, shape
        unbiased = var * n / (n - 1).clamp_min(1)  # what BatchNorm's running_var tracks
        ctx.mark_non_differentiable(mean, unbiased)
        return (xhat * weight.view(shape) + bias.view(shape)).to(dtype), mean, unbiased

    @staticmethod
    def backward(ctx, dy, _dmean, _dvar):
        xhat, weight, invstd = ctx.saved_tensors
        shape, dims = ctx.shape, ctx.dims
        dtype, dy = dy.dtype, dy.float()
        local = torch.cat([dy.sum(dims), (dy * xhat).sum(dims)])
        grad_bias, grad_weight = local.chunk(2)  # this process's share; DDP averages parameter gradients
        total = local.clone()
        dist.all_reduce(total)
        sum_dy, sum_dy_xhat = total.chunk(2)
        dx = (weight * invstd).view(shape) * (dy - (sum_dy / ctx.n).view(shape)
                                              - xhat * (sum_dy_xhat / ctx.n).view(shape))
        return dx.to(dtype), grad_weight.clone(), grad_bias.clone(), None


class GlooSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d with cross-process statistics in training (when torch.distributed is initialized)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()) or not self.affine:
            return super().forward(x)
        y, mean, var = _SyncBatchNorm.apply(x, self.weight, self.bias, self.eps)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean, m)
                self.running_var.lerp_(var, m)
        return y


def convert(module: nn.Module, cuda: bool) -> nn.Module:
    """Every BatchNorm2d in `module` -> its synchronized form (in place below the top; returns the top)."""
    if cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if type(module) is nn.BatchNorm2d:
        new = GlooSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats, device=module.running_mean.device
                                if module.running_mean is not None else None)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, convert(child, cuda))
    return module
