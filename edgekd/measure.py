"""Latency statistics shared by build, check and bench: warm-up, adaptive repeats, percentiles and a
bootstrap confidence interval of the gated statistic.

Timing stops once `min_runs` are done and either the 95% interval of the statistic is narrower than
`rel_width` of it, or `max_seconds` have passed; a noisy machine therefore gets more samples, not a
wrong answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

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


def time_calls(fn: Callable[[], object], warmup: int = 10, min_runs: int = 30, max_runs: int = 2000,
               max_seconds: float = 3.0, rel_width: float = 0.05, statistic: str = "p50") -> LatencyStats:
    """Time `fn` until the statistic's 95% interval is within rel_width of it, or a cap is hit."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    start = time.perf_counter()
    next_check = min_runs
    while len(samples) < max_runs:
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1e3)
        if len(samples) >= next_check:
            stats = summarize(np.array(samples), statistic)
            lo, hi = stats.interval_ms
            if (hi - lo) <= rel_width * stats.value_ms or time.perf_counter() - start > max_seconds:
                return stats
            next_check = int(len(samples) * 1.5)
    return summarize(np.array(samples), statistic)
