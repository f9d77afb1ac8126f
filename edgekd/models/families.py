"""Parametric network families built from torchvision's blocks.

A candidate is a small JSON-able dict (`{"family": "resnet", "widths": [...], ...}`) that rebuilds the
same network for a given input size, channel and class count, so search.json and checkpoints can store
it. Downsampling adapts to the input size: 8x8 digits keep their resolution, 224x224 photos are
reduced 32x as in the ImageNet originals.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.resnet import BasicBlock
from torchvision.ops.misc import Conv2dNormActivation

from edgekd.errors import InputError
from edgekd.registry import Registry

families: Registry[Callable[..., nn.Module]] = Registry("search space")


class ConvNet(nn.Module):
    """features -> global average pool -> linear classifier.

    `features` ends at the last feature map and `classifier` is one Linear, so distillation taps and
    Grad-CAM style scores find the penultimate features and class weights by name in every family.
    """

    def __init__(self, features: nn.Sequential, feature_channels: int, num_classes: int):
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(feature_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def downsample_steps(input_size: tuple[int, int], max_steps: int) -> int:
    """Number of stride-2 layers that leaves a final feature map of at least 4x4 (at most max_steps)."""
    return max(0, min(max_steps, int(math.log2(max(1, min(input_size) // 4)))))


def stride_plan(default: list[int], input_size: tuple[int, int]) -> list[int]:
    """Keep the *last* stride-2 positions of `default` that the input size allows; early layers keep resolution."""
    steps = downsample_steps(input_size, sum(s == 2 for s in default))
    plan, kept = [1] * len(default), 0
    for i in reversed(range(len(default))):
        if default[i] == 2 and kept < steps:
            plan[i], kept = 2, kept + 1
    return plan


def _round8(c: float) -> int:
    return max(8, int(c + 4) // 8 * 8)


@families.register("resnet")
def resnet(arch: dict, in_channels: int, num_classes: int, input_size: tuple[int, int]) -> nn.Module:
    """ResNet-style: a 3x3 stem, then stages of torchvision BasicBlocks with the given widths and depths."""
    widths, blocks = list(arch["widths"]), list(arch["blocks"])
    if len(widths) != len(blocks) or not widths:
        raise InputError(f"resnet arch {arch}: 'widths' and 'blocks' need the same non-zero length")
    strides = stride_plan([2] + [1] + [2] * (len(widths) - 1), input_size)  # stem, stage 1, stages 2..
    layers: list[nn.Module] = [Conv2dNormActivation(in_channels, widths[0], 3, stride=strides[0])]
    c_in = widths[0]
    for width, depth, stride in zip(widths, blocks, strides[1:], strict=True):
        for i in range(depth):
            s = stride if i == 0 else 1
            down = None
            if s != 1 or c_in != width:
                down = nn.Sequential(nn.Conv2d(c_in, width, 1, stride=s, bias=False), nn.BatchNorm2d(width))
            layers.append(BasicBlock(c_in, width, stride=s, downsample=down))
            c_in = width
    return ConvNet(nn.Sequential(*layers), c_in, num_classes)


# torchvision's MobileNetV2 setting: expansion t, channels c, repeats n, stride s
_MBV2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


@families.register("mobilenetv2")
def mobilenetv2(arch: dict, in_channels: int, num_classes: int, input_size: tuple[int, int]) -> nn.Module:
    """MobileNetV2 from torchvision's InvertedResidual blocks; width, depth and expansion multipliers."""
    width, depth, expand = float(arch["width"]), float(arch["depth"]), float(arch.get("expand", 6))
    last = int(arch.get("last_channel", 1280 * max(1.0, width)))
    strides = stride_plan([2] + [s for *_, s in _MBV2], input_size)
    act = partial(nn.ReLU6, inplace=True)
    c_in = _round8(32 * width)
    layers: list[nn.Module] = [Conv2dNormActivation(in_channels, c_in, 3, stride=strides[0], activation_layer=act)]
    for (t, c, n, _), stride in zip(_MBV2, strides[1:], strict=True):
        c_out = _round8(c * width)
        for i in range(max(1, round(n * depth))):
            ratio = t if t == 1 else expand
            layers.append(InvertedResidual(c_in, c_out, stride if i == 0 else 1, ratio))
            c_in = c_out
    layers.append(Conv2dNormActivation(c_in, _round8(last), 1, activation_layer=act))
    return ConvNet(nn.Sequential(*layers), _round8(last), num_classes)


def create_model(arch: dict, in_channels: int, num_classes: int, input_size: tuple[int, int]) -> nn.Module:
    """Build the network an arch dict describes (the one way every stage does it)."""
    try:
        builder = families.get(arch["family"])
        return builder(arch, in_channels, num_classes, tuple(input_size))
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"arch {arch}: cannot build it ({e!r})") from None


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
