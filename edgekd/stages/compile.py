"""The compile stage: the student for the target runtime, at the precision that pays, verified.

1. TensorRT targets: the TensorRT lint on the ONNX first; an error fails the stage with the findings.
2. The float artifact (fp32 on ONNX Runtime, fp16 on OpenVINO and TensorRT) and, when the target asks for
   int8, the INT8 one (calibrated on the calibration subset of the training split; OpenVINO's is
   accuracy-controlled within what the accuracy budget leaves).
3. Each is run through its own runtime on the held-out split: accuracy, and parity with the ONNX model.
   A float artifact that disagrees with the ONNX model fails the stage (a broken conversion).
4. Precision guard: INT8 ships only if it is faster than the float artifact (measured here or on the
   --remote device, else predicted by the profile's cost model) and within the accuracy budget; otherwise
   the float artifact ships and the record says why.
5. The teacher, fp32 on the same runtime, for the speed-up figure; and the teacher compressed without
   distillation (INT8, FP16 on TensorRT), the alternative the report compares the student against.
Without the runtime here and without --remote, the stage is skipped with the reason and the ONNX model
(for TensorRT int8: the Q/DQ ONNX the device builds from) is the artifact.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.markup import escape

from edgekd import parity
from edgekd.compile import lint_or_fail
from edgekd.figures import Figures
from edgekd.interleave import load_replicas, time_sessions
from edgekd.measurable import GUARD_SECONDS_PER_CANDIDATE, local_measurement_blocker, local_threads, predicted_figures
from edgekd.remote import measure_on_device, parse_remote, remote_compile
from edgekd.results import Alternative, CompileResult, ExportResult
from edgekd.runtimes import (
    ONNX_FILE,
    Artifact,
    Backend,
    CompileOptions,
    create_backend,
    evaluate_accuracy,
    save_artifact,
)
from edgekd.runtimes.onnxruntime_backend import OrtSession, quantize_qdq
from edgekd.text.compile import run_text_compile

NAME = "compile"

TUNE_SAMPLES = 512  # training images outside the calibration subset, for accuracy-controlled INT8




def _remote(ctx):
    url = getattr(ctx.cfg, "remote", None)
    return parse_remote(url) if url else None


def _figures(ctx, artifact: Artifact, onnx_path: Path, remote, blocker: str | None, eval_npz: Path | None,
             timing: bool = True) -> dict:
    """Accuracy and logits on the held-out split through the artifact's runtime; with `timing`, its latency
    measured on the --remote device or predicted (latency measured here is taken by _time_here)."""
    if remote is not None:  # memory is the check stage's figure
        run = measure_on_device(remote, artifact, ctx.profile.threads, ctx.target.batch_size, eval_npz, logits=True)
        return {"accuracy": run.accuracy, "logits": run.logits} | Figures(run.figures.latency).as_dict() | {
            "device_state": run.device_state}
    session = create_backend(artifact.runtime).load(artifact, local_threads(ctx.profile))
    accuracy, logits = evaluate_accuracy(session, *ctx.data.split("val"))
    out = {"accuracy": accuracy, "logits": logits}
    if timing and blocker is not None:
        predicted = predicted_figures(onnx_path, ctx.profile, artifact.precision, ctx.target.batch_size,
                                      artifact.runtime, blocker).latency
        out |= Figures(replace(predicted, detail=None)).as_dict()  # the guard's candidates: value and band
    return out


def _time_here(ctx, artifacts: dict[str, Artifact], float_p: str) -> dict[str, dict]:
    """Latency of each candidate measured here, interleaved in one process (edgekd/interleave.py), so that a
    noisy spell on a shared machine hits every candidate alike."""
    x = ctx.data.split("val")[0][:1]
    xb = np.ascontiguousarray(x.repeat(ctx.target.batch_size, 0))
    threads = local_threads(ctx.profile)
    timed = time_sessions({p: load_replicas(a, threads) for p, a in artifacts.items()}, xb,
                          GUARD_SECONDS_PER_CANDIDATE * len(artifacts))
    out = {p: timed.figures(p).as_dict() for p in artifacts}
    if "int8" in artifacts and float_p in artifacts:
        ratio = timed.speedup(float_p, "int8")
        out["int8"]["speedup_over_float"] = {"value": ratio.value, "interval": list(ratio.interval)}
    return out


def _check_parity(got: parity.Parity, precision: str, what: str) -> None:
    """A float artifact must agree with its ONNX model; INT8's drift is bounded by the accuracy budget."""
    parity.require(got, precision, f"compile: the {what} artifact disagrees with its ONNX model")


def precision_guard(candidates: dict[str, dict], max_drop: float | None) -> tuple[str, str]:
    """(precision to ship, why). INT8 must be faster than the float artifact (timed interleaved here: the
    interval of their ratio above 1; measured on a device: its latency interval entirely below the float
    one's; predicted: a lower prediction, both sharing the cost model's error) and within the accuracy budget."""
    float_p = next(p for p in candidates if p != "int8")
    if "int8" not in candidates:
        return float_p, f"{float_p}: the target asks for {float_p}"
    q, f = candidates["int8"], candidates[float_p]
    source = q["latency_source"]
    if "speedup_over_float" in q:  # timed interleaved here: the ratio's own interval must clear 1
        faster = q["speedup_over_float"]["interval"][0] > 1
    elif source == "measured" == f["latency_source"]:
        faster = q["latency_interval"][1] < f["latency_interval"][0]
    else:
        faster = q["latency_ms"] < f["latency_ms"]
    within = max_drop is None or q["accuracy_drop"] <= max_drop
    speed = f"int8 {q['latency_ms']:.4g} ms vs {float_p} {f['latency_ms']:.4g} ms ({source})"
    accuracy = f"accuracy drop {q['accuracy_drop']:.2f} points (budget {max_drop})"
    if faster and within:
        return "int8", f"int8 pays: {speed}, {accuracy}"
    why = ([] if faster else [f"is not faster ({speed})"]) + ([] if within else [f"is over budget ({accuracy})"])
    return float_p, f"int8 {' and '.join(why)}; shipping {float_p}"


def _tune_set(ctx) -> tuple[np.ndarray, np.ndarray]:
    data = ctx.data
    pool = np.setdiff1d(data.train_idx, data.calib_idx)
    rng = np.random.default_rng(ctx.cfg.seed)
    idx = np.sort(rng.choice(pool, size=min(TUNE_SAMPLES, len(pool)), replace=False))
    return data.inputs(idx), data.y[idx]


def _qdq(ctx, backend: Backend, onnx_path: Path, folder: Path, batch: int) -> tuple[Path, dict, dict]:
    """The Q/DQ ONNX an int8 engine is built from where the backend quantizes explicitly (TensorRT),
    calibrated here on the calibration subset and linted for the runtime: (path, quantization settings, lint
    record)."""
    qdq = folder / f"{onnx_path.stem}-qdq.onnx"
    settings = quantize_qdq(onnx_path, qdq, ctx.data.split("calib")[0], "QInt8", symmetric=True)
    return qdq, settings, lint_or_fail(backend, qdq, batch)


def _compile_one(ctx, backend, onnx_path: Path, folder: Path, precision: str, options: CompileOptions, remote):
    calibration = ctx.data.split("calib")[0] if precision == "int8" else None
    if remote is not None and backend.builds_on_device:  # engines are built on the device they run on
        source = onnx_path
        if precision == "int8" and backend.int8_from_qdq:  # Q/DQ made here, where the calibration data is
            source, _, _ = _qdq(ctx, backend, onnx_path, folder, options.batch)
        return remote_compile(remote, source, backend.name, precision, folder, options.batch)
    artifact = backend.compile(onnx_path, folder, precision, calibration, ctx.profile.arch, options)
    save_artifact(artifact)
    return artifact


def _skip(ctx, backend: Backend, exported: ExportResult, reason: str, record: dict) -> CompileResult:
    artifact = Artifact(exported.student_onnx, ONNX_FILE, "fp32", {"format": "onnx"})
    if backend.int8_from_qdq and ctx.target.precision == "int8":  # the device builds its engine from this
        qdq, settings, record["qdq_lint"] = _qdq(ctx, backend, exported.student_onnx, ctx.run.folder("compile"),
                                                 ctx.target.batch_size)
        artifact = Artifact(qdq, ONNX_FILE, "int8", settings)
    ctx.console.print(f"[bold]compile[/]: skipped: {escape(reason)}; "
                      f"the ONNX model ({artifact.path.name}) is the artifact")
    return CompileResult(artifact, None, record, {}, exported, skipped=reason)


def run(ctx, previous: ExportResult) -> CompileResult:
    """The exported student (and teacher) compiled for the target; skipped, with the reason, where the runtime
    is neither here nor on --remote."""
    if ctx.is_text:
        return run_text_compile(ctx, previous)
    student_onnx, teacher_onnx = previous.student_onnx, previous.teacher_onnx
    t, profile = ctx.target, ctx.profile
    record: dict = {}
    backend = create_backend(t.runtime)
    if backend.has_lint:
        ctx.console.print(f"[bold]compile[/]: {backend.label} lint of the student ONNX")
        record["lint"] = lint_or_fail(backend, student_onnx, t.batch_size)
    remote = _remote(ctx)
    reason = backend.unavailable_reason()
    if reason and remote is None:
        return _skip(ctx, backend, previous, reason, record)
    folder = ctx.run.folder("compile")
    blocker = None if remote is not None else local_measurement_blocker(profile, t.runtime)
    options = backend.options_for(profile.arch, t.batch_size)
    x_val, y_val = ctx.data.split("val")
    eval_npz = None
    if remote is not None:
        eval_npz = folder / "heldout.npz"
        np.savez(eval_npz, x=x_val, y=y_val)
    reference = OrtSession(student_onnx, local_threads(profile))
    _, ref_logits = evaluate_accuracy(reference, x_val, y_val)
    float_p = backend.float_precision
    where = f"on {remote.url}" if remote is not None else "here" if blocker is None else "predicted"
    ctx.console.print(f"[bold]compile[/]: student -> {backend.name} {float_p}"
                      f"{' and int8 (precision guard)' if t.precision == 'int8' else ''}; timing {where}")
    budget = ctx.budgets.max_accuracy_drop
    teacher_acc = ctx.teacher_accuracy
    candidates: dict[str, dict] = {}
    artifacts: dict[str, Artifact] = {}
    for precision in [float_p] + (["int8"] if t.precision == "int8" else []):
        opts = options
        if precision == "int8" and budget is not None and backend.tunes_int8:
            left = budget - candidates[float_p]["accuracy_drop"]  # what the float student leaves of the budget
            if left > 0:
                opts = replace(options, tune=_tune_set(ctx), max_accuracy_drop=left)
        artifact = _compile_one(ctx, backend, student_onnx, folder, precision, opts, remote)
        figures = _figures(ctx, artifact, student_onnx, remote, blocker, eval_npz)
        agree = parity.compare_logits(figures.pop("logits"), ref_logits)
        figures |= {"accuracy_drop": 100 * (teacher_acc - figures["accuracy"]), "parity": agree.as_dict(),
                    "path": artifact.path.name, "settings": artifact.settings}
        _check_parity(agree, precision, f"{backend.name} {precision} student")
        candidates[precision], artifacts[precision] = figures, artifact
    if remote is None and blocker is None:
        for precision, timing in _time_here(ctx, artifacts, float_p).items():
            candidates[precision] |= timing
    for precision, c in candidates.items():
        ctx.console.print(f"  {precision}: accuracy {c['accuracy']:.4f}, {c['latency_ms']:.4g} ms "
                          f"({c['latency_source']}), parity top-1 {c['parity']['top1_agreement']:.2%}")
    shipped, why = precision_guard(candidates, budget)
    ctx.console.print(f"  precision guard: {why}")
    record["precision_guard"] = {"requested": t.precision, "shipped": shipped, "reason": why,
                                 "candidates": candidates}
    teacher = _compile_one(ctx, backend, teacher_onnx, folder, "fp32", options, remote)
    # The teacher's artifact is verified the same way: through its runtime, against its ONNX model.
    _, teacher_ref = evaluate_accuracy(OrtSession(teacher_onnx, local_threads(profile)), x_val, y_val)
    got = _figures(ctx, teacher, teacher_onnx, remote, blocker, eval_npz, timing=False)
    teacher_parity = parity.compare_logits(got["logits"], teacher_ref)
    record["teacher"] = {"accuracy": got["accuracy"], "parity": teacher_parity.as_dict(), "path": teacher.path.name}
    _check_parity(teacher_parity, "fp32", f"{backend.name} fp32 teacher")
    record["teacher"]["artifact"] = teacher.to_dict()
    alternatives = {}
    if backend.compressed_teacher:
        alternatives = _compressed_teacher(ctx, backend, teacher_onnx, folder, options, remote, blocker, eval_npz)
        record["alternatives"] = {n: a.as_dict() | {"path": a.artifact.path.name} for n, a in alternatives.items()}
    ctx.run.compile_json.write_text(json.dumps(record | {"shipped": artifacts[shipped].to_dict()}, indent=2,
                                               default=str))
    return CompileResult(artifacts[shipped], teacher, record, alternatives, previous)


def _compressed_teacher(ctx, backend, teacher_onnx: Path, folder: Path, options: CompileOptions, remote,
                        blocker: str | None, eval_npz: Path | None) -> dict[str, Alternative]:
    """The obvious alternative to distillation: the teacher itself, compressed on the target's runtime (INT8
    calibrated on the same subset; FP16 on TensorRT), with its accuracy through that runtime. The check
    stage times it beside the student."""
    precision = backend.compressed_teacher
    budget = ctx.budgets.max_accuracy_drop
    opts = options
    if precision == "int8" and budget is not None and backend.tunes_int8:
        opts = replace(options, tune=_tune_set(ctx), max_accuracy_drop=budget)
    ctx.console.print(f"  the teacher alone, {precision} on {backend.name} (the alternative to distillation)")
    art = _compile_one(ctx, backend, teacher_onnx, folder / "teacher-compressed", precision, opts, remote)
    got = _figures(ctx, art, teacher_onnx, remote, blocker, eval_npz)
    figures = Figures.from_dict(got)
    if "device_state" in got:  # measured on the --remote device
        figures = replace(figures, extra={"device_state": got["device_state"]})
    alt = Alternative(art, precision, got["accuracy"], 100 * (ctx.teacher_accuracy - got["accuracy"]), figures)
    return {f"teacher-{precision}": alt}


def fill_report(report, result: CompileResult, ctx) -> None:
    report.artifacts["compiled"] = ctx.run.relative(result.student.path)
    report.student["artifact"] = result.student.to_dict() | {"path": report.artifacts["compiled"]}
    report.student["compile"] = result.record  # lint findings, precision guard, parity
