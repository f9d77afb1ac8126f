"""Parametric network families built from torchvision's blocks: resnet (BasicBlock / Bottleneck),
mobilenetv2 (InvertedResidual), mobilenetv3 (InvertedResidualConfig + InvertedResidual, with kernel,
expansion and squeeze-excitation per stage), and the full-size bodies of known torchvision teachers in
these terms (torchvision_arch), which the "shrunk teacher" search space scales down.

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
from torchvision.models._utils import _make_divisible
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.mobilenetv3 import InvertedResidual as MBV3Block
from torchvision.models.mobilenetv3 import InvertedResidualConfig, _mobilenet_v3_conf
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops.misc import Conv2dNormActivation

from edgekd.errors import InputError
from edgekd.registry import Registry

# The network builders an arch's "family" names; a search space (edgekd/search/spaces.py) samples the archs
# of one family. register_family / create_model / list_families, as timm's registry.
_families: Registry[Callable[..., nn.Module]] = Registry("model family")
register_family = _families.register
list_families = _families.names


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


def round8(c: float) -> int:
    return max(8, int(c + 4) // 8 * 8)


_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


@register_family("resnet")
def resnet(arch: dict, in_channels: int, num_classes: int, input_size: tuple[int, int]) -> nn.Module:
    """ResNet-style: a 3x3 stem, then stages of torchvision BasicBlocks (or Bottlenecks, `"block":
    "bottleneck"`, whose output is 4x `widths`) with the given widths and depths per stage."""
    widths, blocks = list(arch["widths"]), list(arch["blocks"])
    if len(widths) != len(blocks) or not widths or min(blocks) < 1 or min(widths) < 1:
        raise ValueError("'widths' and 'blocks' need the same non-zero length and positive values")
    block = _BLOCKS[arch.get("block", "basic")]
    base_width = int(arch.get("base_width", 64))  # torchvision's wide_resnet*_2 use 128
    strides = stride_plan([2] + [1] + [2] * (len(widths) - 1), input_size)  # stem, stage 1, stages 2..
    stem = int(arch.get("stem", widths[0]))
    layers: list[nn.Module] = [Conv2dNormActivation(in_channels, stem, 3, stride=strides[0])]
    c_in = stem
    for width, depth, stride in zip(widths, blocks, strides[1:], strict=True):
        c_out = width * block.expansion
        for i in range(depth):
            s = stride if i == 0 else 1
            down = None
            if s != 1 or c_in != c_out:
                down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=s, bias=False), nn.BatchNorm2d(c_out))
            extra = {"base_width": base_width} if block is Bottleneck else {}
            layers.append(block(c_in, width, stride=s, downsample=down, **extra))
            c_in = c_out
    return ConvNet(nn.Sequential(*layers), c_in, num_classes)


# torchvision's MobileNetV2 setting: expansion t, channels c, repeats n, stride s
_MBV2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


@register_family("mobilenetv2")
def mobilenetv2(arch: dict, in_channels: int, num_classes: int, input_size: tuple[int, int]) -> nn.Module:
    """MobileNetV2 from torchvision's InvertedResidual blocks; width, depth and expansion multipliers."""
    width, depth, expand = float(arch["width"]), float(arch["depth"]), float(arch.get("expand", 6))
    if width <= 0 or depth <= 0 or expand < 1:
        raise ValueError("'width' and 'depth' must be > 0 and 'expand' >= 1")
    last = int(arch.get("last_channel", 1280 * max(1.0, width)))
    strides = stride_plan([2] + [s for *_, s in _MBV2], input_size)
    act = partial(nn.ReLU6, inplace=True)
    c_in = round8(32 * width)
    layers: list[nn.Module] = [Conv2dNormActivation(in_channels, c_in, 3, stride=strides[0], activation_layer=act)]
    for (t, c, n, _), stride in zip(_MBV2, strides[1:], strict=True):
        c_out = round8(c * width)
        for i in range(max(1, round(n * depth))):
            ratio = t if t == 1 else expand
            layers.append(InvertedResidual(c_in, c_out, stride if i == 0 else 1, ratio))
            c_in = c_out
    layers.append(Conv2dNormActivation(c_in, round8(last), 1, activation_layer=act))
    return ConvNet(nn.Sequential(*layers), round8(last), num_classes)


def mobilenetv3_stages(base: str) -> list[list[InvertedResidualConfig]]:
    """torchvision's MobileNetV3 block table (`small` or `large`), grouped into stages of equal width."""
    blocks, _ = _mobilenet_v3_conf(f"mobilenet_v3_{base}")
    stages: list[list[InvertedResidualConfig]] = []
    for cnf in blocks:
        if stages and stages[-1][-1].out_channels == cnf.out_channels and cnf.stride == 1:
            stages[-1].append(cnf)
        else:
            stages.append([cnf])
    return stages


def _per_stage(arch: dict, key: str, n: int) -> list | None:
    value = arch.get(key)
    if value is None:
        return None
    if len(value) != n:
        raise ValueError(f"'{key}' needs {n} values (one per stage), got {len(value)}")
    return list(value)


@register_family("mobilenetv3")
def mobilenetv3(arch: dict, in_channels: int, num_classes: int, input_size: tuple[int, int]) -> nn.Module:
    """MobileNetV3 from torchvision's InvertedResidual(Config): the `small`/`large` stage layout (widths,
    strides, activations) with a width multiplier and, per stage, depth, kernel size, expansion ratio
    (expanded / input channels) and squeeze-excitation. Omitted per-stage fields keep torchvision's
    values block by block, so `{"base": "small", "width": 1}` is mobilenet_v3_small's feature extractor."""
    base, width = arch.get("base", "large"), float(arch.get("width", 1.0))
    if base not in ("small", "large") or width <= 0:
        raise ValueError("'base' must be small or large and 'width' > 0")
    stages = mobilenetv3_stages(base)
    n = len(stages)
    depth = _per_stage(arch, "depth", n) or [len(s) for s in stages]
    kernel, expand, se = (_per_stage(arch, k, n) for k in ("kernel", "expand", "se"))
    if min(depth) < 1:
        raise ValueError("'depth' values must be >= 1")
    plan = []  # (template block, kernel, expansion ratio or None, se) in network order
    for i, stage in enumerate(stages):
        for j in range(depth[i]):
            cnf = stage[min(j, len(stage) - 1)]
            plan.append((cnf, kernel[i] if kernel else cnf.kernel, expand[i] if expand else None,
                         bool(se[i]) if se else cnf.use_se, cnf.stride if j == 0 else 1))
    strides = stride_plan([2] + [p[4] for p in plan], input_size)
    adjust = partial(InvertedResidualConfig.adjust_channels, width_mult=width)
    c_in = adjust(16)
    layers: list[nn.Module] = [Conv2dNormActivation(in_channels, c_in, 3, stride=strides[0],
                                                    activation_layer=nn.Hardswish)]
    # Plain BatchNorm2d, not torchvision's ImageNet setting (momentum 0.01): distillation recipes here are a
    # few hundred steps, too few for such slow running statistics to settle before evaluation.
    norm = nn.BatchNorm2d
    for (cnf, k, ratio, use_se, _), stride in zip(plan, strides[1:], strict=True):
        c_out = adjust(cnf.out_channels)
        expanded = _make_divisible(c_in * ratio, 8) if ratio else adjust(cnf.expanded_channels)
        act = "HS" if cnf.use_hs else "RE"
        layers.append(MBV3Block(InvertedResidualConfig(c_in, int(k), max(expanded, c_in), c_out, use_se, act,
                                                       stride, 1, 1.0), norm))
        c_in = c_out
    last = int(arch.get("last_channel", 6 * c_in))
    layers.append(Conv2dNormActivation(c_in, last, 1, norm_layer=norm, activation_layer=nn.Hardswish))
    return ConvNet(nn.Sequential(*layers), last, num_classes)


# ----------------------------------------------------------------------------- teachers of known families
_TV_RESNETS = {"resnet18": ("basic", [2, 2, 2, 2], 64), "resnet34": ("basic", [3, 4, 6, 3], 64),
               "resnet50": ("bottleneck", [3, 4, 6, 3], 64), "resnet101": ("bottleneck", [3, 4, 23, 3], 64),
               "resnet152": ("bottleneck", [3, 8, 36, 3], 64), "wide_resnet50_2": ("bottleneck", [3, 4, 6, 3], 128),
               "wide_resnet101_2": ("bottleneck", [3, 4, 23, 3], 128)}


def torchvision_arch(name: str) -> dict | None:
    """A torchvision classifier's full-size body in this module's families (None: not a known family).

    The "shrunk teacher" search space scales it down: same blocks and layout, fewer channels and blocks.
    """
    if name in _TV_RESNETS:
        block, blocks, base_width = _TV_RESNETS[name]
        return {"family": "resnet", "block": block, "stem": 64, "widths": [64, 128, 256, 512], "blocks": blocks,
                "base_width": base_width}
    if name == "mobilenet_v2":
        return {"family": "mobilenetv2", "width": 1.0, "depth": 1.0, "expand": 6, "last_channel": 1280}
    if name in ("mobilenet_v3_small", "mobilenet_v3_large"):
        base = name.rsplit("_", 1)[1]
        return {"family": "mobilenetv3", "base": base, "width": 1.0,
                "depth": [len(s) for s in mobilenetv3_stages(base)]}
    return None


def create_model(arch: dict, in_channels: int, num_classes: int, input_size: tuple[int, int], *,
                 seed: int | None = None) -> nn.Module:
    """Build the network an arch dict describes (the one way every stage does it). `seed` fixes the
    initialisation: torch seeds its global generator at random when a process starts, so without it two runs
    of one recipe start from different weights."""
    if seed is not None:
        torch.manual_seed(seed)
    try:
        builder = _families.get(arch["family"])
        return builder(arch, in_channels, num_classes, tuple(input_size))
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"arch {arch}: cannot build it ({e!r})") from None


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
