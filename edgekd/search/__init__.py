"""Training-free, hardware-aware student search: enumerate candidates, predict their latency and memory
on the target, drop what breaks a budget, rank the rest by a training-free score."""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass

import numpy as np
import torch

from edgekd.context import Context
from edgekd.cost.roofline import predict_onnx, predict_torch
from edgekd.errors import BudgetFailed
from edgekd.models.families import count_params, create_model
from edgekd.report import BudgetResult
from edgekd.search.scores import scores

# A first, small grid per family (the full search space arrives with the search issue).
GRIDS = {
    "resnet": [{"family": "resnet", "widths": [w, 2 * w, 4 * w], "blocks": [b] * 3}
               for w, b in itertools.product([8, 16, 24, 32], [1, 2])],
    "mobilenetv2": [{"family": "mobilenetv2", "width": w, "depth": d, "expand": e, "last_channel": 256}
                    for w, d, e in itertools.product([0.25, 0.5, 0.75, 1.0], [0.5, 1.0], [3, 6])],
}


@dataclass(frozen=True)
class Candidate:
    arch: dict
    params: int
    score: float
    latency_ms: float  # predicted for the target
    latency_interval: tuple[float, float]
    memory_mb: float  # predicted for the target
    fits: bool
    reason: str  # why it was dropped ("" when it fits)
    memory_interval: tuple[float, float] | None = None  # the prediction's band


def teacher_latency_ms(ctx: Context) -> float:
    """Predicted teacher latency on the target profile (fp32, as the teacher would ship unchanged)."""
    t = ctx.teacher
    shape = (ctx.target.batch_size, *ctx.input_shape)
    if t.module is not None:
        return predict_torch(t.module, shape, ctx.profile, "fp32", runtime=ctx.target.runtime)[0].value
    import onnx

    return predict_onnx(onnx.load(str(t.onnx_path)), ctx.profile, "fp32", ctx.target.batch_size,
                        runtime=ctx.target.runtime)[0].value


def evaluate_candidates(ctx: Context) -> tuple[list[Candidate], float]:
    cfg = ctx.cfg.search
    score_fn = scores.get(cfg.score)
    archs = [a for space in cfg.spaces for a in GRIDS[space]][: cfg.max_candidates]
    rng = np.random.default_rng(ctx.cfg.seed)
    idx = rng.choice(ctx.data.train_idx, size=min(cfg.score_batch_size, len(ctx.data.train_idx)), replace=False)
    x = torch.from_numpy(ctx.data.inputs(idx))
    y = torch.from_numpy(ctx.data.y[idx])
    soft = ctx.teacher.logits(x.to(ctx.device)).cpu()
    t_ms = teacher_latency_ms(ctx)
    max_ms = t_ms * cfg.max_teacher_latency_ratio
    b = ctx.budgets
    out = []
    for arch in archs:
        torch.manual_seed(ctx.cfg.seed)  # same init for every candidate: scores depend on the arch alone
        model = create_model(arch, ctx.data.preprocessing.channels, ctx.data.num_classes, ctx.input_shape[1:])
        lat, mem = predict_torch(model, (ctx.target.batch_size, *ctx.input_shape), ctx.profile, ctx.target.precision,
                                 runtime=ctx.target.runtime)
        reasons = []
        if b.latency_ms is not None and lat.value > b.latency_ms:
            reasons.append(f"latency {lat.value:.3g} ms > budget {b.latency_ms:g} ms")
        if lat.value > max_ms:
            reasons.append(f"latency {lat.value:.3g} ms > {cfg.max_teacher_latency_ratio:g} x teacher's {t_ms:.3g} ms")
        if b.memory_mb is not None and mem.value > b.memory_mb:
            reasons.append(f"memory {mem.value:.3g} MB > budget {b.memory_mb:g} MB")
        out.append(Candidate(arch, count_params(model), score_fn(model, x, y, soft), lat.value, lat.interval,
                             mem.value, not reasons, "; ".join(reasons), mem.interval))
    return out, t_ms


def run_search(ctx: Context) -> dict:
    """Pick the best-scoring candidate within budget; writes OUT/search/search.json."""
    ctx.console.print(f"[bold]search[/]: scoring candidates ({ctx.cfg.search.score}) for {ctx.target.name}")
    candidates, t_ms = evaluate_candidates(ctx)
    fitting = sorted((c for c in candidates if c.fits), key=lambda c: -c.score)
    result = {
        "target": ctx.target.name, "score": ctx.cfg.search.score, "seed": ctx.cfg.seed,
        "teacher_latency_ms": {"value": t_ms, "source": "predicted"},
        "candidates": [asdict(c) for c in candidates],
        "pick": fitting[0].arch if fitting else None,
    }
    path = ctx.stage_dir("search") / "search.json"
    path.write_text(json.dumps(result, indent=2))
    if not fitting:
        fastest = min(candidates, key=lambda c: c.latency_ms)
        b = ctx.budgets
        known = [BudgetResult("latency_ms", b.latency_ms, fastest.latency_ms, "predicted",
                              b.latency_ms is None or fastest.latency_ms <= b.latency_ms, fastest.latency_interval,
                              "fastest search candidate"),
                 BudgetResult("memory_mb", b.memory_mb, fastest.memory_mb, "predicted",
                              b.memory_mb is None or fastest.memory_mb <= b.memory_mb, fastest.memory_interval,
                              "fastest search candidate")]
        raise BudgetFailed(f"search: none of {len(candidates)} candidates fits; the fastest ({fastest.arch}) "
                           f"is predicted at {fastest.latency_ms:.3g} ms and {fastest.memory_mb:.3g} MB "
                           f"({fastest.reason})", known)
    pick = fitting[0]
    ctx.console.print(f"  {len(fitting)}/{len(candidates)} candidates fit; pick {pick.arch} "
                      f"(score {pick.score:.4g}, predicted {pick.latency_ms:.3g} ms)")
    return result
