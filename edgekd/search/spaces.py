"""Search spaces, declared as data: a base arch plus, per gene, its ordered choices.

A gene is a path into the arch dict ("widths.1" is arch["widths"][1]), so a candidate *is* the small
JSON dict `create_model` rebuilds, and sampling, mutation and crossover are the same few lines for
every family. Choices are ordered from cheapest to most expensive: the first choice of every gene is
the space's smallest network, which the search always prices, so "nothing fits" can say what the
fastest candidate would need.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgekd.errors import InputError
from edgekd.models.families import mobilenetv3_stages, round8, torchvision_arch
from edgekd.registry import Registry

WIDTH_MULTS = (0.25, 0.35, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class Space:
    name: str
    base: dict  # fields no gene changes (family, layout)
    genes: dict[str, tuple]  # path -> choices, cheapest first

    def _build(self, values: dict[str, object]) -> dict:
        arch = copy.deepcopy(self.base)
        for path, value in values.items():
            node, *rest = path.split(".")
            if rest:
                arch[node][int(rest[0])] = value
            else:
                arch[node] = value
        return arch

    def values(self, arch: dict) -> dict[str, object]:
        out = {}
        for path in self.genes:
            node, *rest = path.split(".")
            out[path] = arch[node][int(rest[0])] if rest else arch[node]
        return out

    def minimal(self) -> dict:
        return self._build({p: c[0] for p, c in self.genes.items()})

    def sample(self, rng: np.random.Generator) -> dict:
        return self._build({p: c[int(rng.integers(len(c)))] for p, c in self.genes.items()})

    def mutate(self, arch: dict, rng: np.random.Generator) -> dict:
        """Change one gene (and each other gene with probability 1/genes): half the time one step to a
        neighbouring choice (local refinement), otherwise to any other choice (escapes local optima)."""
        values = self.values(arch)
        paths = list(self.genes)
        first = paths[int(rng.integers(len(paths)))]
        for path in paths:
            if path != first and rng.random() >= 1 / len(paths):
                continue
            choices = self.genes[path]
            if len(choices) < 2:
                continue
            i = choices.index(values[path])
            if rng.random() < 0.5:
                j = min(len(choices) - 1, max(0, i + (1 if rng.random() < 0.5 else -1)))
                j = j if j != i else (i + 1 if i == 0 else i - 1)
            else:
                j = int(rng.choice([k for k in range(len(choices)) if k != i]))
            values[path] = choices[j]
        return self._build(values)

    def crossover(self, a: dict, b: dict, rng: np.random.Generator) -> dict:
        """Uniform crossover: each gene from either parent."""
        va, vb = self.values(a), self.values(b)
        return self._build({p: (va[p] if rng.random() < 0.5 else vb[p]) for p in self.genes})


def arch_key(arch: dict) -> str:
    """Canonical text of an arch: equal networks, equal keys (deduplication, determinism)."""
    return json.dumps(arch, sort_keys=True)


SpaceFactory = Callable[[str | None], Space]
_spaces: Registry[SpaceFactory] = Registry("search space")
register_space = _spaces.register
list_spaces = _spaces.names


def create_space(name: str, teacher_source: str | None) -> Space:
    return _spaces.get(name)(teacher_source)


@register_space("resnet")
def resnet_space(teacher: str | None) -> Space:
    """Three stages of BasicBlocks; width and depth per stage."""
    widths = (8, 16, 24, 32, 48, 64, 96, 128)
    genes = {f"widths.{i}": widths for i in range(3)} | {f"blocks.{i}": (1, 2, 3) for i in range(3)}
    return Space("resnet", {"family": "resnet", "widths": [0] * 3, "blocks": [0] * 3}, genes)


@register_space("mobilenetv2")
def mobilenetv2_space(teacher: str | None) -> Space:
    """MobileNetV2 with width, depth and expansion multipliers and the last 1x1 convolution's width."""
    genes = {"width": WIDTH_MULTS, "depth": (0.34, 0.5, 0.75, 1.0), "expand": (2, 3, 4, 6),
             "last_channel": (128, 256, 512, 1024)}
    return Space("mobilenetv2", {"family": "mobilenetv2"}, genes)


@register_space("mobilenetv3")
def mobilenetv3_space(teacher: str | None) -> Space:
    """MobileNetV3-large layout; width multiplier, and per stage depth, kernel size, expansion and SE."""
    n = len(mobilenetv3_stages("large"))
    genes: dict[str, tuple] = {"width": WIDTH_MULTS, "last_channel": (128, 256, 512, 1024)}
    for i in range(n):
        genes |= {f"depth.{i}": (1, 2, 3, 4), f"kernel.{i}": (3, 5, 7), f"expand.{i}": (2, 3, 4, 6),
                  f"se.{i}": (0, 1)}
    base = {"family": "mobilenetv3", "base": "large", "depth": [0] * n, "kernel": [0] * n, "expand": [0] * n,
            "se": [0] * n}
    return Space("mobilenetv3", base, genes)


@register_space("shrunk")
def shrunk_space(teacher: str | None) -> Space:
    """The teacher's own torchvision family, scaled down: same blocks and layout, fewer channels and blocks."""
    name = (teacher or "").removeprefix("torchvision:")
    full = torchvision_arch(name) if teacher and teacher.startswith("torchvision:") else None
    if full is None:
        raise InputError(f"search space 'shrunk' needs a torchvision teacher of a known family (resnet*, "
                         f"wide_resnet*, mobilenet_v2, mobilenet_v3_*), got '{teacher}'; drop 'shrunk' from "
                         "search.spaces")
    return shrunk_of(full)


def shrunk_of(full: dict) -> Space:
    """A network's own layout scaled down (the "shrunk" space of the teacher's body `full`)."""
    family = full["family"]
    if family == "resnet":
        def scaled(w: int) -> tuple:
            return tuple(sorted({round8(w * f) for f in (1 / 16, 1 / 8, 3 / 16, 1 / 4, 3 / 8, 1 / 2)}))

        genes = {"stem": scaled(full["stem"])} if "stem" in full else {}
        genes |= {f"widths.{i}": scaled(w) for i, w in enumerate(full["widths"])}
        genes |= {f"blocks.{i}": tuple(range(1, n + 1))[:4] for i, n in enumerate(full["blocks"])}
    elif family == "mobilenetv2":
        genes = {"width": WIDTH_MULTS[:-1], "depth": (0.34, 0.5, 0.75, 1.0), "last_channel": (256, 512, 1280)}
    else:  # mobilenetv3: the teacher's kernels, expansions and SE block by block
        genes = {"width": WIDTH_MULTS[:-1]} | {f"depth.{i}": tuple(range(1, n + 1))
                                                for i, n in enumerate(full["depth"])}
    return Space("shrunk", full, genes)


def resolve_spaces(names: list[str], teacher_source: str, shrink_teacher: bool) -> list[Space]:
    """The configured spaces, plus the shrunk teacher when the teacher is of a known torchvision family."""
    out = [create_space(n, teacher_source) for n in names]
    known = teacher_source.startswith("torchvision:") and torchvision_arch(teacher_source.split(":", 1)[1])
    if shrink_teacher and known and "shrunk" not in names:
        out.append(shrunk_space(teacher_source))
    if not out:
        raise InputError("search.spaces: empty; name at least one of " + ", ".join(list_spaces()))
    return out
