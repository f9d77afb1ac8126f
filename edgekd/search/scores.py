"""Training-free scores of an untrained candidate on one minibatch; higher is better. One registry.

Each per-candidate score takes the freshly initialized student and a Probe (the minibatch and the
teacher's signals on it) and leaves the student as it found it (scores that change weights or statistics
work on a copy). Students are scored in train mode, as the proxies' papers do: batch-norm uses the
batch's statistics, so an untrained network's activations are normalized rather than drifting with depth.

A RankEnsemble in the same registry combines per-candidate scores by their mean rank over the candidate
pool: terms on unrelated scales (DisWOT's two distances, FLOPs and log-determinants) then count equally,
and no unit or monotone transform of one term changes the result. `measure` computes what a name needs
for one candidate; `pool_scores` turns a pool's measurements into the name's values.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import nn

from edgekd.cost.ops import kernels_from_torch
from edgekd.errors import InputError
from edgekd.registry import Registry
from edgekd.search.signals import Signals, module_signals


@dataclass(frozen=True)
class Probe:
    x: torch.Tensor  # (B, C, H, W) preprocessed inputs
    y: torch.Tensor  # (B,) labels
    classes: torch.Tensor  # classes whose Grad-CAMs DisWOT compares
    teacher: Signals


Score = Callable[[nn.Module, Probe], float]


@dataclass(frozen=True)
class RankEnsemble:
    """The mean over `members` of each candidate's rank in the pool (1 = lowest, ties averaged), divided by
    the pool size: in (0, 1], higher is better, invariant to any increasing transform of a member."""
    members: tuple[str, ...]
    description: str

    def combine(self, values: np.ndarray) -> np.ndarray:
        """values (candidates, members) -> (candidates,)."""
        return rank_average(values)


_scores: Registry[Score | RankEnsemble] = Registry("search score")
register_score = _scores.register
list_scores = _scores.names


def create_score(name: str) -> Score | RankEnsemble:
    """A registered score (a function, or a RankEnsemble: nothing to build), or registered names joined by
    '+' (`zico+flops`): the rank ensemble of their per-candidate scores."""
    if "+" not in name:
        return _scores.get(name)
    parts = [p.strip() for p in name.split("+")]
    for part in parts:
        if not part:
            raise InputError(f"search score '{name}': an empty name between '+'; join registered scores, e.g. "
                             "zico+flops")
        _scores.get(part)  # an unknown part is named, with the known ones
    return RankEnsemble(tuple(dict.fromkeys(m for part in parts for m in members(part))),
                        f"rank average of {', '.join(parts)}")


def rank_average(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    ranks = np.column_stack([rankdata(values[:, j]) for j in range(values.shape[1])])
    return ranks.mean(axis=1) / len(values)


def members(name: str) -> tuple[str, ...]:
    """The per-candidate scores `name` is computed from (itself, for a per-candidate score)."""
    entry = create_score(name)
    return entry.members if isinstance(entry, RankEnsemble) else (name,)


def measure(names: list[str], model: nn.Module, probe: Probe) -> dict[str, float]:
    """Every per-candidate score the named scores need, for one candidate (each computed once)."""
    needed = dict.fromkeys(m for n in names for m in members(n))
    return {m: create_score(m)(model, probe) for m in needed}


def pool_scores(name: str, rows: list[dict[str, float]]) -> np.ndarray:
    """The score `name` of each candidate of a pool, from their `measure` rows."""
    entry = create_score(name)
    if isinstance(entry, RankEnsemble):
        return entry.combine(np.array([[row[m] for m in entry.members] for row in rows]))
    return np.array([row[name] for row in rows], dtype=np.float64)


# ----------------------------------------------------------------------------- DisWOT
def relation_distance(f_t: torch.Tensor, f_s: torch.Tensor) -> float:
    """Sample-relation distance (Tung & Mori's similarity-preserving KD, DisWOT's M_r): the B x B Gram
    matrices of the flattened features, rows L2-normalized, mean squared difference."""
    b = f_t.shape[0]
    g_t = F.normalize(f_t.reshape(b, -1).double() @ f_t.reshape(b, -1).double().T, dim=1)
    g_s = F.normalize(f_s.reshape(b, -1).double() @ f_s.reshape(b, -1).double().T, dim=1)
    return float(((g_t - g_s) ** 2).sum() / (b * b))


def semantic_distance(cam_t: torch.Tensor, cam_s: torch.Tensor) -> float:
    """DisWOT's M_s: per sample, the N x N inter-class correlation of the Grad-CAM maps (B, N, H, W), rows
    L2-normalized, squared difference summed and divided by N * B. Contracting over H*W makes teacher and
    student comparable whatever their resolutions and widths."""
    b, n = cam_t.shape[:2]
    flat_t, flat_s = cam_t.reshape(b, n, -1).double(), cam_s.reshape(b, n, -1).double()
    c_t = F.normalize(flat_t @ flat_t.transpose(1, 2), dim=2)
    c_s = F.normalize(flat_s @ flat_s.transpose(1, 2), dim=2)
    return float(((c_t - c_s) ** 2).sum() / (n * b))


def diswot_terms(model: nn.Module, probe: Probe) -> tuple[float | None, float]:
    """(M_s, M_r) between the teacher and the untrained student; M_s is None when the teacher has no
    Grad-CAM (no global pool found). Without a teacher feature map, relations are taken on logits."""
    s = module_signals(copy.deepcopy(model).train(), probe.x, probe.classes, "student")
    t = probe.teacher
    semantic = semantic_distance(t.cams, s.cams) if t.cams is not None and s.cams is not None else None
    if t.feature is not None and s.feature is not None:
        relation = relation_distance(t.feature, s.feature)
    else:
        relation = relation_distance(t.logits, s.logits)
    return semantic, relation


@register_score("diswot-semantic")
def diswot_semantic(model: nn.Module, probe: Probe) -> float:
    """DisWOT's semantic term, -M_s; falls back to -M_r without teacher Grad-CAMs."""
    semantic, relation = diswot_terms(model, probe)
    return -(semantic if semantic is not None else relation)


@register_score("diswot-relation")
def diswot_relation(model: nn.Module, probe: Probe) -> float:
    """DisWOT's sample-relation term, -M_r."""
    return -diswot_terms(model, probe)[1]


# Dong, Li, Wei (CVPR 2023) add the two distances: -(M_s + M_r). On our students M_s is orders of magnitude
# larger than M_r, so the sum ranked by M_s alone; ranking each term over the pool puts them on one scale.
register_score("diswot")(RankEnsemble(
    ("diswot-semantic", "diswot-relation"),
    "DisWOT: a student whose class-activation correlations (M_s) and sample relations (M_r) already resemble "
    "the teacher's at initialization distils best; the two terms rank-averaged over the pool"))


# ----------------------------------------------------------------------------- baselines
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardswish)


@register_score("nwot")
def nwot(model: nn.Module, probe: Probe) -> float:
    """Mellor et al. 2021 (NASWOT): log|K_H| of the Hamming-similarity kernel of the activations' on/off
    codes. Networks whose activation patterns tell the samples apart at initialization train better."""
    model = copy.deepcopy(model).train()  # train mode updates batch-norm statistics: work on a copy
    x = probe.x
    n = x.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64, device=x.device)

    def hook(_m, _inp, out):
        codes = (out.detach().reshape(n, -1) > 0).double()
        kernel.add_(codes @ codes.T + (1 - codes) @ (1 - codes).T)

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, ACTIVATIONS)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return float(torch.linalg.slogdet(kernel)[1])


@register_score("synflow")
def synflow(model: nn.Module, probe: Probe) -> float:
    """Tanaka et al. 2020 (SynFlow), as Abdelfattah et al. 2021 use it: log sum |theta * dR/dtheta| with
    R the summed output of the network with |weights| on an all-ones input. Data-free. float64 and the log
    keep deep networks from overflowing; batch-norm is the identity at initialization (eval mode)."""
    model = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    model.zero_grad()
    model(torch.ones((1, *probe.x.shape[1:]), dtype=torch.float64, device=probe.x.device)).sum().backward()
    with torch.no_grad():
        total = sum(float((p * p.grad).abs().sum()) for p in model.parameters() if p.grad is not None)
    return math.log(total) if total > 0 else float("-inf")


@register_score("grad-norm")
def grad_norm(model: nn.Module, probe: Probe) -> float:
    """Abdelfattah et al. 2021: sum over layers of the L2 norm of the cross-entropy loss's weight gradients."""
    model = copy.deepcopy(model).train()
    model.zero_grad()
    F.cross_entropy(model(probe.x), probe.y).backward()
    return float(sum(m.weight.grad.norm() for m in model.modules()
                     if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.grad is not None))


ZICO_BATCHES = 4  # the probe is split into this many minibatches: the gradient statistics are over them


@register_score("zico")
def zico(model: nn.Module, probe: Probe) -> float:
    """Li et al. (ICLR 2023), ZiCo: sum over conv/linear layers of log( sum over the layer's weights of
    mean|g| / std(g) ), g the cross-entropy gradient of a weight over a few minibatches (weights whose
    gradient never varies are left out, as are layers with none). High where gradients are large and
    consistent across batches: the network trains fast and generalizes."""
    model = copy.deepcopy(model).train()
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    grads: list[list[torch.Tensor]] = [[] for _ in layers]
    for xb, yb in zip(probe.x.chunk(ZICO_BATCHES), probe.y.chunk(ZICO_BATCHES), strict=True):
        model.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        for g, m in zip(grads, layers, strict=True):
            if m.weight.grad is not None:
                g.append(m.weight.grad.detach().reshape(-1).double().clone())
    total = 0.0
    for g in grads:
        if len(g) < 2:
            continue
        stacked = torch.stack(g)
        std = stacked.std(dim=0, unbiased=False)
        keep = std > 0
        ratio = float((stacked.abs().mean(dim=0)[keep] / std[keep]).sum())
        if ratio > 0:
            total += math.log(ratio)
    return total


@register_score("params")
def params(model: nn.Module, probe: Probe) -> float:
    """Parameter count: the naive baseline every proxy must beat."""
    return float(sum(p.numel() for p in model.parameters()))


@register_score("flops")
def flops(model: nn.Module, probe: Probe) -> float:
    """Floating-point operations of one sample (the cost model's kernel list): bigger networks learn more."""
    kernels, _ = kernels_from_torch(copy.deepcopy(model).cpu(), (1, *probe.x.shape[1:]))
    return float(sum(k.flops for k in kernels))


register_score("ensemble")(RankEnsemble(
    ("zico", "nwot", "flops"),
    "rank average of ZiCo, NWOT and FLOPs: two proxies that read the network's response to data and the "
    "size baseline, each strongest where the others are weak"))
