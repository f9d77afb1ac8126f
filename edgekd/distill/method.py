"""A method string (`kd`, `dkd+feature`, `ta+dkd`) -> weighted loss terms, and the module that trains with them.

`Distiller` bundles the student with its FitNet adapters and feature taps, so one module (one DDP wrapper, one
torch.compile, one checkpoint) holds everything that learns. The teacher never lives inside it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from edgekd.config import DistillConfig
from edgekd.distill import text_losses  # noqa: F401  (registers the transformer methods beside the image ones)
from edgekd.distill.catalog import ASSISTANT, AUTO
from edgekd.distill.losses import REGISTRY, LossInputs, Method
from edgekd.errors import InputError

create_method = REGISTRY.get  # a Method record: its loss function and what it needs
list_methods = REGISTRY.names


@dataclass(frozen=True)
class Term:
    name: str
    method: Method
    weight: float


@dataclass(frozen=True)
class Plan:
    terms: tuple[Term, ...]
    assistant: bool  # `ta` in the method: distil an intermediate student first

    @property
    def name(self) -> str:
        return "+".join(t.name for t in self.terms)

    @property
    def needs_teacher(self) -> bool:
        return any(t.method.teacher for t in self.terms)

    @property
    def needs_features(self) -> bool:
        return any(t.method.features for t in self.terms)

    @property
    def needs_adapters(self) -> bool:
        return any(t.method.adapters for t in self.terms)


def parse_method(text: str, cfg: DistillConfig) -> Plan:
    """'dkd+feature' -> terms with weights (distill.method_weights, else each method's default weight).

    A combination with no label term (only feature/at/rkd) gets `ce` added: those papers train with CE + term.
    """
    names = [n.strip() for n in text.split("+")]
    if not all(names) or len(set(names)) != len(names):
        raise InputError(f"--method / distill.method '{text}': expected method names joined by '+', each once "
                         "(e.g. dkd+feature); `edgekd distill --help` lists them")
    if set(names) & set(AUTO):
        raise InputError(f"--method / distill.method '{text}': auto stands alone (the distill stage makes it "
                         "feature or kd); to combine, name the methods (e.g. kd+feature)")
    for n in names:
        if n not in list_methods() and n not in ASSISTANT:
            create_method(n)  # raises InputError with a did-you-mean
    for_text = [n for n in names if n not in ASSISTANT and create_method(n).modality == "text"]
    if for_text:
        raise InputError(f"--method / distill.method '{for_text[0]}' distils transformer encoders; give it with "
                         "--teacher hf:DIR")
    unknown = sorted(set(cfg.method_weights) - set(names) - {"ce"})
    if unknown:
        raise InputError(f"distill.method_weights: {unknown} not in method '{text}'; weights apply to its terms")
    assistant = any(n in ASSISTANT for n in names)
    names = [n for n in names if n not in ASSISTANT] or ["kd"]
    if not any(create_method(n).labels for n in names):
        names = ["ce", *names]
    terms = tuple(Term(n, create_method(n), cfg.method_weights.get(n, create_method(n).weight)) for n in names)
    return Plan(terms, assistant)


class Distiller(nn.Module):
    """Student + FitNet adapters; forward returns logits, the tapped student features and their adapted copies."""

    def __init__(self, student: nn.Module, student_layers: list[str], adapters: list[nn.Module] | None = None):
        super().__init__()
        self.student = student
        self.adapters = nn.ModuleList(adapters or [])
        self.layers = list(student_layers)
        self._feats: dict[str, torch.Tensor] = {}
        modules = dict(student.named_modules())
        for name in self.layers:
            modules[name].register_forward_hook(self._keep(name))

    def _keep(self, name: str):
        def hook(module, args, output):
            self._feats[name] = output

        return hook

    def forward(self, x: torch.Tensor):
        self._feats = {}
        logits = self.student(x)
        feats = [self._feats[n] for n in self.layers]
        adapted = [a(f) for a, f in zip(self.adapters, feats, strict=False)]
        return logits, feats, adapted


def make_adapter(student_channels: int, teacher_channels: int) -> nn.Module:
    """FitNet's regressor: a 1x1 convolution with BN from the student's channels to the teacher's."""
    return nn.Sequential(nn.Conv2d(student_channels, teacher_channels, 1, bias=False), nn.BatchNorm2d(teacher_channels))


def objective(plan: Plan, b: LossInputs, cfg: DistillConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted sum of the plan's terms, and each term's (unweighted) value for the history.

    Teacher tensors are detached here whatever produced them: no term can send a gradient to the teacher.
    """
    b = replace(b, teacher=None if b.teacher is None else b.teacher.detach(),
                teacher_feats=[f.detach() for f in b.teacher_feats])
    values = {t.name: t.method.fn(b, cfg) for t in plan.terms}
    total = sum(t.weight * values[t.name] for t in plan.terms)
    return total, values
