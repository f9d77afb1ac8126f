"""Distillation losses for transformer encoders, registered in the one method registry (losses.py), so they
compose with '+' like the others (`emb+hidden+minilm`, `kd+hidden`); logits KD for text classifiers is
losses.py's `kd`. Inputs (LossInputs): `student`/`teacher` are the sentence embeddings (N, D) or logits,
`student_feats`/`teacher_feats` hidden states (N, S, H) of paired layers, `adapted_feats` the student's
through learned linear projections, `mask` the attention mask, `*_qkv` the last layer's attention q, k, v.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgekd.config import DistillConfig
from edgekd.distill.losses import LossInputs, register


@register("emb", teacher=True, modality="text")
def embedding_loss(b: LossInputs, cfg: DistillConfig) -> torch.Tensor:
    """Output embedding: (1 - cos(e_s, e_t)) + MSE(e_s, e_t), mean over the batch. The cosine term is what
    semantic search ranks by; the MSE term keeps the scale, so the embeddings stay interchangeable (the
    student's vectors can sit in an index built with the teacher's). Embedding widths must match."""
    s, t = b.student.float(), b.teacher.float()
    return (1 - F.cosine_similarity(s, t, dim=1)).mean() + F.mse_loss(s, t)


def _masked_mse(s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    err = (s.float() - t.float()).pow(2).mean(-1)
    if mask is None:
        return err.mean()
    m = mask.to(err.dtype)
    return (err * m).sum() / m.sum().clamp_min(1)


@register("hidden", features=True, adapters=True, modality="text")
def hidden_states(b: LossInputs, cfg: DistillConfig) -> torch.Tensor:
    """TinyBERT's hidden-state loss (Jiao et al. 2020): MSE(h_s W, h_t) over the real (unmasked) tokens,
    mean over the paired layers (the embedding output and the student's layers, each with the teacher layer
    it was initialised from, edgekd/text/models.py); W is a learned projection where widths differ."""
    return torch.stack([_masked_mse(s, t, b.mask)
                        for s, t in zip(b.adapted_feats, b.teacher_feats, strict=True)]).mean()


def relation(x: torch.Tensor, y: torch.Tensor, heads: int, mask: torch.Tensor | None) -> torch.Tensor:
    """log softmax(x_r y_r^T / sqrt(d_r)) per relation head r: (N, heads, S, S), padded keys masked out."""
    n, s, h = x.shape
    d = h // heads
    xr = x.float().reshape(n, s, heads, d).transpose(1, 2)
    yr = y.float().reshape(n, s, heads, d).transpose(1, 2)
    scores = xr @ yr.transpose(-1, -2) / d ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask.bool()[:, None, None, :], torch.finfo(scores.dtype).min)
    return F.log_softmax(scores, dim=-1)


def _relation_kl(s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """KL(t || s) per query row, mean over real query tokens and relation heads."""
    kl = (t.exp() * (t - s)).sum(-1)  # (N, heads, S)
    if mask is None:
        return kl.mean()
    m = mask.to(kl.dtype)[:, None, :]
    return (kl * m).sum() / (m.sum() * kl.shape[1]).clamp_min(1)


@register("minilm", attention=True, modality="text", weight=1.0)
def minilm(b: LossInputs, cfg: DistillConfig) -> torch.Tensor:
    """MiniLM's deep self-attention distillation (Wang et al., NeurIPS 2020) on the last layer: KL between the
    teacher's and student's attention distributions softmax(Q K^T / sqrt(d)), plus KL between their value
    relations softmax(V V^T / sqrt(d)). Computed per relation head as MiniLMv2 does, so teacher and student
    may differ in heads and width (distill.relation_heads; 0: the student's width / 64). Masked keys are
    excluded and padded queries ignored."""
    (qs, ks, vs), (qt, kt, vt) = b.student_qkv[-1], b.teacher_qkv[-1]
    heads = relation_heads(qs.shape[-1], qt.shape[-1], cfg.relation_heads or max(1, qs.shape[-1] // 64))
    att = _relation_kl(relation(qs, ks, heads, b.mask), relation(qt, kt, heads, b.mask), b.mask)
    val = _relation_kl(relation(vs, vs, heads, b.mask), relation(vt, vt, heads, b.mask), b.mask)
    return att + val


def relation_heads(student_width: int, teacher_width: int, wanted: int) -> int:
    """The largest head count <= wanted that divides both widths."""
    for h in range(max(1, wanted), 0, -1):
        if student_width % h == 0 and teacher_width % h == 0:
            return h
    return 1
