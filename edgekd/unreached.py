"""What a build that stopped early still reports: every budget (those no stage reached marked so, with the stage
that stopped the run) and the teacher's figures that were known by then."""

from __future__ import annotations

from edgekd.report import BudgetResult, Report


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


def known_teacher_figures(ctx, state: dict) -> dict:
    """The teacher's accuracy if a stage measured it, and its predicted latency from the search."""
    out = {}
    if "teacher_accuracy" in ctx.__dict__:  # computed (cached_property) by distill or compile; not recomputed
        out["accuracy"] = ctx.teacher_accuracy
    search = state.get("search")
    if search is None:  # the search failed, but wrote what it priced (the teacher included) first
        import json

        path = ctx.out / "search" / "search.json"
        try:
            search = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            search = {}
    limits = search.get("limits", {}) if isinstance(search, dict) else {}
    predicted = limits.get("teacher_latency_ms") if isinstance(limits, dict) else None
    if isinstance(predicted, dict) and predicted.get("value") is not None:
        out |= {"latency_ms": predicted["value"], "latency_source": "predicted"}
    return out
