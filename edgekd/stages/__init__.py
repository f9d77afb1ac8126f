"""The stages of a build, in order. Each module has NAME, `run(ctx, previous) -> Result` (previous: the
result of the stage before it, edgekd/results.py) and `fill_report(report, result, ctx)`.
edgekd/pipeline.py runs them in a loop; docs/architecture.md draws the flow."""

from __future__ import annotations

from edgekd.stages import check, compile, distill, export, search

STAGES = (search, distill, export, compile, check)
NAMES = tuple(stage.NAME for stage in STAGES)
