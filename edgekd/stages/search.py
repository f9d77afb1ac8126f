"""The search stage: a student picked within the budgets without training (edgekd/search)."""

from __future__ import annotations

import json

import edgekd.search as search_lib
from edgekd.report import Report
from edgekd.results import SearchResult
from edgekd.text.search import run_text_search

NAME = "search"


def run(ctx, previous: None = None) -> SearchResult:
    """Writes OUT/search/search.json and pareto.png; a search that finds nothing raises BudgetFailed. A
    transformer teacher searches the transformer space (edgekd/text/search.py). A pinned student
    (--student-arch) skips the search."""
    pinned = ctx.cfg.search.student_arch
    if pinned is not None:
        if not ctx.is_text:
            ctx.new_student(pinned)  # an arch that cannot be built fails here, before any training
        ctx.console.print(f"[bold]search[/]: skipped, the student is pinned: {json.dumps(pinned)}", highlight=False)
        return SearchResult(pinned, skipped="the student is pinned (--student-arch)")
    if ctx.is_text:
        return SearchResult.from_record(run_text_search(ctx))
    return SearchResult.from_record(search_lib.run_search(ctx))


def fill_report(report: Report, result: SearchResult, ctx) -> None:
    """Which score ranked the candidates and the candidates the pick was chosen among, each with its scores
    (OUT/search/search.json holds every candidate; report.html charts them)."""
    if result.skipped:
        report.extra["search"] = {"skipped": result.skipped}
        return
    report.extra["search"] = {"score": result.score, "scores_available": list(result.scores_available),
                              "considered": list(result.considered)}
