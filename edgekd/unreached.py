"""What a build that stopped early still reports: every budget (those no stage reached marked so, with the stage
that stopped the run) and the teacher's figures that were known by then."""

from __future__ import annotations

import json

from edgekd.figures import Figure, Figures
from edgekd.report import BudgetResult, Report
from edgekd.results import SearchResult, teacher_latency


def budget_name(field: str) -> str:
    """Budgets field -> report name: max_accuracy_drop -> accuracy_drop, min_speedup -> speedup."""
    return field.removeprefix("max_").removeprefix("min_")


def complete_budgets(report: Report, budgets, stopped_at: str) -> None:
    """Append each budget that has a limit but no result yet, with passed None."""
    have = {b.name for b in report.budgets}
    for field, limit in budgets.model_dump().items():
        name = budget_name(field)
        if limit is not None and name not in have:
            report.budgets.append(BudgetResult(name, limit, None, "", None, None,
                                               f"not reached: {stopped_at} stopped the run"))


def known_teacher_figures(ctx, search: SearchResult | None) -> dict:
    """The teacher's accuracy if a stage measured it, and its predicted latency from the search."""
    out = {}
    if "teacher_accuracy" in ctx.__dict__:  # computed (cached_property) by distill or compile; not recomputed
        out["accuracy"] = ctx.teacher_accuracy
    if search is not None:
        latency = search.teacher_latency_ms
    else:  # the search failed, but wrote what it priced (the teacher included) first
        try:
            latency = teacher_latency(json.loads(ctx.run.search_json.read_text()))
        except (OSError, ValueError):
            latency = None
    if latency is not None:
        out |= Figures(Figure(latency, "predicted")).as_dict()
    return out
