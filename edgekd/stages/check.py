"""The check stage: every budget of a build decided the way `edgekd check` decides it.

* Accuracy: the compiled artifact through its own runtime on the held-out split.
* Latency and speed-up: where the target's runtime runs here on hardware that stands for the target, the
  student and the teacher (fp32 on the same runtime, as it runs it by default) are timed as a pair,
  interleaved in one process (edgekd/interleave.py), so the speed-up has its own interval, and the teacher
  compressed without distillation in its own pairs (edgekd/measurable.py); on the --remote device the pair is
  timed there (`bench --against`); otherwise both are predicted by the profile's cost model.
* Memory: peak RSS the model adds, in fresh processes (their min..max is the interval).
* Verdicts: gate.verdict's interval rule (pass, fail, inconclusive), as in `edgekd check`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from edgekd.figures import Figure, Figures
from edgekd.measurable import local_measurement_blocker, local_threads, measure_here, predicted_speedup
from edgekd.remote import DeviceRun, measure_on_device
from edgekd.report import Report, speedup_text
from edgekd.results import CheckedModel, CheckResult, CompileResult
from edgekd.runtimes import Artifact, create_backend

NAME = "check"



def run(ctx, previous: CompileResult) -> CheckResult:
    """Figures and budget verdicts for the compiled artifacts (the compile stage's result)."""
    track, exported = ctx.track, previous.export
    student_art = previous.student
    alternatives = dict(previous.alternatives)  # figures are added below
    if ctx.cfg.remote and student_art.compiled:  # everything measured on the device
        return _on_device(ctx, previous)
    runs_here = student_art.compiled
    eval_art = student_art if runs_here else Artifact(exported.student_onnx, "onnxruntime", "fp32")
    threads = local_threads(ctx.profile)
    q = track.quality(ctx, track.outputs(ctx, create_backend(eval_art.runtime).load(eval_art, threads)))
    ctx.console.print(f"[bold]check[/]: {track.describe(q)} through {eval_art.runtime} ({eval_art.precision})")
    evaluated_with = f"{eval_art.runtime} {eval_art.precision}" + (
        "" if runs_here else " (the ONNX artifact; the target runtime is not available here)")
    s_session, t_session = {}, {}  # the runtime's session settings, where it runs here
    blocker = local_measurement_blocker(ctx.profile, ctx.target.runtime)
    seq = track.sequence_length(ctx)
    at = f" at batch {ctx.target.batch_size} and {seq} tokens" if seq else ""  # what a text model is timed at
    if blocker is None:
        teacher_art = previous.teacher or Artifact(exported.teacher_onnx, "onnxruntime", "fp32")
        s_fig, t_fig, settings, speedup, alternatives = measure_here(ctx, eval_art, teacher_art, alternatives,
                                                                     threads, at)
        s_session, t_session = settings["student"], settings["teacher"]
    else:
        precision = student_art.precision if runs_here else ctx.target.precision
        s_fig = track.predicted(ctx, exported.student_onnx, exported.arch, precision, blocker)
        t_fig = track.predicted(ctx, exported.teacher_onnx, None, "fp32", blocker)
        for name, alt in alternatives.items():
            alternatives[name] = replace(alt, figures=alt.figures | track.predicted(
                ctx, exported.teacher_onnx, None, alt.precision, blocker))
        speedup = predicted_speedup(t_fig.latency, s_fig.latency, f"{at.strip()}; {blocker}" if at else blocker)
    drop = 100 * (ctx.teacher_accuracy - q["accuracy"])
    results = track.budgets(ctx, s_fig, speedup, drop, q, blocker)
    short = track.shortfall(ctx, results, exported.arch, evaluated_with, speedup)
    if short:  # the build exits 1 (3 when only inconclusive): the student is not a result, and this says why
        ctx.console.print(short)
    where = "measured interleaved" if blocker is None else "predicted"
    if t_session.get("INFERENCE_PRECISION_HINT"):
        where += f"; the teacher as {ctx.target.runtime} runs it, {t_session['INFERENCE_PRECISION_HINT']}"
    ctx.console.print(f"  student {s_fig.latency.value:.3g} ms vs teacher {t_fig.latency.value:.3g} ms ({where}): "
                      + speedup_text(speedup))
    for name, alt in alternatives.items():
        if alt.student_speedup is not None:
            ctx.console.print(f"  student vs {name}, the teacher at {alt.precision}: "
                              + speedup_text(alt.student_speedup))
    return CheckResult(CheckedModel(q["accuracy"], s_fig, evaluated_with, s_session, track.details(ctx, q)),
                       CheckedModel(ctx.teacher_accuracy, t_fig, session=t_session,
                                    details=track.teacher_details(ctx)),
                       speedup, results, alternatives)


def _on_device(ctx, previous: CompileResult) -> CheckResult:
    """Student and teacher measured on the --remote device, the speed-up timed there as a pair, interleaved in one
    process (alternatives are not weighed there)."""
    heldout = ctx.run.folder("check") / "heldout.npz"  # the student's accuracy is evaluated on the device
    np.savez(heldout, x=ctx.data.split("val")[0], y=ctx.data.split("val")[1])
    s_run, t_run = (measure_on_device(ctx.cfg.remote, art, ctx.profile.threads, ctx.target.batch_size, data,
                                      against=against)
                    for art, data, against in ((previous.student, heldout, previous.teacher),
                                               (previous.teacher, None, None)))
    s_fig, t_fig = s_run.figures, t_run.figures
    student = CheckedModel(s_run.accuracy, s_fig, f"{previous.student.runtime} {previous.student.precision} on "
                           f"{s_run.url}", s_run.session, _on(s_run))
    teacher = CheckedModel(ctx.teacher_accuracy, t_fig, session=t_run.session, details=_on(t_run))
    pair = s_run.speedup_over
    speedup = Figure(pair["value"], "measured", tuple(pair["interval"]),
                     f"teacher / student on {ctx.cfg.remote}, timed as a pair interleaved in one process there: the "
                     f"median of {pair['rounds']} rounds' ratios, bootstrap 95% interval")
    drop = 100 * (ctx.teacher_accuracy - s_run.accuracy)
    return CheckResult(student, teacher, speedup, ctx.track.budgets(ctx, s_fig, speedup, drop, {}), {})


def _on(run: DeviceRun) -> dict:
    return {"device_state": run.device_state, "remote": run.url}


def fill_report(report: Report, result: CheckResult, ctx) -> None:
    report.student.update(result.student.as_dict() | {"speedup": result.speedup.as_dict()})
    report.teacher.update(result.teacher.as_dict() | {"precision": "fp32"})
    ran_at = (result.teacher.session or {}).get("INFERENCE_PRECISION_HINT")
    if ran_at:  # OpenVINO's execution precision for the fp32 teacher, as it runs it by default (bf16 or f32)
        report.teacher["execution_precision"] = ran_at
    report.budgets = result.budgets
    shipped = report.student.get("artifact", {}).get("precision")
    same = next((a for a in result.alternatives.values()
                 if a.student_speedup is not None and a.precision == shipped), None)
    if same is not None:  # beside the headline, which compares with the fp32 teacher
        report.student["speedup_same_precision"] = same.student_speedup.as_dict() | {"precision": same.precision}
    if result.alternatives:
        _weigh_alternatives(ctx, report, result)


def alternative_is_better(meets: bool, student_meets: bool, accuracy: float, student_accuracy: float,
                          speed: Figure, student_speed: Figure) -> bool:
    """The teacher compressed alone is the better deal when it meets every budget and the student does not,
    or when both meet them and it is at least as accurate and as fast by their intervals (its speed-up's
    interval reaches the student's): then distillation bought nothing the simpler model does not give."""
    if not meets:
        return False
    if not student_meets:
        return True
    return accuracy >= student_accuracy and speed.bounds[1] >= student_speed.bounds[0]


def _weigh_alternatives(ctx, report: Report, result: CheckResult) -> None:
    """Put the teacher compressed without distillation beside the student, judged on the same budgets (a
    text build's on the text ones); say plainly when it is the better deal (alternative_is_better), and ship
    it instead with `ship: best`. The exit code is then the verdict of what shipped."""
    report.extra["alternatives"] = {}
    s, s_speed = result.student.accuracy, result.speedup
    student_meets = all(b.passed for b in result.budgets)
    for name, alt in result.alternatives.items():
        latency = alt.figures.latency
        speed = alt.speedup or (
            predicted_speedup(result.teacher.figures.latency, latency, f"teacher fp32 / teacher {alt.precision}")
            if latency.source == "predicted" else
            Figure(result.teacher.figures.latency.value / latency.value, latency.source, None,
                   f"teacher fp32 / teacher {alt.precision}"))
        budgets = ctx.track.budgets(ctx, alt.figures, speed, alt.accuracy_drop, alt.quality)
        meets = all(b.passed for b in budgets)
        better = alternative_is_better(meets, student_meets, alt.accuracy, s, speed, s_speed)
        said = (f"{name}: accuracy {alt.accuracy:.4f} (drop {alt.accuracy_drop:.2f} points), "
                f"{speed.value:.2f}x faster than the teacher ({speed.source}) vs the distilled student's "
                f"{s:.4f} at {s_speed.value:.2f}x")
        verdict = ("BETTER than the distilled student: quantizing the teacher alone serves this target better"
                   + ("" if student_meets else " (it meets every budget; the student misses one)")
                   if better else "within the budgets but not better than the student" if meets
                   else "misses a budget")
        report.extra["alternatives"][name] = alt.as_dict() | {
            "artifact": ctx.run.relative(alt.artifact.path), "speedup": speed.value,
            "speedup_interval": list(speed.interval) if speed.interval else None, "meets_budgets": meets,
            "better_than_student": better}
        report.notes.append(f"{said}: {verdict}")
        if better and ctx.cfg.ship == "best":
            report.extra["distilled_student"] = dict(report.student)
            report.student = {"source": f"{ctx.teacher.source} ({name}, not distilled)", "accuracy": alt.accuracy,
                              "speedup": speed.as_dict(), "artifact": alt.artifact.to_dict()} | {
                k: v for k, v in Figures(alt.figures.latency).as_dict().items() if k != "latency_detail"}
            report.artifacts["compiled"] = ctx.run.relative(alt.artifact.path)
            report.budgets = budgets
            report.notes.append(f"ship: best: shipping {name} instead of the distilled student")
        if better:  # the terminal's last line (cli.build) names it, where a CI log's tail shows it
            report.extra["better_alternative"] = name
            report.extra["shipped"] = name if ctx.cfg.ship == "best" else "student"
        report.extra.setdefault("shipped", "student")
