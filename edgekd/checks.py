"""The check stage: every budget of a build decided the way `edgekd check` decides it.

* Accuracy: the compiled artifact through its own runtime on the held-out split.
* Latency and speed-up: where the target's runtime runs here on hardware that stands for the target, the
  student, the teacher (fp32 on the same runtime) and the teacher compressed without distillation are
  timed interleaved in one process (edgekd/interleave.py), so the speed-up has its own interval; on the
  --remote device they are measured there; otherwise both are predicted by the profile's cost model.
* Memory: peak RSS the model adds, in fresh processes (their min..max is the interval).
* Verdicts: gate.verdict's interval rule (pass, fail, inconclusive), as in `edgekd check`.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

import numpy as np
import onnx

from edgekd.config import Budgets, Profile
from edgekd.cost.roofline import predict_onnx
from edgekd.gate.verdict import budget_result
from edgekd.interleave import load_replicas, time_sessions
from edgekd.report import BudgetResult, speedup_text
from edgekd.runtimes import Artifact, create_backend, evaluate_accuracy
from edgekd.runtimes.memprobe import memory_figures

CHECK_SECONDS_PER_MODEL = 2.0  # interleaved timing per model in the final check


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


def predicted_figures(onnx_path, profile: Profile, precision: str, batch: int, runtime: str, blocker: str) -> dict:
    """Latency and memory of an ONNX model predicted by the cost model for `runtime` on the profile."""
    latency, memory = predict_onnx(onnx.load(str(onnx_path)), profile, precision, batch, runtime=runtime)
    return {"latency_ms": latency.value, "latency_interval": list(latency.interval), "latency_source": "predicted",
            "latency_detail": latency.detail, "memory_mb": memory.value, "memory_interval": list(memory.interval),
            "memory_source": "predicted", "memory_detail": memory.detail, "blocker": blocker}


@dataclass(frozen=True)
class CheckResult:
    student: dict  # figures of the shipped artifact
    teacher: dict
    budgets: list[BudgetResult]
    alternatives: dict[str, dict]  # the teacher compressed without distillation, with its figures


def decide_budgets(budgets: Budgets, student: dict, speedup: dict, accuracy_drop: float,
                   detail: str = "") -> list[BudgetResult]:
    """Every budget listed, each decided by the interval rule; a budget without a limit is listed as
    unchecked (passed, limit null)."""
    results = []
    for name, limit, key in (("latency_ms", budgets.latency_ms, "latency"), ("memory_mb", budgets.memory_mb, "memory")):
        value, interval = student[f"{key}_{name.split('_')[1]}"], student.get(f"{key}_interval")
        source = student[f"{key}_source"]
        if limit is None:
            results.append(BudgetResult(name, None, value, source, True, tuple(interval) if interval else None,
                                        "no limit set"))
            continue
        results.append(budget_result(name, limit, value, source, tuple(interval) if interval else None,
                                     student.get("blocker") or detail))
    limit = budgets.max_accuracy_drop
    what = "percentage points, compiled student vs teacher on the held-out split"
    results.append(BudgetResult("accuracy_drop", None, accuracy_drop, "measured", True, detail=what)
                   if limit is None else budget_result("accuracy_drop", limit, accuracy_drop, "measured", None, what))
    interval = speedup.get("interval")
    results.append(budget_result("speedup", budgets.min_speedup or 1.0, speedup["value"], speedup["source"],
                                 tuple(interval) if interval else None, speedup["detail"], at_least=True))
    return results


def run_check(ctx, compiled: dict, student_onnx, teacher_onnx) -> CheckResult:
    """Figures and budget verdicts for the compiled artifacts in `compiled` (the compile stage's result)."""
    x, y = ctx.data.split("val")
    student_art: Artifact = compiled["student"]
    alternatives = dict(compiled.get("alternatives", {}))
    if ctx.cfg.remote and student_art.runtime != "onnx":  # everything measured on the device
        from edgekd.remote import remote_check

        student, teacher = remote_check(ctx, compiled)
        alternatives = {}  # timed one by one on the device, not beside the student: not weighed
        speedup = {"value": teacher["latency_ms"] / student["latency_ms"], "source": "measured",
                   "detail": f"teacher / student p50, each timed alone on {ctx.cfg.remote} (not interleaved)"}
        student["speedup"] = speedup
        drop = 100 * (ctx.teacher_accuracy - student["accuracy"])
        return CheckResult(student, teacher, decide_budgets(ctx.budgets, student, speedup, drop),
                           alternatives)
    runs_here = student_art.runtime != "onnx"
    eval_art = student_art if runs_here else Artifact(student_onnx, "onnxruntime", "fp32")
    threads = local_threads(ctx.profile)
    acc, _ = evaluate_accuracy(create_backend(eval_art.runtime).load(eval_art, threads), x, y)
    ctx.console.print(f"[bold]check[/]: accuracy {acc:.4f} through {eval_art.runtime} ({eval_art.precision})")
    student = {"accuracy": acc, "evaluated_with": f"{eval_art.runtime} {eval_art.precision}" + (
        "" if runs_here else " (the ONNX artifact; the target runtime is not available here)")}
    teacher = {"accuracy": ctx.teacher_accuracy}
    blocker = local_measurement_blocker(ctx.profile, ctx.target.runtime)
    batch, shape = ctx.target.batch_size, (ctx.target.batch_size, *ctx.input_shape)
    if blocker is None:
        teacher_art = compiled.get("teacher") or Artifact(teacher_onnx, "onnxruntime", "fp32")
        arts = {"teacher": teacher_art, "student": eval_art} | {n: a["artifact"] for n, a in alternatives.items()}
        xb = np.ascontiguousarray(x[:1].repeat(batch, 0))
        sessions = {n: load_replicas(a, threads) for n, a in arts.items()}
        with ctx.console.status(f"timing the student, the teacher and {len(alternatives)} alternative(s) "
                                f"interleaved on {ctx.target.runtime}"):
            timed = time_sessions(sessions, xb, CHECK_SECONDS_PER_MODEL * len(arts))
        student |= timed.figures("student") | memory_figures(eval_art, shape, threads)
        student["session"] = sessions["student"][0].settings
        teacher |= timed.figures("teacher") | memory_figures(teacher_art, shape, threads) | {
            "session": sessions["teacher"][0].settings}
        ratio = timed.speedup("teacher", "student")
        speedup = {"value": ratio.value, "interval": list(ratio.interval), "source": "measured",
                   "detail": f"teacher / student p50 on {ctx.target.runtime}, timed interleaved in one process "
                             f"({timed.rounds} rounds); paired-bootstrap 95% interval"}
        for name, alt in alternatives.items():
            r = timed.speedup("teacher", name)
            alt |= timed.figures(name) | {"speedup": r.value, "speedup_interval": list(r.interval)}
            alt |= memory_figures(alt["artifact"], shape, threads)
    else:
        precision = student_art.precision if runs_here else ctx.target.precision
        student |= predicted_figures(student_onnx, ctx.profile, precision, batch, ctx.target.runtime, blocker)
        teacher |= predicted_figures(teacher_onnx, ctx.profile, "fp32", batch, ctx.target.runtime, blocker)
        for alt in alternatives.values():
            alt |= predicted_figures(teacher_onnx, ctx.profile, alt["precision"], batch, ctx.target.runtime, blocker)
        speedup = {"value": teacher["latency_ms"] / student["latency_ms"], "source": "predicted",
                   "detail": "teacher / student, both predicted by the same cost model (its shared error cancels "
                             f"in part; compared as a point): {blocker}"}
    student["speedup"] = speedup
    drop = 100 * (ctx.teacher_accuracy - acc)
    where = "measured interleaved" if blocker is None else "predicted"
    ctx.console.print(f"  student {student['latency_ms']:.3g} ms vs teacher {teacher['latency_ms']:.3g} ms ({where}): "
                      + speedup_text(speedup))
    return CheckResult(student, teacher, decide_budgets(ctx.budgets, student, speedup, drop), alternatives)
