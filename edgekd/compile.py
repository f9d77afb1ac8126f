"""Compile the student (at the target's precision) and the teacher (fp32, for a fair speed comparison)
for the target runtime; skipped with the reason where that runtime cannot run here."""

from __future__ import annotations

import json
from pathlib import Path

from edgekd.runtimes import Artifact, create_backend


def save_artifact(artifact: Artifact) -> None:
    """Beside the artifact, so `edgekd check` on that file knows how it was built."""
    meta = artifact.path.with_suffix(artifact.path.suffix + ".json")
    meta.write_text(json.dumps(artifact.to_dict(), indent=2))


def run_compile(ctx, student_onnx: Path, teacher_onnx: Path) -> tuple[dict, str]:
    """Returns ({"student": Artifact, "teacher": Artifact | None}, skip reason or "")."""
    backend = create_backend(ctx.target.runtime)
    reason = backend.unavailable_reason()
    if reason:
        ctx.console.print(f"[bold]compile[/]: skipped: {reason}; the ONNX model is the artifact")
        return {"student": Artifact(student_onnx, "onnx", "fp32", {"format": "onnx"}), "teacher": None}, reason
    folder = ctx.stage_dir("compile")
    calibration = ctx.data.split("calib")[0] if ctx.target.precision == "int8" else None
    ctx.console.print(f"[bold]compile[/]: student -> {backend.name} {ctx.target.precision}; teacher -> fp32")
    student = backend.compile(student_onnx, folder, ctx.target.precision, calibration, ctx.profile.arch)
    teacher = backend.compile(teacher_onnx, folder, "fp32", None, ctx.profile.arch)
    for artifact in (student, teacher):
        save_artifact(artifact)
    return {"student": student, "teacher": teacher}, ""
