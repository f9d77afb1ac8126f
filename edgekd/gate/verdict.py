"""Verdicts from intervals, the rule that keeps the gate from flaking.

A budget *passes* when the whole 95% interval of the gated figure is within the limit, *fails* when the
whole interval is beyond it, and is *inconclusive* when the interval straddles it. An unchanged model
whose budget is comfortably away from its latency therefore gets the same verdict every run; a model
right at its budget is reported as undecidable instead of passing or failing by noise. A figure without
an interval (accuracy on a fixed split) is its own interval.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

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


# Budgets whose limit is a minimum (decide(at_least=True)); every other limit is a maximum.
AT_LEAST = frozenset({"speedup", "embedding_cosine", "neighbour_agreement"})
_POLICY = re.compile(r"counted as (pass|fail) by --inconclusive")


def recheck(b: BudgetResult) -> BudgetResult:
    """The budget with the verdict its own figures give by the rule above, as `edgekd report` redraws a stored
    report: an edited value (999 ms against a 5 ms limit stored as passed) or an edited limit gets the
    verdict that follows from it. The policies the gate applied (--inconclusive, --require-measured) are
    read back from the notes budget_result left in `detail`. A budget the run never reached, or one without
    a limit, is left as it is. A NaN or infinite figure is bad input: no verdict follows from it."""
    figures = [b.value, b.limit, *(b.interval or ())]
    bad = [v for v in figures if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                                    or not math.isfinite(v))]
    if bad:
        raise InputError(f"budget '{b.name}': {bad[0]!r} is not a finite number, so no verdict follows from it; "
                         "fix the figure or rerun the build/check")
    if b.passed is None or b.limit is None or b.value is None:
        return b
    interval = tuple(b.interval) if b.interval else (b.value, b.value)
    if interval[0] > interval[1]:
        raise InputError(f"budget '{b.name}': interval {list(interval)} is reversed")
    verdict = decide(interval, b.limit, b.name in AT_LEAST)
    policy = _POLICY.search(b.detail or "")
    if verdict == "inconclusive" and policy:
        verdict = policy.group(1)
    if "--require-measured" in (b.detail or "") and b.source != "measured":
        verdict = "fail"
    return replace(b, passed=verdict == "pass", verdict=verdict)


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
