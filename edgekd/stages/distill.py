"""The distill stage: the searched student trained from the teacher (edgekd/distill), its accuracy budget
checked on torch accuracy before export."""

from __future__ import annotations

from edgekd.distill.stage import gain_text
from edgekd.report import Report
from edgekd.results import DistillResult, SearchResult

NAME = "distill"


def run(ctx, previous: SearchResult, resume: bool = False, nproc_per_node: int = 1) -> DistillResult:
    """Writes OUT/distill/ (student, history, checkpoints); over the accuracy budget raises BudgetFailed. The
    track's training loop runs (edgekd/distill/stage.py, edgekd/text/distill.py)."""
    return DistillResult.from_info(ctx.track.distill(ctx, previous.pick, resume, nproc_per_node))


def fill_report(report: Report, result: DistillResult, ctx) -> None:
    report.extra["distillation"]["method"] = result.method  # what ran: `auto` (the default) resolved per student
    report.student.update({"arch": result.arch, "params": result.params, "method": result.method,
                           "torch_accuracy": result.torch_accuracy, "batch_size_used": result.batch_size_used})
    if "teacher_seconds" in result.info:  # text: the teacher ran once, its outputs reused (edgekd/text/distill.py)
        report.extra["distillation"].update({k: result.info[k] for k in (
            "init", "seconds", "teacher_seconds", "epochs", "max_epochs", "best_epoch")})
    if result.scratch is not None:  # --baseline-scratch: what distillation bought over labels alone (torch, held out)
        report.extra["baseline_scratch"] = {
            "scratch_accuracy": result.scratch.torch_accuracy, "distilled_accuracy": result.torch_accuracy,
            "teacher_accuracy": ctx.teacher_accuracy, "gain_points": result.scratch.gain_points,
            "method": result.method, "epochs": result.epochs, "summary": gain_text(result.info, ctx.teacher_accuracy)}
