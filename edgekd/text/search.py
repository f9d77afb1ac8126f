"""The student search for a transformer teacher: every arch of the declarative space (edgekd/text/space.py)
priced by the cost model at --max-length, the searched tier's students that fit the budgets ranked, and the
pick timed on the target's runtime against the teacher with the image search's machinery
(edgekd/search/measured.py: one candidate at a time with the teacher, as long as the check times it, in score
order; edgekd/search/__init__.py's pick_measured accepts by the check's rule and none_fast_enough explains a
failure).

One tier only (space.tier): by default the students that keep the teacher's width and heads and start from
its layers; text.narrow_students searches the narrower, randomly initialised ones instead. Nothing falls back
from one tier to the other: a narrow student is fast and, distilled on a small corpus, far from the teacher
(cosine 0.36 where the teacher-wide ones keep 0.9, docs/benchmarks.md). When no student of the tier is fast
enough the search fails naming the fastest one's measured speed-up and the --min-speedup that would take it.

Rank (training-free): by FLOPs at the sequence length, most first (more of the teacher kept). The roofline is
uncalibrated for attention, so the candidate predicted nearest the bar is timed first (the image search's
anchor): its measured / predicted ratio and, where the target ships INT8, its INT8 gain scale the predictions
that choose which candidates are timed.
Candidates are timed at initialization: latency depends on the graph, not on the weights.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict

from edgekd.errors import BudgetFailed
from edgekd.runtimes import create_backend
from edgekd.search import (
    SCHEMA,
    measured_text,
    measurement_blocker,
    measurement_record,
    none_fast_enough,
    pick_measured,
    required_speedup,
    speedup_bar,
    time_anchors,
)
from edgekd.search.evolution import Candidate
from edgekd.search.measured import RuntimeTimer
from edgekd.text import space as text_space
from edgekd.text.models import arch_of


def _candidates(ctx, t_arch: dict, precision: str, t_lat, bar: float, timed: bool) -> list[Candidate]:
    """Every arch of the space priced; `fits` only within the searched tier. Timed on the runtime, the
    speed-up is decided by timing (the corrected prediction chooses what is timed), not by the prediction."""
    b, tier = ctx.budgets, text_space.searched_tier(ctx.cfg.text)
    out = []
    for i, arch in enumerate(text_space.candidates(t_arch, ctx.cfg.text)):
        lat, mem = text_space.price(ctx, arch, precision)
        flops = sum(k.flops for k in text_space.encoder_kernels(arch, ctx.data.max_length))
        violations = tuple(name for name, bad in (
            ("speedup", not timed and t_lat.value / lat.value < bar),
            ("latency_ms", b.latency_ms is not None and lat.interval[0] > b.latency_ms),
            ("memory_mb", b.memory_mb is not None and mem.interval[0] > b.memory_mb),
            ("teacher_size", arch == t_arch), ("tier", text_space.tier(arch, t_arch) != tier)) if bad)
        params = text_space.param_count(arch, ctx.teacher.config.vocab_size,
                                        ctx.teacher.config.max_position_embeddings, text_space.output_count(ctx))
        out.append(Candidate(i, "transformer", text_space.tier(arch, t_arch), arch, params, flops, lat.value,
                             tuple(lat.interval), mem.value, not violations, ", ".join(violations), violations,
                             None if violations else flops, {}, tuple(mem.interval), t_lat.value / lat.value))
    return out


def run_text_search(ctx) -> dict:
    start = time.perf_counter()
    cfg, folder = ctx.cfg.search, ctx.run.folder("search")
    precision = create_backend(ctx.target.runtime).float_precision
    t_arch = arch_of(ctx.teacher.config)
    t_lat, _ = text_space.price(ctx, t_arch, precision)
    need, b, tier = required_speedup(ctx), ctx.budgets, text_space.searched_tier(ctx.cfg.text)
    blocker = measurement_blocker(ctx)
    candidates = _candidates(ctx, t_arch, precision, t_lat, speedup_bar(ctx, timed=False), blocker is None)
    ranked = sorted((c for c in candidates if c.fits), key=lambda c: (-c.score, c.index))
    timer, timed, correction, gains, factor, source, pick, note = None, [], {}, {}, {}, {}, None, ""
    pool: list[Candidate] = []
    if ranked and blocker is None:
        # The image search's way (edgekd/search/measured.py): an anchor near the bar corrects the uncalibrated
        # roofline and gives the shipped precision's gain; the candidates whose scaled prediction clears the bar
        # are timed in score order and the first the check's rule accepts is the pick.
        timer = RuntimeTimer(ctx, folder)
        bar = speedup_bar(ctx, timed=True)
        anchor = min(ranked, key=lambda c: (abs(math.log(c.predicted_speedup / bar)), c.index))
        timed, gains, correction, factor, source = time_anchors(
            ctx, timer, [anchor], [ctx.data.max_length, text_space.text_space(t_arch, ctx.cfg.text).genes])
        gain = gains[anchor.space]
        pool = [c for c in ranked if c.predicted_speedup * factor[c.space] >= bar]
        pick, timed = pick_measured(ctx, timer, pool, timed, gains)
        fastest = max(ranked, key=lambda c: (c.predicted_speedup, -c.index))
        if pick is None and fastest.index not in {t.index for t in timed}:
            timed = timed + [timer.time(fastest)]  # the failure names what the fastest of the tier reached
        if pick is not None:
            note = measured_text(ctx, next(t for t in timed if t.index == pick.index), gain, timer.precision)
    elif ranked:
        pick, note = ranked[0], f"predicted {ranked[0].predicted_speedup:.2f}x ({blocker})"
    result = {
        "schema": SCHEMA, "kind": "transformer", "target": ctx.target.name, "profile": ctx.profile.name,
        "precision": ctx.target.precision, "batch_size": ctx.target.batch_size, "sequence_length": ctx.data.max_length,
        "score": "flops (more of the teacher kept first)", "tier": tier, "seed": ctx.cfg.seed,
        "limits": {"latency_ms": b.latency_ms, "memory_mb": b.memory_mb, "min_speedup": need,
                   "speedup_margin": cfg.speedup_margin,
                   "teacher_latency_ms": {"value": t_lat.value, "source": "predicted", "precision": precision,
                                          "detail": t_lat.detail}},
        "space": text_space.text_space(t_arch, ctx.cfg.text).genes, "teacher_arch": t_arch,
        "evaluated": len(candidates), "fit": len(ranked),
        "candidates": [asdict(c) | ({"measured": next(t.as_dict() for t in timed if t.index == c.index)}
                                    if any(t.index == c.index for t in timed) else {}) for c in candidates],
        "top_k": [c.index for c in ranked[:cfg.top_k]],
        "pick": pick.arch if pick else None, "pick_index": pick.index if pick else None,
        "measurement": (measurement_record(ctx, timer, timed, correction, factor, source, gains)
                        if timer is not None else {"blocker": blocker}),
        "seconds": time.perf_counter() - start,
    }
    ctx.run.search_json.write_text(json.dumps(result, indent=2, default=list))
    if not ranked:
        raise BudgetFailed(f"search: none of the {len(candidates)} transformer students of the {tier} tier fits "
                           f"(latency {b.latency_ms} ms, memory {b.memory_mb} MB, speed-up {need:g}x predicted)"
                           + ("" if tier == "random-init" else "; text.narrow_students searches narrower ones"))
    if pick is None:
        err = none_fast_enough(ctx, timed, candidates, need, gains, pool)
        raise BudgetFailed(f"{err} ({tier} tier" + ("; text.narrow_students searches narrower, randomly initialised "
                                                     "students)" if tier == "teacher-init" else ")"), err.budgets)
    ctx.console.print(f"  {len(ranked)}/{len(candidates)} of the {tier} tier fit; pick #{pick.index} {pick.arch} "
                      f"({note})")
    return result
