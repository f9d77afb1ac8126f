"""build(): search -> distill -> export -> compile -> check, budgets checked after each stage.

A stage that fails (a budget that cannot be met, a parity failure) stops the run; the report is still
written with that stage failed and the later ones skipped, and the CLI exits 1.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.markup import escape

from edgekd.context import Context
from edgekd.errors import StageFailed
from edgekd.report import Report, StageRecord, environment, print_summary, write_report

STAGES = ("search", "distill", "export", "compile", "check")


def _relative(path, out: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(out.resolve()))
    except ValueError:
        return str(path)


def _weigh_alternatives(ctx: Context, report: Report, result) -> None:
    """Put the teacher compressed without distillation beside the student; say plainly when it is the better
    deal (within every budget, and more accurate at no less speed, or as accurate and measurably faster), and
    ship it instead with `ship: best`."""
    from edgekd.checks import decide_budgets

    report.extra["alternatives"] = {}
    s, s_speed = result.student, result.student["speedup"]
    for name, alt in result.alternatives.items():
        speed = {"value": alt.get("speedup", report.teacher["latency_ms"] / alt["latency_ms"]),
                 "interval": alt.get("speedup_interval"), "source": alt.get("latency_source", "predicted"),
                 "detail": f"teacher fp32 / teacher {alt['precision']}"}
        budgets = decide_budgets(ctx.budgets, alt, speed, alt["accuracy_drop"])
        meets = all(b.passed for b in budgets)
        s_lo, s_hi = s_speed.get("interval") or (s_speed["value"], s_speed["value"])
        a_lo, a_hi = speed["interval"] or (speed["value"], speed["value"])
        better = meets and ((alt["accuracy"] > s["accuracy"] and a_hi >= s_speed["value"])
                            or (alt["accuracy"] >= s["accuracy"] and a_lo > s_hi))
        said = (f"{name}: accuracy {alt['accuracy']:.4f} (drop {alt['accuracy_drop']:.2f} points), "
                f"{speed['value']:.2f}x faster than the teacher ({speed['source']}) vs the distilled student's "
                f"{s['accuracy']:.4f} at {s_speed['value']:.2f}x")
        verdict = ("BETTER than the distilled student: quantizing the teacher alone serves this target better"
                   if better else "within the budgets but not better than the student" if meets
                   else "misses a budget")
        report.extra["alternatives"][name] = {k: v for k, v in alt.items() if k != "artifact"} | {
            "artifact": _relative(alt["artifact"].path, ctx.out), "speedup": speed["value"],
            "speedup_interval": speed["interval"], "meets_budgets": meets, "better_than_student": better}
        report.notes.append(f"{said}: {verdict}")
        if better and ctx.cfg.ship == "best":
            report.extra["distilled_student"] = dict(report.student)
            report.student = {"source": f"{ctx.teacher.source} ({name}, not distilled)", "accuracy": alt["accuracy"],
                              "speedup": speed, "artifact": alt["artifact"].to_dict()} | {
                k: alt[k] for k in ("latency_ms", "latency_interval", "latency_source") if k in alt}
            report.artifacts["compiled"] = _relative(alt["artifact"].path, ctx.out)
            report.budgets = budgets
            report.notes.append(f"ship: best: shipping {name} instead of the distilled student")
        report.extra["shipped"] = name if better and ctx.cfg.ship == "best" else "student"


def build(ctx: Context, overwrite: bool = False) -> Report:
    """The whole run in a staging folder that replaces OUT when it ends (edgekd.rundir)."""
    from edgekd.rundir import staged_run

    final = ctx.out
    with staged_run(final, overwrite) as staging:
        ctx.out = staging
        try:
            report = _build(ctx)
        finally:
            ctx.out = final
    ctx.console.print(f"report: {final / 'report.json'}")
    return report


def _build(ctx: Context) -> Report:
    from edgekd.checks import run_check
    from edgekd.compile import run_compile
    from edgekd.distill import run_distill
    from edgekd.onnx_export import run_export
    from edgekd.runtimes import create_backend
    from edgekd.search import run_search

    ctx.out.mkdir(parents=True, exist_ok=True)
    ctx.save_config()
    t = ctx.target
    report = Report(target={"name": t.name, "profile": ctx.profile.name, "runtime": t.runtime,
                            "precision": t.precision, "batch_size": t.batch_size},
                    seed=ctx.cfg.seed,
                    extra={"preprocessing": ctx.data.preprocessing.as_dict(),
                           "data": {"source": ctx.data.source, "classes": ctx.data.num_classes,
                                    "train": len(ctx.data.train_idx), "val": len(ctx.data.val_idx),
                                    "calibration": len(ctx.data.calib_idx)},
                           "distillation": ctx.cfg.distill.model_dump()})
    report.teacher = {"source": ctx.teacher.source, "params": ctx.teacher.params}
    state: dict = {}

    def search():
        state["search"] = run_search(ctx)

    def distill():
        state["distill"] = run_distill(ctx, state["search"]["pick"])
        info = state["distill"]
        report.student.update({"arch": info["arch"], "params": info["params"], "method": info["method"],
                               "torch_accuracy": info["torch_accuracy"], "batch_size_used": info["batch_size_used"]})
        if "scratch" in info:  # --baseline-scratch: what distillation bought over labels alone (torch, held out)
            from edgekd.distill.stage import gain_text

            report.extra["baseline_scratch"] = {
                "scratch_accuracy": info["scratch"]["torch_accuracy"], "distilled_accuracy": info["torch_accuracy"],
                "teacher_accuracy": ctx.teacher_accuracy, "gain_points": info["scratch"]["gain_points"],
                "method": info["method"], "epochs": info["epochs"], "summary": gain_text(info, ctx.teacher_accuracy)}

    def export():
        state["export"] = run_export(ctx)
        report.artifacts["onnx"] = _relative(state["export"]["student"], ctx.out)
        report.student["parity"] = state["export"]["student_parity"]

    def compile_():
        artifacts, reason = run_compile(ctx, Path(state["export"]["student"]), Path(state["export"]["teacher"]))
        state["compile"] = artifacts
        report.artifacts["compiled"] = _relative(artifacts["student"].path, ctx.out)
        report.student["artifact"] = artifacts["student"].to_dict() | {"path": report.artifacts["compiled"]}
        report.student["compile"] = artifacts.get("record", {})  # lint findings, precision guard, parity
        return reason

    def check():
        result = run_check(ctx, state["compile"], Path(state["export"]["student"]),
                           Path(state["export"]["teacher"]))
        report.student.update(result.student)
        report.teacher.update(result.teacher | {"precision": "fp32"})
        report.budgets = result.budgets
        if result.alternatives:
            _weigh_alternatives(ctx, report, result)

    steps = {"search": search, "distill": distill, "export": export, "compile": compile_, "check": check}
    failed = ""
    for name in STAGES:
        if failed:
            report.stages.append(StageRecord(name, "skipped", 0.0, f"not run: {failed} failed"))
            continue
        start = time.perf_counter()
        try:
            reason = steps[name]()
            status = "skipped" if reason else "passed"
            report.stages.append(StageRecord(name, status, time.perf_counter() - start, reason or ""))
        except StageFailed as e:
            report.budgets = report.budgets or list(getattr(e, "budgets", []))
            report.stages.append(StageRecord(name, "failed", time.perf_counter() - start, str(e)))
            ctx.console.print(f"[red]{name} failed[/]: {escape(str(e))}")
            failed = name
    if failed:
        from edgekd.unreached import complete_budgets, known_teacher_figures

        complete_budgets(report, ctx.budgets, failed)
        report.teacher = known_teacher_figures(ctx, state) | report.teacher
    report.environment = environment(create_backend(t.runtime).versions())
    write_report(report, ctx.out)
    print_summary(report, ctx.console)
    return report
