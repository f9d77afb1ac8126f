"""The export stage: the distilled student (and a torch teacher) -> ONNX, checked by onnx.checker and for parity
with torch through onnxruntime (the track's export: edgekd/onnx_export for images, edgekd/text/export.py)."""

from __future__ import annotations

from edgekd.report import Report
from edgekd.results import DistillResult, ExportResult

NAME = "export"


def run(ctx, previous: DistillResult) -> ExportResult:
    """OUT/export/student.onnx and, for a torch teacher, OUT/teacher/teacher.onnx; writes OUT/export/export.json."""
    result = ctx.track.export(ctx, previous)
    result.save(ctx.run)
    p = result.student_parity
    ctx.console.print(f"  parity: {p.summary()}, max |diff| {p.max_abs_diff:.2e}")
    return result


def fill_report(report: Report, result: ExportResult, ctx) -> None:
    report.artifacts["onnx"] = ctx.run.relative(result.student_onnx)
    report.student["parity"] = result.student_parity.as_dict()
