"""The transformer student space, declared as data (a search Space: base + genes, cheapest choice first), and
its analytic cost at a sequence length.

Genes: layers, hidden size, intermediate ratio; heads follow the hidden size (64 per head, as BERT's) unless
text.heads lists them. The default keeps the teacher's hidden size and heads and drops layers: students that
copy the teacher's embeddings and layers (edgekd/text/models.py). text.narrow_students searches 3/4 and 1/2
of the width instead (random init); tier() tells the two apart, and the search stays in one of them.

Cost (edgekd/cost: the same Kernel records and roofline as the image networks), per layer at batch B,
sequence S, hidden H, heads A, intermediate I, kernels as CPU runtimes fuse them:
  Q, K, V, output projection: 4 GEMMs (B*S x H x H)
  attention scores Q K^T and context P V: 2 batched matmuls of 2*B*A*S*S*(H/A) FLOPs each
  softmax (with the mask add) over B*A*S*S; 2 layer norms (+ residual add) over B*S*H
  feed-forward: GEMM H->I with GELU fused, GEMM I->H
plus the embeddings (gather + layer norm), the masked mean pooling or the classifier. Attention grows with
S^2, so the prices (and the timed latencies) are at --max-length, the budget's sequence length.
"""

from __future__ import annotations

import itertools

from edgekd.config import Profile, TextConfig
from edgekd.cost.ops import Kernel
from edgekd.cost.roofline import UNCALIBRATED_BAND, Prediction, predict_memory_mb, roofline_latency_ms
from edgekd.search.spaces import Space

HEAD_DIM = 64


def _round(x: float, to: int = 32) -> int:
    return max(to, int(round(x / to)) * to)


def text_space(teacher_arch: dict, cfg: TextConfig) -> Space:
    h = teacher_arch["hidden_size"]
    hidden = sorted(set(cfg.hidden_sizes or ([_round(h / 2), _round(3 * h / 4)] if cfg.narrow_students else [h])))
    layers = sorted({n for n in cfg.layers if n <= teacher_arch["num_hidden_layers"]}
                    | {min(cfg.layers + [teacher_arch["num_hidden_layers"]])})
    ratios = sorted(set(cfg.intermediate_ratios))
    genes = {"num_hidden_layers": tuple(layers), "hidden_size": tuple(hidden), "intermediate_ratio": tuple(ratios)}
    return Space("transformer", {"family": "hf-encoder"}, genes)


def heads_for(hidden: int, cfg: TextConfig, teacher_arch: dict) -> int:
    if hidden == teacher_arch["hidden_size"]:
        return teacher_arch["num_attention_heads"]
    options = [a for a in (cfg.heads or []) if hidden % a == 0]
    if options:
        return max(options)
    a = max(1, hidden // HEAD_DIM)
    while hidden % a:
        a -= 1
    return a


def tier(arch: dict, teacher_arch: dict) -> str:
    """teacher-init: the teacher's width and heads (starts from its layers); random-init: any other."""
    same = all(arch[k] == teacher_arch[k] for k in ("hidden_size", "num_attention_heads"))
    return "teacher-init" if same else "random-init"


def searched_tier(cfg: TextConfig) -> str:
    return "random-init" if cfg.narrow_students else "teacher-init"


def candidates(teacher_arch: dict, cfg: TextConfig) -> list[dict]:
    """Every combination of the space's genes as an arch (ARCH_KEYS of edgekd/text/models.py)."""
    space = text_space(teacher_arch, cfg)
    out = []
    for layers, hidden, ratio in itertools.product(*space.genes.values()):
        intermediate = teacher_arch["intermediate_size"] if (
            hidden == teacher_arch["hidden_size"] and ratio * hidden == teacher_arch["intermediate_size"]) \
            else _round(ratio * hidden)
        arch = {"num_hidden_layers": layers, "hidden_size": hidden,
                "num_attention_heads": heads_for(hidden, cfg, teacher_arch), "intermediate_size": intermediate}
        if arch not in out:
            out.append(arch)
    return out


def _gemm(rows: int, cin: int, cout: int, act: str = "", residual: bool = False) -> Kernel:
    o = float(rows * cout)
    return Kernel("gemm", 2.0 * rows * cin * cout, rows * cin + o, float(cin * cout + cout), o, cin, cout, 1, 1, 1, 1,
                  rows, act, residual)


def _eltwise(elems: float, reads: int = 2, op: str = "Add") -> Kernel:
    return Kernel("eltwise", 4.0 * elems, (reads + 1) * elems, 0.0, elems, act=op)


def encoder_kernels(arch: dict, seq: int, batch: int = 1, vocab: int = 30522, outputs: int = 0) -> list[Kernel]:
    """The kernels of one forward pass (see the module docstring); outputs: classes (0: mean-pooled embedding)."""
    h, a, i, n = arch["hidden_size"], arch["num_attention_heads"], arch["intermediate_size"], arch["num_hidden_layers"]
    rows, d = batch * seq, h // a
    # A gather reads only the rows it looks up; the whole table counts for memory (predict), not for time.
    embed = Kernel("other", 3.0 * rows * h, 4.0 * rows * h, float(rows * h), float(rows * h))
    kernels = [embed, _eltwise(rows * h, 1, "LayerNormalization")]
    scores = float(batch * a * seq * seq)
    for _ in range(n):
        kernels += [_gemm(rows, h, h) for _ in range(3)]
        kernels.append(Kernel("gemm", 2.0 * scores * d, 2.0 * rows * h + scores, 0.0, scores, d, seq, 1, 1, 1, 1,
                              batch * a))
        kernels.append(_eltwise(scores, 2, "Softmax"))
        kernels.append(Kernel("gemm", 2.0 * scores * d, scores + 2.0 * rows * h, 0.0, float(rows * h), seq, d, 1, 1,
                              1, 1, batch * a))
        kernels += [_gemm(rows, h, h, residual=True), _eltwise(rows * h, 1, "LayerNormalization")]
        kernels += [_gemm(rows, h, i, act="Gelu"), _gemm(rows, i, h, residual=True),
                    _eltwise(rows * h, 1, "LayerNormalization")]
    if outputs:
        kernels += [_gemm(batch, h, h, act="Tanh"), _gemm(batch, h, outputs)]
    else:
        kernels.append(Kernel("pool", 2.0 * rows * h, 2.0 * rows * h + batch * h, 0.0, float(batch * h), h, h, seq))
    return kernels


def peak_activation_elems(arch: dict, seq: int, batch: int = 1) -> float:
    """The largest live set in a layer: the attention scores beside the hidden states, or the FFN's inner."""
    h, a, i = arch["hidden_size"], arch["num_attention_heads"], arch["intermediate_size"]
    return float(max(2 * batch * a * seq * seq + 4 * batch * seq * h, batch * seq * (i + 2 * h)))


def param_count(arch: dict, vocab: int, positions: int, outputs: int = 0) -> int:
    """Weights of the encoder: the kernels' weights plus the embedding tables (words, positions) that a
    one-token gather reads only a row of. Layer norms and the token-type table are left out (a few percent
    of a small encoder)."""
    weights = sum(k.weight_elems for k in encoder_kernels(arch, 1, 1, vocab, outputs))
    return int(weights + (vocab + positions) * arch["hidden_size"] - arch["hidden_size"])


def predict(arch: dict, profile: Profile, precision: str, seq: int, batch: int = 1, vocab: int = 30522,
            outputs: int = 0, runtime: str | None = None) -> tuple[Prediction, Prediction]:
    """(latency, memory) by the uncalibrated roofline: edgekd calibrate has fitted kernel predictors on
    convolution networks only, so their fit is not applied to attention kernels."""
    kernels = encoder_kernels(arch, seq, batch, vocab, outputs)
    ms = roofline_latency_ms(kernels, profile, precision)
    lo, hi = UNCALIBRATED_BAND
    where = f"{len(kernels)} kernels at sequence length {seq}, {profile.name}" + (f" + {runtime}" if runtime else "")
    latency = Prediction(ms, (ms * lo, ms * hi), f"roofline over {where}, {precision}, uncalibrated for "
                                                   "transformer kernels")
    table = (vocab + 512) * arch["hidden_size"] - batch * seq * arch["hidden_size"]  # the rest of the embeddings
    memory = predict_memory_mb(sum(k.weight_elems for k in kernels) + table, peak_activation_elems(arch, seq, batch),
                               precision)
    return latency, memory


def output_count(ctx) -> int:
    """The head's outputs a student is priced with: the classes of a classifier, none for an embedding model."""
    return ctx.data.num_classes if ctx.teacher.task == "classification" else 0


def price(ctx, arch: dict, precision: str) -> tuple[Prediction, Prediction]:
    """`arch`'s (latency, memory) on the run's target, at its batch and --max-length."""
    cfg = ctx.teacher.config
    return predict(arch, ctx.profile, precision, ctx.data.max_length, ctx.target.batch_size, cfg.vocab_size,
                   output_count(ctx), ctx.target.runtime)
