"""The check stage: accuracy of the compiled artifact through its own runtime, latency and memory
measured where the target's runtime and device are here, predicted from the profile otherwise."""

from __future__ import annotations

import platform

import onnx

from edgekd.config import Budgets, Profile
from edgekd.cost.roofline import predict_onnx
from edgekd.measure import time_calls
from edgekd.report import BudgetResult
from edgekd.runtimes import Artifact, create_backend, evaluate_accuracy
from edgekd.runtimes.memprobe import measure_memory_mb


def local_measurement_blocker(profile: Profile, runtime: str) -> str | None:
    """None when timing on this host stands for the target device; otherwise why it cannot."""
    reason = create_backend(runtime).unavailable_reason()
    if reason:
        return reason
    if profile.detect or platform.machine() in profile.measurable_on:
        return None
    return f"this host is not a {profile.name} ({profile.arch}); connect one with --remote ssh://..."


def local_threads(profile: Profile) -> int:
    """The profile's threads, but no more than this host's cores: a 4-thread profile timed on 2 cores would
    measure oversubscription, not the model."""
    from edgekd.hostinfo import usable_cores

    return min(profile.threads, usable_cores())


def artifact_figures(artifact: Artifact, onnx_path, profile: Profile, precision: str, batch: int,
                     input_shape: tuple[int, ...], blocker: str | None) -> dict:
    """Latency and memory of one artifact: measured if nothing blocks it, else predicted."""
    shape = (batch, *input_shape)
    if blocker is None:
        import numpy as np

        session = create_backend(artifact.runtime).load(artifact, local_threads(profile))
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        stats = time_calls(lambda: session.run(x))
        memory = measure_memory_mb(artifact, shape, local_threads(profile))
        return {"latency_ms": stats.p50_ms, "latency_interval": stats.interval_ms, "latency_source": "measured",
                "latency_stats": stats.as_dict(), "memory_mb": memory, "memory_source": "measured",
                "session": session.settings}
    latency, memory = predict_onnx(onnx.load(str(onnx_path)), profile, precision, batch)
    return {"latency_ms": latency.value, "latency_interval": latency.interval, "latency_source": "predicted",
            "latency_detail": latency.detail, "memory_mb": memory.value, "memory_interval": memory.interval,
            "memory_source": "predicted", "blocker": blocker}


def compare_budgets(budgets: Budgets, student: dict, accuracy_drop: float) -> list[BudgetResult]:
    """Every budget listed; a missing limit is reported as unchecked (passed, limit null)."""
    results = []
    for name, limit, key in (("latency_ms", budgets.latency_ms, "latency"), ("memory_mb", budgets.memory_mb, "memory")):
        value = student[f"{key}_ms" if key == "latency" else f"{key}_mb"]
        interval = student.get(f"{key}_interval")
        results.append(BudgetResult(name, limit, value, student[f"{key}_source"],
                                    limit is None or value <= limit,
                                    tuple(interval) if interval else None,
                                    student.get("blocker") or ""))
    limit = budgets.max_accuracy_drop
    results.append(BudgetResult("accuracy_drop", limit, accuracy_drop, "measured",
                                limit is None or accuracy_drop <= limit,
                                detail="percentage points, compiled student vs teacher on the held-out split"))
    return results


def run_check(ctx, artifacts: dict, student_onnx, teacher_onnx) -> tuple[dict, dict, list[BudgetResult]]:
    """(student figures, teacher figures, budget results) for the compiled artifacts in `artifacts`."""
    x, y = ctx.data.split("val")
    student_art: Artifact = artifacts["student"]
    if getattr(ctx.cfg, "remote", None) and student_art.runtime != "onnx":  # everything measured on the device
        from edgekd.remote import remote_check

        student, teacher = remote_check(ctx, artifacts)
        drop = 100 * (ctx.teacher_accuracy - student["accuracy"])
        return student, teacher, compare_budgets(ctx.budgets, student, drop)
    runs_here = student_art.runtime != "onnx"
    eval_art = student_art if runs_here else Artifact(student_onnx, "onnxruntime", "fp32")
    session = create_backend(eval_art.runtime).load(eval_art, ctx.profile.threads)
    acc, _ = evaluate_accuracy(session, x, y)
    ctx.console.print(f"[bold]check[/]: accuracy {acc:.4f} through {eval_art.runtime} ({eval_art.precision})")
    blocker = local_measurement_blocker(ctx.profile, ctx.target.runtime)
    batch = ctx.target.batch_size
    # The shipped precision (the precision guard may ship float); the target's for an engine not built yet.
    precision = student_art.precision if runs_here else ctx.target.precision
    student = artifact_figures(eval_art, student_onnx, ctx.profile, precision, batch, ctx.input_shape, blocker)
    student["accuracy"] = acc
    student["evaluated_with"] = f"{eval_art.runtime} {eval_art.precision}" + (
        "" if runs_here else " (the ONNX artifact; the target runtime is not available here)")
    teacher_art = artifacts.get("teacher") or Artifact(teacher_onnx, "onnxruntime", "fp32")
    teacher = artifact_figures(teacher_art, teacher_onnx, ctx.profile, "fp32", batch, ctx.input_shape, blocker)
    teacher["accuracy"] = ctx.teacher_accuracy
    drop = 100 * (ctx.teacher_accuracy - acc)
    ctx.console.print(f"  student {student['latency_ms']:.3g} ms vs teacher {teacher['latency_ms']:.3g} ms "
                      f"({student['latency_source']})")
    return student, teacher, compare_budgets(ctx.budgets, student, drop)
