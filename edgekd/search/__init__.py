"""Training-free, hardware-aware student search: price each candidate on the target with the cost
model, drop what breaks a budget (counting why), score the rest without training, evolve, and pick
the best score within budget. Writes OUT/search/search.json (every candidate, the Pareto front of score
vs predicted latency, the pick) and OUT/search/pareto.png."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edgekd.context import Context
from edgekd.cost.roofline import predict_kernels, predict_onnx, predict_torch
from edgekd.errors import BudgetFailed
from edgekd.models.families import count_params, create_model
from edgekd.report import BudgetResult
from edgekd.search.evolution import Candidate, evolve, pareto_front
from edgekd.search.scores import Probe, scores
from edgekd.search.signals import cam_classes, teacher_signals
from edgekd.search.spaces import Space, resolve_spaces

SCHEMA = "edgekd.search/1"


def teacher_latency_ms(ctx: Context) -> float:
    """Predicted teacher latency on the target profile at the target's precision, like the students': the
    ratio limit compares architectures, so an int8 student must not be held against an fp32 teacher (that
    lets networks as big as the teacher through, and on int8 targets the search then picked the teacher's own
    architecture)."""
    t, precision = ctx.teacher, ctx.target.precision
    shape = (ctx.target.batch_size, *ctx.input_shape)
    import onnx

    if t.module is not None:
        from edgekd.models.teacher import pricing_onnx

        proto = pricing_onnx(t.module, shape)  # hooks see no layers in a TorchScript or torch.export graph
        if proto is None:
            return predict_torch(t.module, shape, ctx.profile, precision, runtime=ctx.target.runtime)[0].value
    else:
        proto = onnx.load(str(t.onnx_path))
    return predict_onnx(proto, ctx.profile, precision, ctx.target.batch_size, runtime=ctx.target.runtime)[0].value


def make_probe(ctx: Context) -> Probe:
    """One seeded minibatch of training images and the teacher's signals on it."""
    rng = np.random.default_rng(ctx.cfg.seed)
    n = min(ctx.cfg.search.score_batch_size, len(ctx.data.train_idx))
    idx = np.sort(rng.choice(ctx.data.train_idx, size=n, replace=False))
    x, y = torch.from_numpy(ctx.data.inputs(idx)), torch.from_numpy(ctx.data.y[idx])
    classes = cam_classes(y)
    return Probe(x, y, classes, teacher_signals(ctx.teacher, x, classes, ctx.device))


def build_candidate(ctx: Context, arch: dict) -> torch.nn.Module:
    """The candidate at initialization; the seed fixes the init, so a score depends on the arch alone."""
    torch.manual_seed(ctx.cfg.seed)
    return create_model(arch, ctx.data.preprocessing.channels, ctx.data.num_classes, ctx.input_shape[1:])


def evaluate_arch(ctx: Context, probe: Probe, teacher_ms: float, space: Space, arch: dict, origin: str,
                  index: int, score_names: list[str]) -> Candidate:
    """Price `arch` on the target and, when it fits, compute the named scores (the first is the search's)."""
    from edgekd.cost.ops import kernels_from_torch

    cfg, b = ctx.cfg.search, ctx.budgets
    model = build_candidate(ctx, arch)
    kernels, peak = kernels_from_torch(model, (ctx.target.batch_size, *ctx.input_shape))
    lat, mem = predict_kernels(kernels, peak, ctx.profile, ctx.target.precision, ctx.target.runtime)
    max_ms = teacher_ms * cfg.max_teacher_latency_ratio
    broken: list[tuple[str, str]] = []
    if b.latency_ms is not None and lat.value > b.latency_ms:
        broken.append(("latency_ms", f"latency {lat.value:.3g} ms > budget {b.latency_ms:g} ms"))
    if lat.value > max_ms:
        broken.append(("teacher_latency_ratio", f"latency {lat.value:.3g} ms > {cfg.max_teacher_latency_ratio:g} "
                                                f"x teacher's {teacher_ms:.3g} ms"))
    if b.memory_mb is not None and mem.value > b.memory_mb:
        broken.append(("memory_mb", f"memory {mem.value:.3g} MB > budget {b.memory_mb:g} MB"))
    values = {} if broken else {name: scores.get(name)(model, probe) for name in score_names}
    if ctx.target.batch_size != 1:  # FLOPs are recorded per sample
        kernels, _ = kernels_from_torch(model, (1, *ctx.input_shape))
    return Candidate(index, space.name, origin, arch, count_params(model), float(sum(k.flops for k in kernels)),
                     lat.value, lat.interval, mem.value, not broken, "; ".join(r for _, r in broken),
                     tuple(k for k, _ in broken), values.get(score_names[0]) if score_names else None, values,
                     mem.interval)


def run_search(ctx: Context) -> dict:
    """Pick the best-scoring candidate within budget; writes OUT/search/search.json and pareto.png."""
    from edgekd.search.display import front_table, plot_front

    cfg = ctx.cfg.search
    scores.get(cfg.score)  # an unknown name fails before any work
    spaces = resolve_spaces(cfg.spaces, ctx.teacher.source, cfg.shrink_teacher)
    ctx.console.print(f"[bold]search[/]: scoring {cfg.max_candidates} candidates that fit, from "
                      f"{', '.join(s.name for s in spaces)}, "
                      f"score {cfg.score}, target {ctx.target.name} (seed {ctx.cfg.seed})")
    start = time.perf_counter()
    probe = make_probe(ctx)
    t_ms = teacher_latency_ms(ctx)
    columns = (TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[priced]} priced"), TimeElapsedColumn())
    with Progress(*columns, console=ctx.console, transient=True) as progress:
        task = progress.add_task("scored", total=cfg.max_candidates, priced=0)

        def evaluate(space: Space, arch: dict, origin: str, index: int) -> Candidate:
            c = evaluate_arch(ctx, probe, t_ms, space, arch, origin, index, [cfg.score])
            progress.update(task, advance=int(c.fits), priced=index + 1)
            return c

        candidates = evolve(spaces, evaluate, ctx.cfg.seed, cfg.max_candidates, cfg.population)
    ranked = sorted((c for c in candidates if c.fits), key=lambda c: (-c.score, c.latency_ms, c.index))
    front = pareto_front(candidates)
    folder = ctx.stage_dir("search")
    b = ctx.budgets
    result = {
        "schema": SCHEMA, "target": ctx.target.name, "profile": ctx.profile.name, "precision": ctx.target.precision,
        "batch_size": ctx.target.batch_size, "score": cfg.score, "seed": ctx.cfg.seed,
        "limits": {"latency_ms": b.latency_ms, "memory_mb": b.memory_mb,
                   "max_teacher_latency_ratio": cfg.max_teacher_latency_ratio,
                   "teacher_latency_ms": {"value": t_ms, "source": "predicted",
                                         "precision": ctx.target.precision}},
        "spaces": [asdict(s) for s in spaces],
        "probe": {"samples": len(probe.y), "cam_classes": probe.classes.tolist(), "teacher": probe.teacher.describe()},
        "evaluated": len(candidates), "fit": len(ranked),
        "dropped": dict(Counter(v for c in candidates for v in c.violations)),
        "candidates": [asdict(c) for c in candidates],
        "pareto_front": [c.index for c in front],
        "top_k": [c.index for c in ranked[:cfg.top_k]],
        "pick": ranked[0].arch if ranked else None,
        "pick_index": ranked[0].index if ranked else None,
        "seconds": time.perf_counter() - start,
    }
    if ranked:
        limit = min(t_ms * cfg.max_teacher_latency_ratio, b.latency_ms or float("inf"))
        result["plot"] = plot_front(candidates, front, ranked[0], limit, cfg.score, folder / "pareto.png").name
    (folder / "search.json").write_text(json.dumps(result, indent=2))
    if not ranked:
        raise _nothing_fits(candidates, b, t_ms, cfg.max_teacher_latency_ratio, result["dropped"])
    ctx.console.print(front_table(front, ranked[0], ranked[:cfg.top_k], cfg.score, ctx.target.name))
    dropped = ", ".join(f"{n} over {k}" for k, n in result["dropped"].items()) or "none dropped"
    pick = ranked[0]
    ctx.console.print(f"  {len(ranked)}/{len(candidates)} fit ({dropped}); pick #{pick.index} {pick.space} "
                      f"(score {pick.score:.4g}, predicted {pick.latency_ms:.3g} ms, {pick.memory_mb:.3g} MB)")
    return result


def _nothing_fits(candidates: list[Candidate], b, teacher_ms: float, ratio: float, dropped: dict) -> BudgetFailed:
    fastest = min(candidates, key=lambda c: (c.latency_ms, c.index))
    needs = []
    if b.latency_ms is not None and fastest.latency_ms > b.latency_ms:
        needs.append(f"--latency-ms {fastest.latency_ms:.3g}")
    if fastest.latency_ms > teacher_ms * ratio:
        ratio_needed = fastest.latency_ms / teacher_ms if teacher_ms > 0 else 1.0  # a teacher priced at 0 ms
        needs.append(f"--set search.max_teacher_latency_ratio={min(1.0, ratio_needed):.3g}")
    if b.memory_mb is not None and fastest.memory_mb > b.memory_mb:
        needs.append(f"--memory-mb {fastest.memory_mb:.3g}")
    counts = ", ".join(f"{n} over {k}" for k, n in dropped.items())
    known = [BudgetResult("latency_ms", b.latency_ms, fastest.latency_ms, "predicted",
                          b.latency_ms is None or fastest.latency_ms <= b.latency_ms, fastest.latency_interval,
                          "fastest search candidate"),
             BudgetResult("memory_mb", b.memory_mb, fastest.memory_mb, "predicted",
                          b.memory_mb is None or fastest.memory_mb <= b.memory_mb, fastest.memory_interval,
                          "fastest search candidate")]
    return BudgetFailed(f"search: none of {len(candidates)} candidates fits ({counts}); the fastest, {fastest.space} "
                        f"{json.dumps(fastest.arch)}, is predicted at {fastest.latency_ms:.3g} ms and "
                        f"{fastest.memory_mb:.3g} MB "
                        f"({fastest.reason}); it would need {' and '.join(needs)}", known)
