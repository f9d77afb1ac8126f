"""The search stage: a student picked within the budgets without training (edgekd/search)."""

from __future__ import annotations

import json

from edgekd.report import Report
from edgekd.results import SearchResult

NAME = "search"


def run(ctx, previous: None = None) -> SearchResult:
    """Writes OUT/search/search.json (and the image search's pareto.png); a search that finds nothing raises
    BudgetFailed. The track's search prices its own space (edgekd/search, edgekd/text/search.py) and both pick
    through one driver (edgekd/search/__init__.py pick_measured). A pinned student (--student-arch) skips it."""
    pinned = ctx.cfg.search.student_arch
    if pinned is not None:
        ctx.track.check_arch(ctx, pinned)  # an arch that cannot be built fails here, before any training
        ctx.console.print(f"[bold]search[/]: skipped, the student is pinned: {json.dumps(pinned)}", highlight=False)
        return SearchResult(pinned, skipped="the student is pinned (--student-arch)")
    return SearchResult.from_record(ctx.track.search(ctx))


def fill_report(report: Report, result: SearchResult, ctx) -> None:
    """Which score ranked the candidates and the candidates the pick was chosen among, each with its scores
    (OUT/search/search.json holds every candidate; report.html charts them)."""
    if result.skipped:
        report.extra["search"] = {"skipped": result.skipped}
        return
    report.extra["search"] = {"score": result.score, "scores_available": list(result.scores_available),
                              "considered": list(result.considered)}
