"""Latency statistics shared by build, check and bench: warm-up, adaptive repeats, percentiles and a
bootstrap confidence interval of the gated statistic.

Timing stops once `min_runs` are done and either the 95% interval of the statistic is narrower than
`rel_width` of it, or `max_seconds` have passed; a noisy machine therefore gets more samples, not a
wrong answer.

`measure_artifact` is the one way build, check, bench and calibrate time a compiled model: the runtime's
thread pool pinned to the profile's thread count, the runtime's versions and session settings recorded
beside the statistics.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy.stats import binom

from edgekd.figures import Figure, Figures
from edgekd.runtimes import create_backend

STATISTICS = {"p50": 50.0, "p90": 90.0, "p99": 99.0}


@dataclass(frozen=True)
class LatencyStats:
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    runs: int
    statistic: str
    interval_ms: tuple[float, float]  # bootstrap 95% interval of `statistic`
    # Share of its runnable time this process waited for a CPU while timed (other processes, the
    # hypervisor); None where the OS does not say (no /proc).
    interference: float | None = None

    @property
    def value_ms(self) -> float:
        return {"p50": self.p50_ms, "p90": self.p90_ms, "p99": self.p99_ms}[self.statistic]

    def as_dict(self) -> dict:
        return asdict(self)

    def figures(self) -> Figures:
        """p50 with its interval, measured, and these statistics beside it."""
        return Figures(Figure(self.p50_ms, "measured", self.interval_ms), extra={"latency_stats": self.as_dict()})


def bootstrap_interval(samples: np.ndarray, q: float, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the q-th percentile of `samples`.

    Beyond a few thousand samples, resampling costs seconds, so the bootstrap distribution is computed
    exactly instead: a resample's q-quantile is at most the i-th smallest sample exactly when at least
    ceil(q n) of its n draws fall at or below it, a binomial event."""
    if len(samples) > 2000:
        ordered = np.sort(samples)
        n = len(ordered)
        below = binom.sf(np.ceil(q / 100 * n) - 1, n, np.arange(1, n + 1) / n)  # P(quantile <= x_(i))
        return float(ordered[np.searchsorted(below, 0.025)]), float(ordered[min(n - 1, np.searchsorted(below, 0.975))])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(samples), size=(n_boot, len(samples)))
    stats = np.percentile(samples[picks], q, axis=1)
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return float(lo), float(hi)


def summarize(samples_ms: np.ndarray, statistic: str = "p50") -> LatencyStats:
    s = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(s, [50, 90, 99])
    return LatencyStats(float(p50), float(p90), float(p99), float(s.mean()), len(s), statistic,
                        bootstrap_interval(s, STATISTICS[statistic]))


def _sched_ns() -> dict[str, tuple[int, int]] | None:
    """Per thread of this process: (ns on a CPU, ns runnable but waiting for one), from schedstat."""
    out = {}
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/schedstat") as f:
                ran, waited = f.read().split()[:2]
            out[task] = (int(ran), int(waited))
    except (OSError, ValueError):
        return None
    return out


def _interference(before: dict[str, tuple[int, int]] | None) -> float | None:
    """Share of the time this process's threads were ready to run but had no CPU since `before`:
    other processes (or the hypervisor) taking the cores. Precise to the nanosecond, unlike load averages."""
    after = _sched_ns()
    if before is None or after is None:
        return None
    ran = waited = 0
    for task, (r, w) in after.items():
        r0, w0 = before.get(task, (0, 0))
        ran, waited = ran + r - r0, waited + w - w0
    return waited / (ran + waited) if ran + waited > 0 else 0.0


def _time_once(fn: Callable[[], object], min_runs: int, max_runs: int, max_seconds: float, rel_width: float,
               statistic: str, min_seconds: float) -> LatencyStats:
    samples: list[float] = []
    before, start = _sched_ns(), time.perf_counter()
    next_check = min_runs
    while len(samples) < max_runs:
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1e3)
        if len(samples) >= next_check:
            elapsed = time.perf_counter() - start
            stats = summarize(np.array(samples), statistic)
            lo, hi = stats.interval_ms
            if elapsed > max_seconds or ((hi - lo) <= rel_width * stats.value_ms and elapsed >= min_seconds):
                break
            next_check = len(samples) + max(1, len(samples) // 2)
    return replace(summarize(np.array(samples), statistic), interference=_interference(before))


def time_calls(fn: Callable[[], object], warmup: int = 10, min_runs: int = 30, max_runs: int = 2000,
               max_seconds: float = 3.0, rel_width: float = 0.05, statistic: str = "p50",
               warmup_s: float = 0.0, tries: int = 1, max_interference: float = 0.1,
               min_seconds: float = 0.0) -> LatencyStats:
    """Time `fn` until the statistic's 95% interval is within rel_width of it, or a cap is hit.

    Warm-up runs at least `warmup` calls and `warmup_s` seconds: the first calls of a fresh session pay
    for lazy initialisation, page faults and a CPU clocking up, which are no part of steady latency.
    Timing also lasts `min_seconds`, so it spans many scheduler slices of whatever else runs. With
    `tries` > 1, a timing during which this process waited for a CPU more than `max_interference` of
    its runnable time is repeated (other work only ever slows a run down, so the fastest try is kept).
    """
    start = time.perf_counter()
    done = 0
    while done < warmup or time.perf_counter() - start < warmup_s:
        fn()
        done += 1
    best = None
    for _ in range(max(1, tries)):
        stats = _time_once(fn, min_runs, max_runs, max_seconds, rel_width, statistic, min_seconds)
        if best is None or stats.value_ms < best.value_ms:
            best = stats
        if stats.interference is None or stats.interference <= max_interference:
            return stats
    return best


# ----------------------------------------------------------------------------- runtime sessions
@dataclass(frozen=True)
class Measurement:
    """A latency measured through a runtime, with what it depends on: threads, runtime versions, settings."""

    stats: LatencyStats
    runtime: str
    threads: int
    input_shape: tuple[int, ...]
    versions: dict
    settings: dict

    @property
    def value_ms(self) -> float:
        return self.stats.value_ms

    def as_dict(self) -> dict:
        return {"runtime": self.runtime, "threads": self.threads, "input_shape": list(self.input_shape),
                "versions": self.versions, "settings": self.settings, **self.stats.as_dict()}


def measure_artifact(artifact, input_shape: tuple[int, ...], threads: int, statistic: str = "p50",
                     seed: int = 0, **timing) -> Measurement:
    """Load `artifact` with `threads` (the profile's count, pinned in the runtime's own pool) and time it
    on a fixed random input; `timing` goes to time_calls (warmup, min_runs, max_seconds, rel_width)."""
    backend = create_backend(artifact.runtime)
    session = backend.load(artifact, threads)
    x = np.random.default_rng(seed).standard_normal(input_shape).astype(np.float32)
    timing = {"warmup_s": 0.2, "min_seconds": 0.3, "tries": 3, "max_runs": 50_000, **timing}
    stats = time_calls(lambda: session.run(x), statistic=statistic, **timing)
    return Measurement(stats, artifact.runtime, threads, tuple(input_shape), backend.versions(),
                       dict(session.settings))


@contextmanager
def timing_lock(path: str | None = None):
    """Hold an exclusive flock on `path` (default: $EDGEKD_TIMING_LOCK; none if unset) while timing, so
    jobs sharing a machine (a CI runner, a dev box) do not run heavy work into each other's measurements."""
    path = path or os.environ.get("EDGEKD_TIMING_LOCK")
    if not path:
        yield
        return

    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Canary:
    """A fixed reference workload timed around measurements, to tell a machine in its usual state from
    one running slow for reasons no counter shows (a VM's vCPUs moved apart on the host, clocks
    throttled): there the canary slows down too. The fastest reading so far is the usual state."""

    def __init__(self, fn: Callable[[], object], seconds: float = 0.1):
        self.fn, self.seconds, self.best_ms = fn, seconds, float("inf")

    def reading(self) -> float:
        """The canary's p50 now (ms)."""
        st = time_calls(self.fn, warmup=3, min_runs=10, min_seconds=self.seconds, max_seconds=self.seconds,
                        max_runs=1_000_000)
        self.best_ms = min(self.best_ms, st.p50_ms)
        return st.p50_ms
