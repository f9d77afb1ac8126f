"""The latency verdicts one interleaved timing feeds (gate/timing.py), recomputed after every chunk of
rounds so the gate stops as soon as all of them are decided:

* `latency_ms`: MODEL's latency against --latency-ms;
* `latency_regression` (A/B, `--baseline OLD.onnx|.xml`): MODEL / OLD, both timed interleaved in this
  process; its interval is the paired bootstrap over rounds, at least AB_RATIO_FLOOR either side;
* `latency_ms_regression` (`--baseline report.json`): MODEL's latency against a figure another process
  stored, its interval widened by the between-process spread STORED_SPREAD (edgekd/interleave.py);
* `speedup` (`--min-speedup X --reference TEACHER`): TEACHER / MODEL, decided as the build decides its
  speed-up budget (the same ratio floor).

The A/B pair and the speed-up pair are timed in separate passes (`passes`): MODEL with OLD, then TEACHER
with MODEL. Three models in one rotation read a copy of a model against itself at 1.26x on a 2-core host (each
model's blocks then sit between two others, on a machine the third one has just heated); two models in a pass
is the arrangement the build times its speed-up in. MODEL's own latency comes from the first pass.

Each is decided on its interval (gate/verdict.py). As in Mozilla Perfherder, a regression fails only when it
is significant and beyond the limit: the whole interval of the ratio above 1 + --max-regression.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekd.figures import Figure
from edgekd.gate.verdict import decide, regression_limit
from edgekd.interleave import AB_RATIO_FLOOR, STORED_SPREAD, Interleaved


@dataclass(frozen=True)
class Check:
    """One latency verdict of a timing pass: its figure (measured here, with its interval) against a limit."""

    name: str
    limit: float
    figure: Figure
    at_least: bool = False  # the limit is a minimum (a speed-up)

    @property
    def verdict(self) -> str:
        return decide(self.figure.interval, self.limit, self.at_least)


def widened(interval: tuple[float, float]) -> tuple[float, float]:
    """This process's interval, widened by the spread between processes, for comparing with a stored figure."""
    return interval[0] * (1 - STORED_SPREAD), interval[1] * (1 + STORED_SPREAD)


def passes(plan) -> list[tuple[str, ...]]:
    """The timing passes the gate runs, each a few models timed interleaved; MODEL is in every one."""
    out = []
    if plan.baseline_model is not None:
        out.append(("model", "baseline"))
    if plan.reference_timed is not None:
        out.append(("reference", "model"))
    return out or [("model",)]


def checks(plan, timed: Interleaved, first: bool = True) -> list[Check]:
    """The latency verdicts one pass decides from what `timed` holds so far: the ratio of its pair, and,
    in the `first` pass, MODEL's own latency against --latency-ms and a stored baseline."""
    cfg, pct = plan.cfg, plan.cfg.max_regression_pct
    value, interval = timed.latency_ms("model"), timed.interval_ms("model")
    how = f"{cfg.statistic} of interleaved blocks, {timed.rounds} rounds, batch {plan.target.batch_size}"
    out = []
    if first and plan.budgets.latency_ms is not None:
        out.append(Check("latency_ms", plan.budgets.latency_ms, Figure(value, "measured", interval, how)))
    if first and plan.baseline is not None and plan.baseline.latency_ms is not None:
        out.append(Check("latency_ms_regression", regression_limit(plan.baseline.latency_ms, pct), Figure(
            value, "measured", widened(interval),
            f"stored baseline: {plan.baseline.latency_ms:.4g} ms from {plan.baseline.path} + {pct:g}%; this "
            f"process's interval widened by {100 * STORED_SPREAD:g}% either side for the spread between processes; "
            f"{how}")))
    if "baseline" in timed.blocks_ms:
        r = timed.speedup("model", "baseline", AB_RATIO_FLOOR)
        out.append(Check("latency_regression", regression_limit(1.0, pct), Figure(
            r.value, "measured", r.interval, f"A/B: MODEL / {cfg.baseline.name} latency, the two timed interleaved in "
            f"one process; limit 1 + {pct:g}%; paired-bootstrap 95% interval; {how}")))
    if "reference" in timed.blocks_ms and plan.budgets.min_speedup is not None:
        r = timed.speedup("reference", "model")
        out.append(Check("speedup", plan.budgets.min_speedup, Figure(
            r.value, "measured", r.interval, f"{cfg.reference.name} / MODEL latency on {plan.target.runtime}, the two "
            f"timed interleaved in one process as the build times its speed-up; {how}"), at_least=True))
    return out


def all_decided(plan, timed: Interleaved, first: bool = True) -> bool:
    return all(c.verdict != "inconclusive" for c in checks(plan, timed, first))
