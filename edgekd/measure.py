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

import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

import numpy as np

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
    # Share of the machine's CPU that other processes (or the hypervisor, as steal) used while this was
    # timed; None where the OS does not say (no /proc).
    interference: float | None = None

    @property
    def value_ms(self) -> float:
        return {"p50": self.p50_ms, "p90": self.p90_ms, "p99": self.p99_ms}[self.statistic]

    def as_dict(self) -> dict:
        return asdict(self)


def bootstrap_interval(samples: np.ndarray, q: float, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the q-th percentile of `samples`."""
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


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy jiffies of the whole machine incl. steal, jiffies of this process), or None without /proc."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in f.readline().split()[1:9])
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    except (OSError, ValueError):
        return None
    return user + nice + system + irq + softirq + steal, int(own[11]) + int(own[12])  # utime + stime


def _interference(before: tuple[int, int] | None, seconds: float) -> float | None:
    after = _cpu_jiffies()
    if before is None or after is None or seconds <= 0:
        return None
    others = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, others / (seconds * os.sysconf("SC_CLK_TCK") * (os.cpu_count() or 1)))


def _time_once(fn: Callable[[], object], min_runs: int, max_runs: int, max_seconds: float, rel_width: float,
               statistic: str) -> LatencyStats:
    samples: list[float] = []
    before, start = _cpu_jiffies(), time.perf_counter()
    next_check = min_runs
    while len(samples) < max_runs:
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1e3)
        if len(samples) >= next_check:
            stats = summarize(np.array(samples), statistic)
            lo, hi = stats.interval_ms
            if (hi - lo) <= rel_width * stats.value_ms or time.perf_counter() - start > max_seconds:
                break
            next_check = int(len(samples) * 1.5)
    stats = summarize(np.array(samples), statistic)
    return replace(stats, interference=_interference(before, time.perf_counter() - start))


def time_calls(fn: Callable[[], object], warmup: int = 10, min_runs: int = 30, max_runs: int = 2000,
               max_seconds: float = 3.0, rel_width: float = 0.05, statistic: str = "p50",
               warmup_s: float = 0.0, tries: int = 1, max_interference: float = 0.1) -> LatencyStats:
    """Time `fn` until the statistic's 95% interval is within rel_width of it, or a cap is hit.

    Warm-up runs at least `warmup` calls and `warmup_s` seconds: the first calls of a fresh session pay
    for lazy initialisation, page faults and a CPU clocking up, which are no part of steady latency.
    With `tries` > 1, a timing during which other processes used more than `max_interference` of the
    machine's CPU is repeated (other work only ever slows a run down, so the fastest try is kept).
    """
    start = time.perf_counter()
    done = 0
    while done < warmup or time.perf_counter() - start < warmup_s:
        fn()
        done += 1
    best = None
    for _ in range(max(1, tries)):
        stats = _time_once(fn, min_runs, max_runs, max_seconds, rel_width, statistic)
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
    from edgekd.runtimes import create_backend

    backend = create_backend(artifact.runtime)
    session = backend.load(artifact, threads)
    x = np.random.default_rng(seed).standard_normal(input_shape).astype(np.float32)
    timing = {"warmup_s": 0.2, "tries": 3, **timing}
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
    import fcntl

    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
