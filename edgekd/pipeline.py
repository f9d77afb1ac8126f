"""build(): the stages of edgekd/stages in order, each taking the previous stage's Result, budgets checked
after each stage.

A stage that fails (a budget that cannot be met, a parity failure) stops the run; the report is still
written with that stage failed and the later ones skipped, and the CLI exits 1.
"""

from __future__ import annotations

import time
from dataclasses import replace

from rich.markup import escape

from edgekd.context import Context
from edgekd.errors import StageFailed
from edgekd.report import Report, StageRecord, environment, print_summary, write_report
from edgekd.results import SearchResult
from edgekd.rundir import staged_run
from edgekd.runtimes import create_backend
from edgekd.stages import STAGES
from edgekd.unreached import complete_budgets, known_teacher_figures


def build(ctx: Context, overwrite: bool = False) -> Report:
    """The whole run in a staging folder that replaces OUT when it ends (edgekd.rundir)."""
    with staged_run(ctx.out, overwrite) as staging:
        report = _build(replace(ctx, out=staging))
    ctx.console.print(f"report: {ctx.run.report_json}", markup=False)
    return report


def _new_report(ctx: Context) -> Report:
    t, data = ctx.target, ctx.data
    report = Report(target={"name": t.name, "profile": ctx.profile.name, "runtime": t.runtime,
                            "precision": t.precision, "batch_size": t.batch_size},
                    seed=ctx.cfg.seed,
                    extra={"preprocessing": data.preprocessing.as_dict(),
                           "data": {"source": data.source, "classes": data.num_classes,
                                    "train": len(data.train_idx), "val": len(data.val_idx),
                                    "calibration": len(data.calib_idx)},
                           "distillation": ctx.cfg.distill.model_dump()})
    report.teacher = {"source": ctx.teacher.source, "params": ctx.teacher.params}
    ctx.track.fill_report(ctx, report)  # a text build: its tokenisation and task (edgekd/tracks/text.py)
    return report


def _build(ctx: Context) -> Report:
    ctx.out.mkdir(parents=True, exist_ok=True)
    ctx.save_config()
    report = _new_report(ctx)
    previous, search, failed = None, None, ""
    for stage in STAGES:
        if failed:
            report.stages.append(StageRecord(stage.NAME, "skipped", 0.0, f"not run: {failed} failed"))
            continue
        start = time.perf_counter()
        try:
            previous = stage.run(ctx, previous)
            stage.fill_report(report, previous, ctx)
            report.stages.append(StageRecord(stage.NAME, "skipped" if previous.skipped else "passed",
                                             time.perf_counter() - start, previous.skipped))
            search = previous if isinstance(previous, SearchResult) else search
        except StageFailed as e:
            report.budgets = report.budgets or list(e.budgets)
            report.stages.append(StageRecord(stage.NAME, "failed", time.perf_counter() - start, str(e)))
            ctx.console.print(f"[red]{stage.NAME} failed[/]: {escape(str(e))}")
            failed = stage.NAME
    if failed:
        complete_budgets(report, ctx.budgets, failed)
        report.teacher = known_teacher_figures(ctx, search) | report.teacher
    report.environment = environment(create_backend(ctx.target.runtime).versions())
    write_report(report, ctx.out)
    print_summary(report, ctx.console)
    return report
