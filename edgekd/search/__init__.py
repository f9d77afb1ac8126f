"""Training-free, hardware-aware student search: price each candidate on the target with the cost
model, drop what breaks a budget (counting why; the speed-up over the teacher is one), score the rest
without training, evolve; then, where the target's runtime runs here, time the best-scoring candidates
against the teacher in score order (edgekd/search/measured.py) and pick the first whose measured speed-up, at
the precision the target ships, the check's rule accepts. Writes OUT/search/search.json (every candidate,
predicted and measured side by side, the Pareto front of score vs predicted latency, the pick) and
OUT/search/pareto.png."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edgekd.cost.ops import kernels_from_torch
from edgekd.cost.roofline import SPEEDUP_BAND, predict_kernels, predict_onnx, predict_torch
from edgekd.errors import BudgetFailed
from edgekd.gate.verdict import decide
from edgekd.hostinfo import cpu_name, usable_cores
from edgekd.measurable import local_measurement_blocker, local_threads
from edgekd.models.families import count_params
from edgekd.onnx_export import pricing_onnx
from edgekd.progress import bar_disabled, plain_progress
from edgekd.report import BudgetResult
from edgekd.runtimes import create_backend
from edgekd.search.display import front_table, plot_front
from edgekd.search.evolution import Candidate, evolve, pareto_front
from edgekd.search.measured import QUANTUM, RuntimeTimer, at_shipped, corrections, remembered, scales
from edgekd.search.scores import Probe, RankEnsemble, create_score, list_scores, measure, pool_scores
from edgekd.search.signals import cam_classes, teacher_signals
from edgekd.search.spaces import Space, resolve_spaces

if TYPE_CHECKING:  # the Context is the stages' glue; libraries below them only name its type
    from edgekd.context import Context

SCHEMA = "edgekd.search/1"


def speedup_precision(ctx: Context) -> str:
    """The precision the search compares teacher and candidates at: the runtime's float one, for both. The
    speed-up a search can promise is the architecture's (an int8 student held against an fp32 teacher let
    networks as big as the teacher through); INT8 only adds to it, where the precision guard finds it pays.
    It is also what the search times on the runtime."""
    return create_backend(ctx.target.runtime).float_precision


def teacher_latency_ms(ctx: Context) -> float:
    """Predicted teacher latency on the target profile at speedup_precision, like the candidates'."""
    t, precision = ctx.teacher, speedup_precision(ctx)
    shape = (ctx.target.batch_size, *ctx.input_shape)

    if t.module is not None:
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


def required_speedup(ctx: Context) -> float:
    """The speed-up a student must reach: the min_speedup budget; without one, faster than the teacher."""
    return ctx.budgets.min_speedup or 1.0


def speedup_bar(ctx: Context, timed: bool) -> float:
    """The speed-up a candidate's prediction must clear to fit. Where candidates are timed: the budget plus
    search.speedup_margin (15%) on the prediction the anchors scaled, so that the timing, which accepts at the
    budget itself, seldom sits at its bar (edgekd/search/measured.py says why). Predicted only: the budget over
    the low end of the cost model's band for a speed-up (SPEEDUP_BAND), which the check decides on."""
    need = required_speedup(ctx)
    return need * (1 + ctx.cfg.search.speedup_margin) if timed else need / SPEEDUP_BAND[0]


def evaluate_arch(ctx: Context, probe: Probe, teacher_ms: float, space: Space, arch: dict, origin: str,
                  index: int, score_names: list[str], correction: dict[str, float] | None = None,
                  bar: float | None = None) -> Candidate:
    """Price `arch` on the target and, when it fits, compute what the named scores need (the first is the
    search's; a rank ensemble's score is None here, its members are in `scores`: see with_pool_scores).
    `correction` scales a space's predicted speed-up by what timing on the runtime found (search.measured);
    `bar` is the speed-up it must be predicted at to fit (default: the budget; see speedup_bar)."""
    b = ctx.budgets
    model = ctx.new_student(arch)
    kernels, peak = kernels_from_torch(model, (ctx.target.batch_size, *ctx.input_shape))
    lat, mem = predict_kernels(kernels, peak, ctx.profile, ctx.target.precision, ctx.target.runtime)
    same = speedup_precision(ctx)
    at_same = lat if same == ctx.target.precision else predict_kernels(kernels, peak, ctx.profile, same,
                                                                       ctx.target.runtime)[0]
    predicted = teacher_ms / at_same.value
    speedup = predicted * (correction or {}).get(space.name, 1.0)
    need = required_speedup(ctx)
    bar = bar or need
    broken: list[tuple[str, str]] = []
    if b.latency_ms is not None and lat.value > b.latency_ms:
        broken.append(("latency_ms", f"latency {lat.value:.3g} ms > budget {b.latency_ms:g} ms"))
    if speedup < bar:
        broken.append(("speedup", f"predicted {speedup:.3g}x faster than the teacher < {bar:.3g}x"
                                  + (f" ({need:g}x with the search's allowance: speedup_bar)" if bar > need else "")))
    if b.memory_mb is not None and mem.value > b.memory_mb:
        broken.append(("memory_mb", f"memory {mem.value:.3g} MB > budget {b.memory_mb:g} MB"))
    values = {} if broken else measure(score_names, model, probe)
    if ctx.target.batch_size != 1:  # FLOPs are recorded per sample
        kernels, _ = kernels_from_torch(model, (1, *ctx.input_shape))
    return Candidate(index, space.name, origin, arch, count_params(model), float(sum(k.flops for k in kernels)),
                     lat.value, lat.interval, mem.value, not broken, "; ".join(r for _, r in broken),
                     tuple(k for k, _ in broken), values.get(score_names[0]) if score_names and not broken else None,
                     values,
                     mem.interval, predicted)


def with_pool_scores(name: str, candidates: list[Candidate]) -> list[Candidate]:
    """Candidates with `name`'s value as their score; a rank ensemble ranks the fitting ones against each other."""
    if not isinstance(create_score(name), RankEnsemble):
        return candidates
    fitting = [c for c in candidates if c.fits]
    values = dict(zip((c.index for c in fitting), pool_scores(name, [c.scores for c in fitting]), strict=True))
    return [replace(c, score=float(values[c.index]), scores=c.scores | {name: float(values[c.index])})
            if c.fits else c for c in candidates]


def search_key(ctx: Context, space: list) -> str:
    """What makes two searches the same, for the scales remembered across runs (search.measured.remembered): the
    teacher's weights, the target, the input and the space (`space`, as JSON), the seed and the bar (the anchors
    depend on all of them), and the host's cores, threads and CPU."""
    h = hashlib.sha256()
    if ctx.teacher.module is not None:
        for name, tensor in sorted(ctx.teacher.module.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().float().numpy().tobytes())
    else:
        h.update(Path(ctx.teacher.onnx_path).read_bytes())
    t = ctx.target
    h.update(json.dumps([t.name, t.runtime, t.precision, t.batch_size, space, ctx.cfg.seed,
                         speedup_bar(ctx, timed=True), local_threads(ctx.profile), cpu_name(), usable_cores(), QUANTUM],
                        default=str).encode())
    return h.hexdigest()[:24]


def measurement_blocker(ctx: Context) -> str | None:
    """None when candidates can be timed on the target's runtime in this process; else why not."""
    if ctx.cfg.remote:
        return "the search times candidates in this process only; on --remote the check stage measures the pick"
    if ctx.cfg.search.measure_rounds == 0:
        return "search.measure_rounds is 0"
    return local_measurement_blocker(ctx.profile, ctx.target.runtime)


def run_search(ctx: Context) -> dict:
    """Pick the best-scoring candidate within budget; writes OUT/search/search.json and pareto.png."""
    cfg = ctx.cfg.search
    create_score(cfg.score)  # an unknown name fails before any work
    spaces = resolve_spaces(cfg.spaces, ctx.teacher.source, cfg.shrink_teacher)
    blocker = measurement_blocker(ctx)
    need = required_speedup(ctx)
    ctx.console.print(f"[bold]search[/]: scoring {cfg.max_candidates} candidates that fit, from "
                      f"{', '.join(s.name for s in spaces)}, "
                      f"score {cfg.score}, target {ctx.target.name} (seed {ctx.cfg.seed}); speed-up >= {need:g}x, "
                      + ("timed on the runtime" if blocker is None else f"predicted ({blocker})"))
    start = time.perf_counter()
    probe = make_probe(ctx)
    t_ms = teacher_latency_ms(ctx)
    folder = ctx.run.folder("search")
    timer, timed, correction, anchors, gains, factor, source = None, [], {}, [], {}, {}, {}
    bar = speedup_bar(ctx, timed=blocker is None)
    if blocker is None and not _fits_nowhere(ctx, probe, t_ms, spaces):
        timer = RuntimeTimer(ctx, folder)
        rng = np.random.default_rng(ctx.cfg.seed)
        anchors = [_boundary_anchor(ctx, probe, t_ms, s, -1 - i, rng) for i, s in enumerate(spaces)]
        # what the anchors found the predictions worth, fixed for the evolution
        timed, gains, correction, factor, source = time_anchors(
            ctx, timer, anchors, [list(ctx.input_shape)] + [asdict(s) for s in spaces])
    columns = (TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[priced]} priced"), TimeElapsedColumn())
    plain = plain_progress(ctx.console, "search", cfg.max_candidates, "candidates scored")
    scored = [0]
    with Progress(*columns, console=ctx.console, transient=True, disable=bar_disabled(ctx.console)) as progress:
        task = progress.add_task("scored", total=cfg.max_candidates, priced=0)

        seen: list[Candidate] = []

        def evaluate(space: Space, arch: dict, origin: str, index: int) -> Candidate:
            c = evaluate_arch(ctx, probe, t_ms, space, arch, origin, index, [cfg.score], factor, bar)
            # A rank ensemble ranks against the candidates scored so far (the tournament's view); every
            # candidate is ranked against the whole pool once the evolution ends.
            seen.append(c)
            c = with_pool_scores(cfg.score, seen)[-1]
            progress.update(task, advance=int(c.fits), priced=index + 1)
            scored[0] += int(c.fits)
            if plain is not None:
                plain.update(scored[0], f"{index + 1} priced")
            return c

        candidates = with_pool_scores(cfg.score, evolve(spaces, evaluate, ctx.cfg.seed, cfg.max_candidates,
                                                        cfg.population))
    if plain is not None:
        plain.finish(f"{len(candidates)} priced")
    ranked = sorted((c for c in candidates if c.fits), key=lambda c: (-c.score, c.latency_ms, c.index))
    pick = ranked[0] if ranked else None
    if timer is not None and ranked:
        pick, timed = pick_measured(ctx, timer, ranked, timed, gains)
    front = pareto_front(candidates)
    b = ctx.budgets
    measured = {t.index: t for t in timed}
    result = {
        "schema": SCHEMA, "target": ctx.target.name, "profile": ctx.profile.name, "precision": ctx.target.precision,
        "batch_size": ctx.target.batch_size, "score": cfg.score, "seed": ctx.cfg.seed,
        "scores_available": list_scores(),  # what --score could have been: report.json shows them
        "limits": {"latency_ms": b.latency_ms, "memory_mb": b.memory_mb, "min_speedup": need,
                   "speedup_margin": cfg.speedup_margin,
                   "teacher_latency_ms": {"value": t_ms, "source": "predicted",
                                         "precision": speedup_precision(ctx)}},
        "spaces": [asdict(s) for s in spaces],
        "probe": {"samples": len(probe.y), "cam_classes": probe.classes.tolist(), "teacher": probe.teacher.describe()},
        "evaluated": len(candidates), "fit": len(ranked),
        "dropped": dict(Counter(v for c in candidates for v in c.violations)),
        "candidates": [asdict(c) | ({"measured": measured[c.index].as_dict()} if c.index in measured else {})
                       for c in candidates],
        "pareto_front": [c.index for c in front],
        "top_k": [c.index for c in ranked[:cfg.top_k]],
        "pick": pick.arch if pick else None,
        "pick_index": pick.index if pick else None,
        "measurement": (measurement_record(ctx, timer, timed, correction, factor, source, gains)
                        if timer is not None else {"blocker": blocker}),
        "seconds": time.perf_counter() - start,
    }
    if pick is not None:
        limit = min(t_ms / need, b.latency_ms or float("inf"))
        result["plot"] = plot_front(candidates, front, pick, limit, cfg.score, folder / "pareto.png").name
    ctx.run.search_json.write_text(json.dumps(result, indent=2))
    if not ranked:
        raise _nothing_fits(candidates, b, result["dropped"], factor, bar / need)
    if pick is None:
        raise none_fast_enough(ctx, timed, candidates + anchors, need, gains, ranked)
    ctx.console.print(front_table(front, pick, ranked[:cfg.top_k], cfg.score, ctx.target.name))
    dropped = ", ".join(f"{n} over {k}" for k, n in result["dropped"].items()) or "none dropped"
    said = (measured_text(ctx, measured[pick.index], gains.get(pick.space), timer.precision)
            + f"; {len(timed)} timed in {timer.seconds:.0f} s" if pick.index in measured
            else f"predicted {pick.latency_ms:.3g} ms")
    ctx.console.print(f"  {len(ranked)}/{len(candidates)} fit ({dropped}); pick #{pick.index} {pick.space} "
                      f"(score {pick.score:.4g}, {said}, {pick.memory_mb:.3g} MB predicted)")
    return result


def time_anchors(ctx: Context, timer, anchors: list[Candidate], space: list):
    """Each anchor timed against the teacher, and the gain of the precision the target ships timed on it; the
    scales they give the predictions, remembered across runs (`space`: the search_key's description of the
    space). Returns (timed, gains, corrections, scales, scales' sources) and says them in one line."""
    timed = [timer.time(a) for a in anchors]
    gains = {a.space: timer.gain(a) for a in anchors}
    correction = corrections(timed)
    factor, source = remembered(search_key(ctx, space), scales(correction, gains))
    ctx.console.print("  anchors timed on " + ctx.target.runtime + ": " + ", ".join(
        f"{t.space} {t.speedup:.2f}x (predicted {t.predicted_speedup:.2f}x"
        + (f"; {ctx.target.precision} {gains[t.space].text()} faster than {timer.precision}" if gains[t.space] else "")
        + f"; scale {factor[t.space]:.2f}"
        + (", an earlier run's on this machine" if source[t.space] == "remembered" else "") + ")" for t in timed))
    return timed, gains, correction, factor, source


def measurement_record(ctx: Context, timer, timed: list, correction: dict, factor: dict, source: dict,
                       gains: dict) -> dict:
    """search.json's `measurement`: every timing (with its figure at the shipped precision), the teacher's last
    figures, the anchors' corrections, gains and scales, and the seconds the timing took."""
    def shipped(t) -> dict:
        value, interval = at_shipped(t, gains.get(t.space))
        return {"speedup": value, "speedup_interval": list(interval)}

    return {"runtime": ctx.target.runtime, "teacher": timer.teacher_timings[-1],
            "timed": [t.as_dict() | {"at_shipped": shipped(t)} for t in timed],
            "corrections": correction, "scales": factor, "scales_source": source,
            "shipped_precision": ctx.target.precision,
            "gains": {k: g and {"value": g.value, "interval": list(g.interval)} for k, g in gains.items()},
            "seconds": timer.seconds}


def measured_text(ctx: Context, t, gain, precision: str) -> str:
    """`t`'s measured speed-up as timed (float) and, where the target ships another precision, at that one."""
    lo, hi = t.speedup_interval
    text = f"measured {t.speedup:.2f}x faster than the teacher [{lo:.2f} .. {hi:.2f}] on {ctx.target.runtime}"
    if gain is None:
        return text
    value, (slo, shi) = at_shipped(t, gain)
    return text + f" at {precision}, {value:.2f}x [{slo:.2f} .. {shi:.2f}] at {ctx.target.precision}"


def _fits_nowhere(ctx: Context, probe: Probe, teacher_ms: float, spaces: list[Space]) -> bool:
    """Every space's smallest network breaks the latency or memory budget: nothing can fit, and the
    evolution will say so without anything timed."""
    smallest = [evaluate_arch(ctx, probe, teacher_ms, s, s.minimal(), "smallest", -1, []) for s in spaces]
    return all(set(c.violations) - {"speedup"} for c in smallest)


ANCHOR_SAMPLES = 16  # random archs priced per space to find one predicted right at the required speed-up


def _boundary_anchor(ctx: Context, probe: Probe, teacher_ms: float, space: Space, index: int,
                     rng: np.random.Generator) -> Candidate:
    """Of a few random archs of `space`, the one the cost model puts nearest the speed-up the pick needs:
    timing it corrects the predictions where they decide which candidates fit."""
    bar = math.log(speedup_bar(ctx, timed=True))
    priced = [evaluate_arch(ctx, probe, teacher_ms, space, space.sample(rng), "anchor", index, [])
              for _ in range(ANCHOR_SAMPLES)]
    return min(priced, key=lambda c: abs(math.log(c.predicted_speedup) - bar))


def pick_measured(ctx: Context, timer, ranked: list[Candidate], timed: list, gains: dict):
    """Walk `ranked` in score order, time each candidate alone with the teacher as the check will, and accept the
    first by the check's rule: its whole interval at the shipped precision clears the budget (and its latency
    the latency budget). A refused one gives way to the next; top_k x measure_rounds are timed at most
    (edgekd/search/measured.py, step 4): (pick or None, everything timed, the anchors first)."""
    cfg, need = ctx.cfg.search, required_speedup(ctx)
    latency_limit = ctx.budgets.latency_ms or float("inf")
    known = {t.index: t for t in timed}  # a text search's anchor is one of its candidates: timed once
    for c in ranked[:cfg.top_k * cfg.measure_rounds]:
        t = known.get(c.index)
        if t is None:
            t = timer.time(c)
            timed = timed + [t]
        why = []
        if decide(at_shipped(t, gains.get(t.space))[1], need, at_least=True) != "pass":
            why.append(f"its interval does not clear {need:g}x")
        if t.latency_interval[1] > latency_limit:
            why.append(f"its latency, up to {t.latency_interval[1]:.3g} ms, breaks {latency_limit:g} ms")
        ctx.console.print(f"  #{c.index} (score {c.score:.4g}) timed alone with the teacher: "
                          + measured_text(ctx, t, gains.get(t.space), timer.precision)
                          + ("; refused: " + " and ".join(why) if why else ""))
        if not why:
            return c, timed
    return None, timed


def none_fast_enough(ctx: Context, timed: list, candidates: list[Candidate], need: float, gains: dict,
                     pool: list[Candidate]) -> BudgetFailed:
    """No timed candidate is accepted at the shipped precision: name the fastest and what it would need.
    `candidates`: every one timed is among them; `pool`: those pick_measured walked, in its order."""
    fastest = max(timed, key=lambda t: at_shipped(t, gains.get(t.space))[1][0])
    arch = next(c.arch for c in candidates if c.index == fastest.index)  # anchors are among `candidates`
    value, (lo, hi) = at_shipped(fastest, gains.get(fastest.space))
    known = [BudgetResult("speedup", need, value, "measured", False, (lo, hi),
                          "fastest candidate timed in the search", "fail" if hi < need else "inconclusive")]
    if lo >= need and fastest.index not in {c.index for c in pool}:
        hint = ("it was timed to scale the cost model's predictions (an anchor), not as a pick: its scaled "
                "prediction is under the budget plus search.speedup_margin, where candidates are picked")
    elif lo >= need:  # accepted on speed, refused on latency
        hint = f"its latency, up to {fastest.latency_interval[1]:.3g} ms, breaks --latency-ms"
    elif lo >= 1:
        hint = f"--min-speedup {math.floor(10 * lo + 1e-9) / 10:g} would take it"
    else:
        hint = "none is measurably faster than the teacher; add smaller networks to search.spaces"
    untimed = len({c.index for c in pool} - {t.index for t in timed})
    if untimed:
        hint += f"; {untimed} more that fit were not timed (search.top_k x search.measure_rounds)"
    name = f"#{fastest.index}" if fastest.index >= 0 else f"the {fastest.space} anchor"
    at = f" at {ctx.target.precision} (its measured gain applied)" if gains.get(fastest.space) else ""
    return BudgetFailed(f"search: none of {len(timed)} candidates timed on {ctx.target.runtime} is {need:g}x faster "
                        f"than the teacher by its whole interval{at}; the fastest, {name} "
                        f"{json.dumps(arch)}, runs {value:.2f}x [{lo:.2f} .. {hi:.2f}]: {hint}", known)


def _nothing_fits(candidates: list[Candidate], b, dropped: dict, factor: dict[str, float],
                  margin: float) -> BudgetFailed:
    """`factor`: per space, what timing found the predicted speed-ups to be worth (measured.scales); `margin`: the
    bar over the budget a candidate's scaled predicted speed-up must clear (speedup_bar)."""
    fastest = min(candidates, key=lambda c: (c.latency_ms, c.index))
    needs = []
    if b.latency_ms is not None and fastest.latency_ms > b.latency_ms:
        needs.append(f"--latency-ms {fastest.latency_ms:.3g}")
    if "speedup" in fastest.violations:
        reach = fastest.predicted_speedup * factor.get(fastest.space, 1.0) / margin
        needs.append(f"--min-speedup {math.floor(10 * reach + 1e-9) / 10:g} or less" if reach >= 1 else
                     "smaller networks in search.spaces, or its speed-up timed on the runtime (here, or on the "
                     "device with --remote): no --min-speedup of 1 or more takes it")
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
                        f"({fastest.reason}); it would need {' and '.join(needs) or 'a larger budget'}", known)
