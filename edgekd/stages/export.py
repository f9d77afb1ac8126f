"""The export stage: the distilled student (and a torch teacher) -> ONNX with a dynamic batch, checked by
onnx.checker and for parity with torch through onnxruntime (edgekd/onnx_export)."""

from __future__ import annotations

import json

import edgekd
from edgekd.distill.stage import load_student
from edgekd.onnx_export import export_checked, teacher_onnx
from edgekd.report import Report
from edgekd.results import DistillResult, ExportResult
from edgekd.text import export as text_export
from edgekd.text.models import load_student as load_text_student

NAME = "export"
PARITY_SAMPLES = 512  # held-out inputs the parity check runs


def run(ctx, previous: DistillResult | None = None) -> ExportResult:
    """Student (from OUT/distill: its weights are there, not in `previous`) and, for a torch teacher, the
    teacher -> OUT/export/student.onnx, OUT/teacher/teacher.onnx; writes OUT/export/export.json."""
    if ctx.is_text:
        return _text(ctx)
    student, info = load_student(ctx.run.distill)
    ctx.run.folder("export")
    metadata = {"preprocessing": ctx.data.preprocessing.as_dict(), "classes": ctx.data.classes,
                "arch": info["arch"], "teacher": ctx.teacher.source, "edgekd": edgekd.__version__}
    ctx.console.print("[bold]export[/]: student -> ONNX (dynamic batch), checker, parity through onnxruntime")
    student_parity = export_checked(student, ctx.input_shape, ctx.run.student_onnx, metadata,
                                    ctx.data.split("val")[0][:PARITY_SAMPLES], "student")
    teacher, teacher_parity = teacher_onnx(ctx)
    result = ExportResult(ctx.run.student_onnx, teacher, student_parity, teacher_parity)
    result.save(ctx.run)
    ctx.console.print(f"  parity: max |diff| {student_parity.max_abs_diff:.2e}, top-1 agreement "
                      f"{student_parity.top1_agreement:.2%}")
    return result


def _text(ctx) -> ExportResult:
    """A transformer student: input_ids + attention_mask, dynamic batch and sequence (edgekd/text/export.py)."""
    info = json.loads(ctx.run.student_json.read_text())
    student = load_text_student(ctx.run.distill / "student", ctx.teacher.task)
    ctx.run.folder("export")
    ctx.console.print("[bold]export[/]: student -> ONNX (dynamic batch and sequence), checker, parity through "
                      "onnxruntime")
    feeds = ctx.data.batches(ctx.data.val_idx[:text_export.PARITY_SAMPLES], 32)
    meta = text_export.metadata(ctx, {"arch": info["arch"]})
    student_parity = text_export.export_checked(student, ctx.run.student_onnx, meta, feeds, "student")
    teacher, teacher_parity = text_export.teacher_onnx(ctx)
    result = ExportResult(ctx.run.student_onnx, teacher, student_parity, teacher_parity)
    result.save(ctx.run)
    cos = student_parity.mean_cosine
    ctx.console.print("  parity: " + (f"mean cosine {cos:.6f}" if cos is not None else
                                      f"top-1 agreement {student_parity.top1_agreement:.2%}")
                      + f", max |diff| {student_parity.max_abs_diff:.2e}")
    return result


def fill_report(report: Report, result: ExportResult, ctx) -> None:
    report.artifacts["onnx"] = ctx.run.relative(result.student_onnx)
    report.student["parity"] = result.student_parity.as_dict()
