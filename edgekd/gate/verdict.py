"""Verdicts from intervals, the rule that keeps the gate from flaking.

A budget *passes* when the whole 95% interval of the gated figure is within the limit, *fails* when the
whole interval is beyond it, and is *inconclusive* when the interval straddles it. An unchanged model
whose budget is comfortably away from its latency therefore gets the same verdict every run; a model
right at its budget is reported as undecidable instead of passing or failing by noise. A figure without
an interval (accuracy on a fixed split) is its own interval.
"""

from __future__ import annotations

from edgekd.config import Budgets
from edgekd.errors import Inconclusive, InputError, StageFailed
from edgekd.figures import Figure, Figures
from edgekd.report import BudgetResult

EXIT_CODES = {"pass": 0, "fail": StageFailed.exit_code, "inconclusive": Inconclusive.exit_code}


def decide(interval: tuple[float, float], limit: float, at_least: bool = False) -> str:
    """pass | fail | inconclusive for a figure whose 95% interval is `interval`; the limit is a maximum
    (latency, memory, accuracy drop) or, with `at_least`, a minimum (speed-up)."""
    lo, hi = interval
    if lo > hi:
        raise ValueError(f"interval {interval} is reversed")
    if (lo >= limit) if at_least else (hi <= limit):
        return "pass"
    if (hi < limit) if at_least else (lo > limit):
        return "fail"
    return "inconclusive"


def budget_result(name: str, limit: float, value: float, source: str, interval: tuple[float, float] | None,
                  detail: str = "", inconclusive: str = "exit3", require_measured: bool = False,
                  at_least: bool = False) -> BudgetResult:
    """The budget's verdict, after the --inconclusive policy and --require-measured are applied.

    The reason a verdict was changed by a policy is kept in `detail`, so the report still says the
    interval straddled the limit or that the value was only predicted.
    """
    verdict = decide(interval or (value, value), limit, at_least)
    notes = [detail] if detail else []
    if verdict == "inconclusive" and inconclusive != "exit3":
        notes.append(f"the interval straddles the limit; counted as {inconclusive} by --inconclusive {inconclusive}")
        verdict = inconclusive
    if require_measured and source != "measured" and verdict != "fail":
        notes.append("predicted, and --require-measured counts only measured values")
        verdict = "fail"
    return BudgetResult(name, limit, value, source, verdict == "pass", tuple(interval) if interval else None,
                        "; ".join(notes), verdict)


def regression_limit(baseline: float, max_regression_pct: float) -> float:
    """The largest value still within `max_regression_pct` percent of the baseline's."""
    return baseline * (1 + max_regression_pct / 100)


def parse_percent(text: str, option: str = "--max-regression") -> float:
    """'5%' or '5' -> 5.0 (percent)."""
    raw = text.strip().removesuffix("%").strip()
    try:
        pct = float(raw)
    except ValueError:
        raise InputError(f"{option} '{text}': expected a percentage such as 5%") from None
    if not 0 <= pct < 1000:
        raise InputError(f"{option} '{text}': must be between 0% and 1000%")
    return pct


def exit_code(verdict: str) -> int:
    return EXIT_CODES[verdict]

def decide_budgets(budgets: Budgets, figures: Figures, speedup: Figure, accuracy_drop: float,
                   blocker: str | None = None) -> list[BudgetResult]:
    """Every budget listed, each decided by the interval rule; a budget without a limit is listed as
    unchecked (passed, limit null). `blocker`: why latency and memory are predicted, where they are."""
    results = []
    for name, limit, f in (("latency_ms", budgets.latency_ms, figures.latency),
                           ("memory_mb", budgets.memory_mb, figures.memory)):
        if limit is None:
            results.append(BudgetResult(name, None, f.value, f.source, True, f.interval, "no limit set"))
            continue
        results.append(budget_result(name, limit, f.value, f.source, f.interval, blocker or ""))
    limit = budgets.max_accuracy_drop
    what = "percentage points, compiled student vs teacher on the held-out split"
    results.append(BudgetResult("accuracy_drop", None, accuracy_drop, "measured", True, detail=what)
                   if limit is None else budget_result("accuracy_drop", limit, accuracy_drop, "measured", None, what))
    results.append(budget_result("speedup", budgets.min_speedup or 1.0, speedup.value, speedup.source,
                                 speedup.interval, speedup.detail or "", at_least=True))
    return results
