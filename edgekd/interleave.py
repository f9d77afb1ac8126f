"""Interleaved timing: several models timed in alternating blocks in one process, so the machine's
drift (other jobs, clocks, a VM's neighbours) lands on every model alike and cancels in their ratios.

    timed = time_interleaved({"teacher": t_session, "student": s_session}, x, seconds=3)
    timed.speedup("teacher", "student")   # Ratio(value=4.2, interval=(3.9, 4.5))

A round times one block (a few milliseconds of calls) of each model, in an order that rotates from round
to round; a model's figure is the median of its block medians. A speed-up is the median of the rounds' own
ratios, and its interval a bootstrap over rounds: a round's blocks ran milliseconds apart, so each ratio's
numerator and denominator come from the same spell of the machine.

What one process cannot see is what differs between processes: where each session's buffers landed in
memory, how its thread pool met the cores. Each model is therefore loaded as `replicas` sessions
(fresh allocations) that take turns across rounds, and a ratio's interval is never narrower than
RATIO_FLOOR either side: across five fresh processes the same pair's speed-up spanned 3.20x..3.32x (3.7%)
while each run's bootstrap interval was about +-2% (benchmarks/outcome.py --retime prints such runs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgekd.figures import Figure, Figures
from edgekd.runtimes import create_backend

BLOCK_SECONDS = 0.01  # one block's length: long enough to time, short enough that many rounds fit
MIN_BLOCK_CALLS = 3
MIN_ROUNDS = 12
WARMUP_SECONDS = 0.2  # per session: lazy initialisation, page faults, the CPU clocking up
RATIO_FLOOR = 0.04  # the least relative half-width of a ratio's interval (between-process spread, above)
# An A/B gate's ratio (edgekd check --baseline OLD.onnx): MODEL and OLD are versions of one model, timed in
# one process; its floor is the spread of that ratio between fresh processes: a 0.1 ms model against a copy of
# itself gave 0.995 .. 1.041 in five fresh processes (benchmarks/gate_ci.py, a 2-core host loaded by other jobs),
# about +-2% around their median 1.012.
AB_RATIO_FLOOR = 0.02
# A latency stored by another process (edgekd check --baseline report.json) differs from this process's by the
# spread between processes: one 0.1 ms model (benchmarks/gate_ci.py's) timed alone, the same way, in six fresh
# processes on a 2-core host loaded by other jobs gave 0.075, 0.081, 0.095, 0.106, 0.112, 0.112 ms (max/min 1.48:
# +-30% around any one of them covers the others, nearly). The gate widens this run's interval by this much either
# side, so an unchanged model is not failed by the machine; a stored figure then decides only large changes,
# and the report says to prefer A/B.
STORED_SPREAD = 0.30
N_BOOT = 2000
REPLICAS = 2  # sessions per model, taking turns across rounds


@dataclass(frozen=True)
class Ratio:
    """a / b of two interleaved models' latencies, with its paired-bootstrap 95% interval."""

    value: float
    interval: tuple[float, float]

    def text(self) -> str:
        return f"{self.value:.2f}x [{self.interval[0]:.2f} .. {self.interval[1]:.2f}]"


@dataclass(frozen=True)
class Interleaved:
    """Per model, its block medians (ms), one per round, in the same rounds for every model."""

    blocks_ms: dict[str, np.ndarray]
    calls_per_block: dict[str, int]
    seconds: float
    calls_ms: dict[str, np.ndarray] | None = None  # every timed call, for the tail percentiles

    @property
    def rounds(self) -> int:
        return len(next(iter(self.blocks_ms.values())))

    def latency_ms(self, name: str) -> float:
        return float(np.median(self.blocks_ms[name]))

    def interval_ms(self, name: str) -> tuple[float, float]:
        """95% bootstrap interval of the median block (rounds resampled): spans the whole timed period."""
        b = self.blocks_ms[name]
        boot = np.median(b[_resamples(len(b))], axis=1)
        return float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))

    def speedup(self, slow: str, fast: str, floor: float = RATIO_FLOOR) -> Ratio:
        """How many times faster `fast` runs than `slow`: the median over rounds of each round's ratio of
        block figures, so each ratio's two blocks come from the same spell of the machine; its interval is
        at least `floor` either side. The ratio of the two medians is not paired: on a 2-core host whose
        block figures drifted 2x within seconds, it read a model against a copy of itself anywhere from
        0.94x to 1.06x, where the median of paired ratios read 1.00x to 1.01x (docs/architecture.md, Timing)."""
        ratios = self.blocks_ms[slow] / self.blocks_ms[fast]
        boot = np.median(ratios[_resamples(len(ratios))], axis=1)
        value = float(np.median(ratios))
        lo, hi = float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))
        return Ratio(value, (min(lo, value * (1 - floor)), max(hi, value * (1 + floor))))

    def figures(self, name: str) -> Figures:
        """The latency of one model, with its statistics and how it was timed."""
        calls = self.calls_ms[name] if self.calls_ms else self.blocks_ms[name]
        p90, p99 = np.percentile(calls, [90, 99])
        # p50 is the gated figure (the median of block medians); p90 and p99 are over every timed call
        stats = {"p50_ms": self.latency_ms(name), "p90_ms": float(p90), "p99_ms": float(p99), "runs": len(calls)}
        return Figures(Figure(self.latency_ms(name), "measured", tuple(self.interval_ms(name))), extra={
            "latency_stats": stats, "latency_timing": {"method": "interleaved blocks", "rounds": self.rounds,
                                                       "calls_per_block": self.calls_per_block[name],
                                                       "seconds": self.seconds}})


def _resamples(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, n, size=(N_BOOT, n))


def time_interleaved(runners: dict[str, list[Callable[[], object]]], seconds: float = 3.0,
                     min_rounds: int = MIN_ROUNDS, *, percentile: float = 50,
                     until: Callable[[Interleaved], bool] | None = None, max_seconds: float = 0.0) -> Interleaved:
    """Time each named model (one callable per replica session) in rotating blocks for about `seconds`
    (at least `min_rounds` rounds). Replicas take turns: round r runs replica r % len(replicas). A block's
    figure is its calls' `percentile` (50: the median). With `until`, rounds are added in chunks of about a
    quarter of `seconds` while `until(what was timed so far)` is false, up to `max_seconds` in all (the gate
    times until its verdict is decided, docs/architecture.md)."""
    names = list(runners)
    per_call = {}
    for name, replicas in runners.items():
        warm: list[float] = []
        for run in replicas:
            start = time.perf_counter()
            while time.perf_counter() - start < WARMUP_SECONDS or len(warm) < MIN_BLOCK_CALLS:
                t = time.perf_counter()
                run()
                warm.append(time.perf_counter() - t)
        # The median warm-up call sizes the blocks (about BLOCK_SECONDS each). A few calls timed once were
        # too noisy: one hiccup gave a model 6-call blocks beside its copy's 89, and since the first calls
        # after a switch run slow, the short blocks read a copy of a model 14% slower than itself.
        per_call[name] = float(np.median(warm[len(warm) // 2:]))
    calls = {n: max(MIN_BLOCK_CALLS, int(BLOCK_SECONDS / max(per_call[n], 1e-7))) for n in names}
    round_s = sum((calls[n] + 1) * per_call[n] for n in names)
    rounds = max(min_rounds, int(seconds / max(round_s, 1e-9)))
    blocks: dict[str, list[float]] = {n: [] for n in names}
    every: dict[str, list[np.ndarray]] = {n: [] for n in names}

    def timed() -> Interleaved:
        return Interleaved({n: np.array(v) for n, v in blocks.items()}, calls, time.perf_counter() - start,
                           {n: np.concatenate(v) for n, v in every.items()})

    start, done = time.perf_counter(), 0
    while True:
        for r in range(done, rounds):
            # rotated every other round and reversed every odd one: each model leads and follows each other
            # equally often (with two models, rotating and reversing every round would undo each other, and
            # the same model would always run first)
            k = (r // 2) % len(names)
            order = names[k:] + names[:k]
            if r % 2:
                order.reverse()
            for name in order:
                run = runners[name][r % len(runners[name])]
                run()  # untimed: the first call after a switch meets cold caches and the last model's spinning threads
                samples = np.empty(calls[name])
                for i in range(calls[name]):
                    t = time.perf_counter()
                    run()
                    samples[i] = time.perf_counter() - t
                blocks[name].append(float(np.percentile(samples, percentile)) * 1e3)
                every[name].append(samples * 1e3)
        done = rounds
        elapsed = time.perf_counter() - start
        if until is None or elapsed >= max_seconds or until(timed()):
            return timed()
        # a chunk of about a quarter of `seconds` at the pace the rounds really went, never past max_seconds
        per_round = elapsed / rounds
        rounds += max(1, int(min(seconds / 4, max_seconds - elapsed) / per_round))


def load_replicas(artifact, threads: int, n: int = REPLICAS) -> list:
    """`n` independent sessions of one artifact (each with its own allocations and thread pool)."""
    backend = create_backend(artifact.runtime)
    return [backend.load(artifact, threads) for _ in range(n)]


def time_sessions(sessions: dict[str, list], x: np.ndarray, seconds: float = 3.0) -> Interleaved:
    """time_interleaved over runtime sessions, each run on the same input `x`."""
    return time_interleaved({n: [lambda s=s: s.run(x) for s in ss] for n, ss in sessions.items()}, seconds)
