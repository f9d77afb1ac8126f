"""Distillation losses, one registry (names and summaries in catalog.py, which --help prints).

Every loss takes a LossInputs (student/teacher logits, labels, training progress, feature pairs) and the
DistillConfig, and returns a scalar. Teacher tensors arrive without grad, so gradients reach only the student
(and its FitNet adapters). Methods combine with '+' (`dkd+feature`); see method.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from edgekd.config import DistillConfig
from edgekd.registry import Registry


@dataclass
class LossInputs:
    student: torch.Tensor  # student logits (N, C), float32
    teacher: torch.Tensor | None  # teacher logits (N, C)
    targets: torch.Tensor  # labels (N,)
    progress: float = 0.0  # share of training done, in [0, 1)
    student_feats: list[torch.Tensor] = field(default_factory=list)  # one per (teacher, student) layer pair
    adapted_feats: list[torch.Tensor] = field(default_factory=list)  # student_feats through the 1x1 adapters
    teacher_feats: list[torch.Tensor] = field(default_factory=list)
    partner_targets: torch.Tensor | None = None  # labels of the mixed-in images (augment.mix), else None
    mix_share: float = 1.0  # share of `targets`' image in each mixed input (>= 0.5)
    # Text students (edgekd/distill/text_losses.py): the attention mask (N, S), and per tapped layer the
    # self-attention's query, key and value projections (N, S, H), student's and teacher's.
    mask: torch.Tensor | None = None
    student_qkv: list[tuple[torch.Tensor, ...]] = field(default_factory=list)
    teacher_qkv: list[tuple[torch.Tensor, ...]] = field(default_factory=list)


@dataclass(frozen=True)
class Method:
    fn: Callable[[LossInputs, DistillConfig], torch.Tensor]
    weight: float = 1.0  # default weight as a term of a '+' combination (the paper's)
    labels: bool = False  # includes the label cross-entropy; a combination without one gets CE added
    teacher: bool = True  # needs teacher logits
    features: bool = False  # needs teacher/student feature pairs
    adapters: bool = False  # needs the learned 1x1 adapters (text: linear projections of hidden states)
    # image: 4-D feature maps (feature, at, rkd); text: encoder hidden states and attention (text_losses.py);
    # any: logits and labels only (ce, kd, dkd, ...), which serve image and text classifiers alike
    modality: str = "any"
    attention: bool = False  # needs the self-attention's q/k/v (text)


# Filled by the @register lines below and in text_losses.py; read it through method.py's create_method and
# list_methods, which import both modules, so every method is registered before one is looked up.
REGISTRY: Registry[Method] = Registry("distillation method")


def register(name: str, **spec):
    def add(fn):
        REGISTRY.register(name)(Method(fn, **spec))
        return fn

    return add


# ----------------------------------------------------------------------------- KL pieces
def kl_rows(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row from log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(1)


def partition_kl(log_pt: torch.Tensor, log_ps: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The chain rule of KL over a partition of the classes into A (mask) and B (~mask), per row:

        KL(p_t || p_s) = KL([a_t, b_t] || [a_s, b_s]) + a_t KL(p_t|A || p_s|A) + b_t KL(p_t|B || p_s|B)

    with a = sum of p over A, b = 1 - a, and p|A the distribution renormalized inside A. Returns the binary
    term, both inner terms and the teacher masses a_t, b_t. An empty side gets mass 0 and inner term 0
    (computed on a stand-in set, so no -inf - -inf reaches autograd).
    """
    out = {}
    for side, m in (("a", mask), ("b", ~mask)):
        empty = ~m.any(1, keepdim=True)
        m = m | empty
        log_mass_t = log_pt.masked_fill(~m, -math.inf).logsumexp(1, keepdim=True)
        log_mass_s = log_ps.masked_fill(~m, -math.inf).logsumexp(1, keepdim=True)
        inner_t, inner_s = log_pt - log_mass_t, log_ps - log_mass_s
        inner = torch.where(m, inner_t.exp() * (inner_t - inner_s), 0.0).sum(1)
        mass_t = torch.where(empty, 0.0, log_mass_t.exp()).squeeze(1)
        out[f"inner_{side}"] = torch.where(empty.squeeze(1), 0.0, inner)
        out[f"mass_{side}"] = mass_t
        out[f"binary_{side}"] = mass_t * (log_mass_t - log_mass_s).squeeze(1)
    out["binary"] = out.pop("binary_a") + out.pop("binary_b")
    return out


def decompose_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> dict[str, torch.Tensor]:
    """The seed's decomposition of KL(p_t || p_s) at temperature T into three terms, per row (its equation 3):

        KL = BCD + b_t^S * SCD + b_t^W * WCD

    S, the classes strongly correlated with the teacher's prediction: those the tempered teacher gives at least
    the uniform probability 1/C (always including its top class); W, the weakly correlated rest.
    b^S = sum_{i in S} p_i and b^W = 1 - b^S (teacher's b_t, student's b_s).
    BCD = KL([b_t^S, b_t^W] || [b_s^S, b_s^W]) (binary classification divergence: strong vs weak mass);
    SCD = KL(p_t|S || p_s|S) and WCD = KL(p_t|W || p_s|W), the divergences inside each set after
    renormalizing there. The identity is exact (the chain rule of KL), so the three terms always sum to KD's KL;
    the set rule (>= 1/C) is this implementation's choice, made because it needs no per-dataset k.
    """
    log_pt = F.log_softmax(teacher / temperature, dim=1)
    log_ps = F.log_softmax(student / temperature, dim=1)
    strong = log_pt >= -math.log(teacher.shape[1])
    p = partition_kl(log_pt, log_ps, strong)
    return {"bcd": p["binary"], "scd": p["inner_a"], "wcd": p["inner_b"], "mass_strong": p["mass_a"],
            "mass_weak": p["mass_b"]}


def label_ce(b: LossInputs) -> torch.Tensor:
    """Cross-entropy with the labels; for mixed inputs, lam CE(y) + (1 - lam) CE(y_partner)."""
    ce = F.cross_entropy(b.student, b.targets)
    if b.partner_targets is None:
        return ce
    return b.mix_share * ce + (1 - b.mix_share) * F.cross_entropy(b.student, b.partner_targets)


# ----------------------------------------------------------------------------- logit methods
@register("ce", labels=True, teacher=False)
def cross_entropy(b: LossInputs, cfg: DistillConfig) -> torch.Tensor:
    """Labels only: training from scratch (the embedded teacher, the no-distillation baseline)."""
    return label_ce(b)


@register("kd", labels=True)
def hinton_kd(b: LossInputs, cfg: DistillConfig) -> torch.Tensor:
    """Hinton et al. 2015 (the seed's equation 1): (1 - l) CE(y, p_s) + l T^2 KL(softmax(z_t/T) || softmax(z_s/T)).

    T^2 keeps the soft term's gradient scale independent of the temperature.
    """
    t, lam = cfg.temperature, cfg.kd_weight
    kl = kl_rows(F.log_softmax(b.teacher / t, dim=1), F.log_softmax(b.student / t, dim=1)).mean()
    return (1 - lam) * label_ce(b) + lam * t * t * kl


@register("dkd", labels=True)
def decoupled_kd(b: LossInputs, cfg: DistillConfig) -> torch.Tensor:
    """Zhao et al., CVPR 2022: CE + w(progress) T^2 (alpha TCKD + beta NCKD).

    TCKD = KL([p_t^gt, 1 - p_t^gt] || [p_s^gt, 1 - p_s^gt]) (target vs the rest); NCKD = KL between teacher and
    student renormalized over the non-target classes. KD's KL equals TCKD + (1 - p_t^gt) NCKD; DKD drops the
    (1 - p_t^gt) factor that suppresses NCKD for confident teachers. w ramps linearly from 0 to 1 over the first
    dkd_warmup_fraction of training (mdistiller: 20 of 240 epochs).
    """
    t = cfg.temperature
    gt = F.one_hot(b.targets, b.student.shape[1]).bool()
    p = partition_kl(F.log_softmax(b.teacher / t, dim=1), F.log_softmax(b.student / t, dim=1), gt)
    ramp = min(1.0, b.progress / cfg.dkd_warmup_fraction) if cfg.dkd_warmup_fraction > 0 else 1.0
    soft = (cfg.dkd_alpha * p["binary"] + cfg.dkd_beta * p["inner_b"]).mean()
    return label_ce(b) + ramp * t * t * soft


@register("normkd", labels=True)
def normalized_kd(b: LossInputs, cfg: DistillConfig) -> torch.Tensor:
    """NormKD (Chi et al. 2023): KD with a per-sample temperature from each logit vector's spread.

    T_t = T_norm std(z_t), T_s = T_norm std(z_s) per sample;
    loss = (1 - l) CE + l mean_i[T_t,i^2 KL(softmax(z_t,i / T_t,i) || softmax(z_s,i / T_s,i))].
    """
    scale, lam = cfg.normkd_temperature_scale, cfg.kd_weight
    t_t = scale * b.teacher.std(1, keepdim=True).clamp_min(1e-6)
    t_s = scale * b.student.std(1, keepdim=True).clamp_min(1e-6)
    kl = kl_rows(F.log_softmax(b.teacher / t_t, dim=1), F.log_softmax(b.student / t_s, dim=1))
    return (1 - lam) * label_ce(b) + lam * (t_t.squeeze(1) ** 2 * kl).mean()


@register("decomp", labels=True)
def decomposed_kd(b: LossInputs, cfg: DistillConfig) -> torch.Tensor:
    """KD with the seed's three KL terms weighted separately (see decompose_kl):

    (1 - l) CE + l T^2 mean(w_b BCD + w_s b_t^S SCD + w_w b_t^W WCD). With all weights 1 this is exactly `kd`.
    """
    t, lam = cfg.temperature, cfg.kd_weight
    d = decompose_kl(b.student, b.teacher, t)
    soft = (cfg.decomp_binary_weight * d["bcd"] + cfg.decomp_strong_weight * d["mass_strong"] * d["scd"]
            + cfg.decomp_weak_weight * d["mass_weak"] * d["wcd"]).mean()
    return (1 - lam) * label_ce(b) + lam * t * t * soft


# ----------------------------------------------------------------------------- feature and relational methods
@register("feature", features=True, adapters=True, modality="image")
def fitnet(b: LossInputs, cfg: DistillConfig) -> torch.Tensor:
    """FitNet hints (Romero et al. 2015; the seed's equation 5): mean over layer pairs of the relative error
    MSE(adapter(f_s), f_t) / mean(f_t^2), where the adapter is a learned 1x1 convolution + BN mapping the student's
    channels to the teacher's. Dividing by the teacher features' power makes the term about 1 at the start on any
    teacher (mdistiller's weight 100 on the raw MSE fits CIFAR ResNets' feature scale only and swamped the
    labels here); the term's weight is distill.method_weights['feature'], default 1."""
    return torch.stack([F.mse_loss(a.float(), t.float()) / t.float().pow(2).mean().clamp_min(1e-6)
                        for a, t in zip(b.adapted_feats, b.teacher_feats, strict=True)]).mean()


def attention_map(f: torch.Tensor) -> torch.Tensor:
    """Zagoruyko & Komodakis: the channel mean of f^2, flattened and L2-normalized per sample."""
    return F.normalize(f.float().pow(2).mean(1).flatten(1), dim=1)


AT_MIN_POSITIONS = 16  # maps smaller than 4x4 carry almost no spatial information to transfer


@register("at", features=True, modality="image")
def attention_transfer(b: LossInputs, cfg: DistillConfig) -> torch.Tensor:
    """Attention transfer: mean over layer pairs of the squared distance ||a(f_s) - a(f_t)||^2 between the unit
    attention vectors (in [0, 4], independent of the map size). The paper's beta = 1000 on the *mean* over
    positions equals a weight 1000 / (H W) on this distance: about 1 to 16 on CIFAR's 32x32 to 8x8 maps, but 250
    on 2x2 maps, where it swamped the labels. Pairs with maps under 4x4 are left out (the largest is kept when all
    are small); the term's weight is distill.method_weights['at'], default 1. Channel counts may differ."""
    pairs = list(zip(b.student_feats, b.teacher_feats, strict=True))
    kept = [(s, t) for s, t in pairs if s.shape[2] * s.shape[3] >= AT_MIN_POSITIONS]
    kept = kept or [max(pairs, key=lambda p: p[0].shape[2] * p[0].shape[3])]
    return torch.stack([(attention_map(s) - attention_map(t)).pow(2).sum(1).mean() for s, t in kept]).mean()


def embedding(f: torch.Tensor) -> torch.Tensor:
    return f.float().mean((2, 3))


def distances(e: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances divided by their mean over distinct pairs (RKD's scale invariance)."""
    sq = e.pow(2).sum(1)
    d = (sq[:, None] + sq[None, :] - 2 * e @ e.t()).clamp_min(1e-12).sqrt()
    d = d * (1 - torch.eye(len(e), device=e.device))  # exact zeros on the diagonal, zero gradient there
    return d / d[d > 0].mean().clamp_min(1e-12)


def angles(e: torch.Tensor) -> torch.Tensor:
    """cos of the angle at e_i between e_j and e_k, for every triplet (i, j, k)."""
    u = F.normalize(e[None, :, :] - e[:, None, :], dim=2)
    return torch.bmm(u, u.transpose(1, 2)).flatten()


@register("rkd", features=True, modality="image")
def relational_kd(b: LossInputs, cfg: DistillConfig) -> torch.Tensor:
    """Park et al. 2019: w_d smoothL1(psi_D(s), psi_D(t)) + w_a smoothL1(psi_A(s), psi_A(t)) on embeddings (the
    global-average-pooled deepest feature pair); w_d, w_a = rkd_distance_weight, rkd_angle_weight (25, 50)."""
    s, t = embedding(b.student_feats[-1]), embedding(b.teacher_feats[-1])
    return (cfg.rkd_distance_weight * F.smooth_l1_loss(distances(s), distances(t))
            + cfg.rkd_angle_weight * F.smooth_l1_loss(angles(s), angles(t)))
