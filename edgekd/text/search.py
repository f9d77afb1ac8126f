"""The student search for a transformer teacher: every arch of the declarative space (edgekd/text/space.py)
priced by the cost model at --max-length, those that fit the budgets ranked, the best top_k timed against the
teacher on the target's runtime (interleaved, edgekd/interleave.py), the pick the best-ranked one whose
measured speed-up clears the budget with search.speedup_margin.

Rank (training-free): students that keep the teacher's hidden size first (they start from the teacher's
embeddings and layers, edgekd/text/models.py), then by FLOPs at the sequence length: the capacity score
that ranked post-KD quality best for the image spaces (SearchConfig.score's note). Candidates are timed
at initialization: latency depends on the graph, not on the weights. After each timed batch, the median
ratio of measured to predicted speed-up rescales the predictions that choose the next batch (the roofline
is not calibrated for attention kernels).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict

import numpy as np

from edgekd.errors import BudgetFailed
from edgekd.interleave import load_replicas, time_sessions
from edgekd.measurable import local_threads
from edgekd.runtimes import create_backend
from edgekd.search import measurement_blocker, required_speedup
from edgekd.search.evolution import Candidate
from edgekd.search.measured import Timed
from edgekd.text import space as text_space
from edgekd.text.export import export_text, metadata, teacher_onnx
from edgekd.text.models import arch_of, build_student

SECONDS_PER_MODEL = 0.7
SCHEMA = "edgekd.search/1"


def _outputs(ctx) -> int:
    return ctx.data.num_classes if ctx.teacher.task == "classification" else 0


def _price(ctx, arch: dict, precision: str) -> tuple:
    cfg = ctx.teacher.config
    return text_space.predict(arch, ctx.profile, precision, ctx.data.max_length, ctx.target.batch_size,
                              cfg.vocab_size, _outputs(ctx), ctx.target.runtime)


def run_text_search(ctx) -> dict:
    start = time.perf_counter()
    cfg, folder = ctx.cfg.search, ctx.run.folder("search")
    precision = create_backend(ctx.target.runtime).float_precision
    t_arch = arch_of(ctx.teacher.config)
    t_lat, t_mem = _price(ctx, t_arch, precision)
    need, b = required_speedup(ctx), ctx.budgets
    candidates = []
    for i, arch in enumerate(text_space.candidates(t_arch, ctx.cfg.text)):
        lat, mem = _price(ctx, arch, precision)
        flops = sum(k.flops for k in text_space.encoder_kernels(arch, ctx.data.max_length))
        violations = tuple(name for name, bad in (
            ("speedup", t_lat.value / lat.value < need), ("latency_ms", b.latency_ms is not None and
                                                          lat.interval[0] > b.latency_ms),
            ("memory_mb", b.memory_mb is not None and mem.interval[0] > b.memory_mb),
            ("teacher_size", arch == t_arch)) if bad)
        # The image search's record (search.json reads alike for both kinds); the grid has no origin to tell.
        params = text_space.param_count(arch, ctx.teacher.config.vocab_size,
                                        ctx.teacher.config.max_position_embeddings, _outputs(ctx))
        candidates.append(Candidate(i, "transformer", "grid", arch, params, flops, lat.value, tuple(lat.interval),
                                    mem.value, not violations, ", ".join(violations), violations,
                                    None if violations else flops, {}, tuple(mem.interval), t_lat.value / lat.value))
    # Teacher-initialisable first (they start from the teacher's weights), then by FLOPs.
    ranked = sorted((c for c in candidates if c.fits), reverse=True,
                    key=lambda c: (c.arch["hidden_size"] == t_arch["hidden_size"], c.flops))
    blocker = measurement_blocker(ctx)
    measured: dict[int, Timed] = {}
    pick, note = None, ""
    if ranked and blocker is None:
        pick, note = _pick_measured(ctx, ranked, measured, need, cfg, folder, precision)
    elif ranked:
        pick, note = ranked[0], f"predicted {ranked[0].predicted_speedup:.2f}x ({blocker})"
    result = {
        "schema": SCHEMA, "kind": "transformer", "target": ctx.target.name, "profile": ctx.profile.name,
        "precision": ctx.target.precision, "batch_size": ctx.target.batch_size, "sequence_length": ctx.data.max_length,
        "score": "teacher-initialisable first, then flops", "seed": ctx.cfg.seed,
        "limits": {"latency_ms": b.latency_ms, "memory_mb": b.memory_mb, "min_speedup": need,
                   "speedup_margin": cfg.speedup_margin,
                   "teacher_latency_ms": {"value": t_lat.value, "source": "predicted", "precision": precision,
                                          "detail": t_lat.detail}},
        "space": text_space.text_space(t_arch, ctx.cfg.text).genes, "teacher_arch": t_arch,
        "evaluated": len(candidates), "fit": len(ranked),
        "candidates": [asdict(c) | ({"measured": measured[c.index].as_dict()} if c.index in measured else {})
                       for c in candidates],
        "top_k": [c.index for c in ranked[:cfg.top_k]],
        "pick": pick.arch if pick else None, "pick_index": pick.index if pick else None,
        "measurement": ({"runtime": ctx.target.runtime, "timed": [t.as_dict() for t in measured.values()]}
                        if blocker is None else {"blocker": blocker}),
        "seconds": time.perf_counter() - start,
    }
    ctx.run.search_json.write_text(json.dumps(result, indent=2, default=list))
    if not ranked:
        raise BudgetFailed(f"search: none of {len(candidates)} transformer students fits (need {need:.2f}x the "
                           f"teacher's speed, predicted; latency {b.latency_ms} ms, memory {b.memory_mb} MB)")
    if pick is None:
        best = max(measured.values(), key=lambda t: t.speedup)
        raise BudgetFailed(f"search: no timed student is {need:.2f}x faster than the teacher on "
                           f"{ctx.target.runtime}; the fastest measured {best.speedup:.2f}x")
    ctx.console.print(f"  {len(ranked)}/{len(candidates)} fit; pick #{pick.index} {pick.arch} ({note})")
    return result


def _pick_measured(ctx, ranked: list[Candidate], measured: dict[int, Timed], need: float, cfg, folder,
                   precision) -> tuple[Candidate | None, str]:
    """Time the best-ranked students against the teacher (top_k a batch; `measured` collects every timing):
    the best-ranked one that clears the budget with margin, else the best-ranked over the budget alone."""
    backend = create_backend(ctx.target.runtime)
    threads = local_threads(ctx.profile)
    options = backend.options_for(ctx.profile.arch, ctx.target.batch_size)
    teacher = backend.compile(teacher_onnx(ctx)[0], folder / "timing" / "teacher", precision, None,
                              ctx.profile.arch, options)
    feed = ctx.data.timing_feed(ctx.target.batch_size)
    sessions = {"teacher": load_replicas(teacher, threads)}
    fallback, scale = None, 1.0
    for _ in range(max(1, cfg.measure_rounds)):
        # Untimed candidates the (corrected) cost model still lets through, best-ranked first.
        batch = [c for c in ranked if c.index not in measured and c.predicted_speedup * scale >= need][:cfg.top_k]
        if not batch:
            break
        for c in batch:
            student, _ = build_student(ctx.teacher.module, c.arch, init_from_teacher=False)
            sub = folder / "timing" / f"candidate-{c.index}"
            onnx_path = export_text(student, sub / "candidate.onnx", metadata(ctx, {"arch": c.arch}),
                                    ctx.data.encode(ctx.data.val_idx[:2]))
            art = backend.compile(onnx_path, sub, precision, None, ctx.profile.arch, options)
            sessions[f"c{c.index}"] = load_replicas(art, threads)
        with ctx.console.status(f"timing {len(batch)} students against the teacher on {ctx.target.runtime}"):
            got = time_sessions(sessions, feed, SECONDS_PER_MODEL * len(sessions))
        for c in batch:
            name = f"c{c.index}"
            ratio = got.speedup("teacher", name)
            measured[c.index] = Timed(c.index, "transformer", got.latency_ms(name), tuple(got.interval_ms(name)),
                                      ratio.value, tuple(ratio.interval), c.predicted_speedup)
            sessions.pop(name)
        # The roofline is uncalibrated for attention: the measured / predicted ratio of every candidate timed so
        # far corrects the predictions that choose the next batch (as the image search's anchors do).
        scale = float(np.median([t.speedup / t.predicted_speedup for t in measured.values()]))
        for c in batch:  # best-ranked first
            m = measured[c.index]
            if m.speedup_interval[0] >= need * (1 + cfg.speedup_margin):
                return c, (f"measured {m.speedup:.2f}x [{m.speedup_interval[0]:.2f} .. "
                           f"{m.speedup_interval[1]:.2f}] on {ctx.target.runtime}")
            if fallback is None and m.speedup >= need:
                fallback = c
    if fallback is not None:
        m = measured[fallback.index]
        return fallback, (f"measured {m.speedup:.2f}x on {ctx.target.runtime}: over {need:.2f}x but not by the "
                          f"margin {cfg.speedup_margin:.0%}")
    return None, ""
