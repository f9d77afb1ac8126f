"""Timing for the gate, and the two audits MLPerf runs against benchmark cheats.

The gated models (MODEL, and the --baseline model and the --reference where they are given) are timed by
the build's interleaved engine (edgekd/interleave.py): rotating blocks in one process, the median of block
medians, replicas taking turns. Each model cycles through the same pool of inputs and keeps what it
returned while timed, for the outputs-match audit.

* outputs-match (MLPerf TEST01's idea): the outputs the model returned *while being timed* must equal
  the outputs of the untimed accuracy run on the same inputs; a runtime that skips work or returns stale
  results during timing is caught.
* no-input-caching (MLPerf TEST04's idea): one identical input repeated must not run markedly faster
  than fresh inputs; a runtime that memoizes results is caught. TEST04 allows 10%; we flag only when the
  95% intervals show more than that, so noise alone cannot fail a model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgekd.interleave import Interleaved, time_interleaved
from edgekd.measure import summarize

POOL_SIZE = 64  # distinct inputs the timed run cycles through
# Outputs during timing vs the accuracy run: same session, batch and input, so they agree to float
# rounding; a substituted model or a stale result misses by far more than this.
OUTPUT_RTOL, OUTPUT_ATOL = 1e-4, 1e-5
REPEAT_SPEEDUP_LIMIT = 0.10  # MLPerf TEST04: a repeated sample may be at most 10% faster
GUARD_SECONDS = 1.5  # time spent on the caching audit (interleaved blocks)
GUARD_BLOCK = 8
FIRST_SECONDS_PER_MODEL = 2.0  # timed before the first look at the verdicts; more rounds follow while undecided
PERCENTILE = {"p50": 50, "p90": 90}  # --statistic: each block's figure (the build's is the median)


@dataclass(frozen=True)
class Timing:
    timed: Interleaved
    outputs: dict[str, dict[int, np.ndarray]]  # per model, the last output of each pool entry, captured while timed
    decided: bool  # every verdict the timing feeds was decided (not inconclusive) before --max-seconds


def time_models(sessions: dict[str, list], pool: list, statistic: str, max_seconds: float,
                decided: Callable[[Interleaved], bool] | None = None) -> Timing:
    """Time the named models (each a list of replica sessions) interleaved, each call on the next input of
    `pool`; rounds are added while `decided(timed so far)` is false, up to `max_seconds`."""
    outputs: dict[str, dict[int, np.ndarray]] = {n: {} for n in sessions}
    calls = dict.fromkeys(sessions, 0)

    def runner(name: str, session) -> Callable[[], None]:
        def call() -> None:
            k = calls[name] % len(pool)
            outputs[name][k] = session.run(pool[k])
            calls[name] += 1
        return call

    first = min(FIRST_SECONDS_PER_MODEL * len(sessions), max_seconds)
    timed = time_interleaved({n: [runner(n, s) for s in ss] for n, ss in sessions.items()}, first,
                             percentile=PERCENTILE[statistic], until=decided, max_seconds=max_seconds)
    return Timing(timed, outputs, decided is None or decided(timed))


@dataclass(frozen=True)
class Audit:
    passed: bool
    reason: str
    figures: dict


def outputs_match(timed: dict[int, np.ndarray], reference: list[np.ndarray]) -> Audit:
    """Every output captured during timing equals the accuracy run's output for the same input."""
    bad, worst = [], 0.0
    for k, out in sorted(timed.items()):
        ref = reference[k]
        if out.shape != ref.shape:
            bad.append(k)
            continue
        scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
        worst = max(worst, float(np.abs(out.astype(np.float64) - ref).max(initial=0.0)) / scale)
        if not np.allclose(out, ref, rtol=OUTPUT_RTOL, atol=OUTPUT_ATOL * scale):
            bad.append(k)
    figures = {"compared": len(timed), "mismatched": len(bad), "max_rel_diff": worst}
    if not timed:
        return Audit(False, "no outputs were captured while timing", figures)
    if bad:
        return Audit(False, f"{len(bad)} of {len(timed)} outputs returned while timed differ from the accuracy "
                            f"run on the same inputs (max relative difference {worst:.3g}): the timed runs did "
                            "not compute what the accuracy run did", figures)
    return Audit(True, f"{len(timed)} outputs returned while timed equal the accuracy run's "
                       f"(max relative difference {worst:.2g})", figures)


def _fresh(x, rng):
    """A new input of the same shape and nearly the same content: images nudged by noise; token feeds with
    their ids rolled by one position (fresh arrays, other content, the same work)."""
    if isinstance(x, dict):
        return {k: (np.roll(v, 1, axis=1) if k == "input_ids" else v.copy()) for k, v in x.items()}
    return x + np.float32(rng.standard_normal() * 1e-3)


def repeated_input_audit(session, pool: list[np.ndarray], p50_ms: float, seconds: float = GUARD_SECONDS) -> Audit:
    """Time one input repeated against never-repeated inputs, in alternating blocks so that machine
    drift hits both alike; fail only when the repeated input is faster beyond the 95% intervals."""
    blocks = int(np.clip(seconds * 1e3 / (2 * GUARD_BLOCK * max(p50_ms, 1e-3)), 4, 250))
    same_x = pool[0]
    rng = np.random.default_rng(0)
    varied, same = [], []
    for _ in range(blocks):
        # A fresh array each call: no cache keyed on content or address can hit. The block's arrays are made
        # before its timer starts, not between calls: making one between timed calls evicts the runtime's code
        # and data from the CPU's caches, which cost a 0.05 ms model 10% (README.md, Audits).
        fresh = [_fresh(pool[int(rng.integers(len(pool)))], rng) for _ in range(GUARD_BLOCK)]
        for x in fresh:
            t = time.perf_counter()
            session.run(x)
            varied.append((time.perf_counter() - t) * 1e3)
        for _ in range(GUARD_BLOCK):
            t = time.perf_counter()
            session.run(same_x)
            same.append((time.perf_counter() - t) * 1e3)
    sv, ss = summarize(np.array(varied)), summarize(np.array(same))
    ratio = ss.p50_ms / sv.p50_ms
    figures = {"varied_p50_ms": sv.p50_ms, "varied_interval_ms": sv.interval_ms, "repeated_p50_ms": ss.p50_ms,
               "repeated_interval_ms": ss.interval_ms, "runs_each": len(same), "ratio": ratio}
    said = (f"repeated input p50 {ss.p50_ms:.4g} ms [{ss.interval_ms[0]:.4g}, {ss.interval_ms[1]:.4g}] vs fresh "
            f"inputs {sv.p50_ms:.4g} ms [{sv.interval_ms[0]:.4g}, {sv.interval_ms[1]:.4g}], {len(same)} runs each")
    if ss.interval_ms[1] < (1 - REPEAT_SPEEDUP_LIMIT) * sv.interval_ms[0]:
        return Audit(False, f"{said}: a repeated input is {100 * (1 - ratio):.0f}% faster (more than the "
                            f"{100 * REPEAT_SPEEDUP_LIMIT:.0f}% MLPerf allows); results look cached", figures)
    return Audit(True, said, figures)


def run_all(session, x: np.ndarray, batch: int, fixed_batch: bool) -> np.ndarray:
    """Outputs for all of x in batches of `batch` (the deployed batch); a fixed-batch model gets its
    last batch padded and the padding's outputs dropped."""
    outs = []
    for i in range(0, len(x), batch):
        chunk = x[i:i + batch]
        n = len(chunk)
        if fixed_batch and n < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - n, *x.shape[1:]), x.dtype)])
        outs.append(np.asarray(session.run(np.ascontiguousarray(chunk)))[:n])
    return np.concatenate(outs)
