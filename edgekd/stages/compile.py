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
from edgekd.figures import Figure, Figures
from edgekd.interleave import load_replicas, time_sessions
from edgekd.measurable import GUARD_SECONDS_PER_CANDIDATE, local_measurement_blocker, local_threads
from edgekd.precision import PrecisionCandidate, precision_guard
from edgekd.remote import measure_on_device, parse_remote, remote_compile
from edgekd.results import Alternative, CompileResult, ExportResult
from edgekd.runtimes import ONNX_FILE, Artifact, Backend, CompileOptions, create_backend, save_artifact
from edgekd.runtimes.onnxruntime_backend import OrtSession, quantize_qdq

NAME = "compile"


def _remote(ctx):
    url = getattr(ctx.cfg, "remote", None)
    return parse_remote(url) if url else None


def _run_heldout(ctx, artifact: Artifact, onnx_path: Path, arch: dict | None, remote, blocker: str | None,
                 eval_npz: Path | None, timing: bool = True) -> tuple[dict, np.ndarray, Figures]:
    """(quality, outputs, latency) of an artifact on the held-out split through its runtime: on the --remote device
    (its latency measured there), or here (latency predicted where the runtime does not run here, with `timing`;
    a latency measured here is taken by _time_here, interleaved). `arch`: the student's (None: the teacher)."""
    track = ctx.track
    if remote is not None:  # memory is the check stage's figure
        run = measure_on_device(remote, artifact, ctx.profile.threads, ctx.target.batch_size, eval_npz, logits=True)
        return (track.quality(ctx, run.logits), run.logits,
                Figures(run.figures.latency, extra={"device_state": run.device_state}))
    session = create_backend(artifact.runtime).load(artifact, local_threads(ctx.profile))
    outputs = track.outputs(ctx, session)
    figures = Figures()
    if timing and blocker is not None:  # the guard's candidates: value and band
        predicted = track.predicted(ctx, onnx_path, arch, artifact.precision, blocker).latency
        figures = Figures(replace(predicted, detail=None))
    return track.quality(ctx, outputs), outputs, figures


def _time_here(ctx, candidates: dict[str, PrecisionCandidate], artifacts: dict[str, Artifact], float_p: str) -> None:
    """Latency of each candidate measured here, interleaved in one process (edgekd/interleave.py), so that a
    noisy spell on a shared machine hits every candidate alike."""
    threads = local_threads(ctx.profile)
    timed = time_sessions({p: load_replicas(a, threads) for p, a in artifacts.items()},
                          ctx.data.timing_feed(ctx.target.batch_size), GUARD_SECONDS_PER_CANDIDATE * len(artifacts))
    for p, c in candidates.items():
        figures = timed.figures(p)
        c.latency, c.latency_extra = figures.latency, figures.extra
    if "int8" in artifacts and float_p in artifacts:
        ratio = timed.speedup(float_p, "int8")
        candidates["int8"].speedup_over_float = Figure(ratio.value, "measured", ratio.interval)


def _check_parity(got: parity.Parity, precision: str, what: str) -> None:
    """A float artifact must agree with its ONNX model; INT8's drift is bounded by the quality budget."""
    parity.require(got, precision, f"compile: the {what} artifact disagrees with its ONNX model")


def _qdq(ctx, backend: Backend, onnx_path: Path, folder: Path, batch: int) -> tuple[Path, dict, dict]:
    """The Q/DQ ONNX an int8 engine is built from where the backend quantizes explicitly (TensorRT),
    calibrated here on the calibration subset and linted for the runtime: (path, quantization settings, lint
    record)."""
    qdq = folder / f"{onnx_path.stem}-qdq.onnx"
    settings = quantize_qdq(onnx_path, qdq, ctx.track.calibration(ctx), "QInt8", symmetric=True)
    return qdq, settings, lint_or_fail(backend, qdq, batch)


def _compile_one(ctx, backend, onnx_path: Path, folder: Path, precision: str, options: CompileOptions, remote):
    calibration = ctx.track.calibration(ctx) if precision == "int8" else None
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
    qdq_ready = ctx.track.calibration(ctx) is not None  # a text model's INT8 is each runtime's own, not Q/DQ
    if backend.int8_from_qdq and ctx.target.precision == "int8" and qdq_ready:  # the device builds from this
        qdq, settings, record["qdq_lint"] = _qdq(ctx, backend, exported.student_onnx, ctx.run.folder("compile"),
                                                 ctx.target.batch_size)
        artifact = Artifact(qdq, ONNX_FILE, "int8", settings)
    ctx.console.print(f"[bold]compile[/]: skipped: {escape(reason)}; "
                      f"the ONNX model ({artifact.path.name}) is the artifact")
    return CompileResult(artifact, None, record, {}, exported, skipped=reason)


def run(ctx, previous: ExportResult) -> CompileResult:
    """The exported student (and teacher) compiled for the target; skipped, with the reason, where the runtime
    is neither here nor on --remote."""
    track, t, profile = ctx.track, ctx.target, ctx.profile
    student_onnx, teacher_onnx = previous.student_onnx, previous.teacher_onnx
    record: dict = {}
    backend = create_backend(t.runtime)
    if backend.has_lint:
        ctx.console.print(f"[bold]compile[/]: {backend.label} lint of the student ONNX")
        record["lint"] = lint_or_fail(backend, student_onnx, t.batch_size, track.sequence_length(ctx))
    remote = _remote(ctx)
    reason = backend.unavailable_reason()
    if reason and remote is None:
        return _skip(ctx, backend, previous, reason, record)
    folder = ctx.run.folder("compile")
    blocker = None if remote is not None else local_measurement_blocker(profile, t.runtime)
    options = track.compile_options(ctx, backend)
    eval_npz = None
    if remote is not None:
        eval_npz = folder / "heldout.npz"
        np.savez(eval_npz, x=ctx.data.split("val")[0], y=ctx.data.split("val")[1])
    threads = local_threads(profile)
    reference = track.outputs(ctx, OrtSession(student_onnx, threads))
    float_p = backend.float_precision
    where = f"on {remote.url}" if remote is not None else "here" if blocker is None else "predicted"
    ctx.console.print(f"[bold]compile[/]: student -> {backend.name} {float_p}"
                      f"{' and int8 (precision guard)' if t.precision == 'int8' else ''}; timing {where}")
    budget, tune = ctx.budgets.max_accuracy_drop, track.tune_set(ctx)
    candidates: dict[str, PrecisionCandidate] = {}
    artifacts: dict[str, Artifact] = {}
    for precision in [float_p] + (["int8"] if t.precision == "int8" else []):
        opts = options
        if precision == "int8" and budget is not None and backend.tunes_int8 and tune is not None:
            left = budget - candidates[float_p].accuracy_drop  # what the float student leaves of the budget
            if left > 0:
                opts = replace(options, tune=tune, max_accuracy_drop=left)
        artifact = _compile_one(ctx, backend, student_onnx, folder, precision, opts, remote)
        q, outputs, figures = _run_heldout(ctx, artifact, student_onnx, previous.arch, remote, blocker, eval_npz)
        agree = track.compare(ctx, outputs, reference)
        _check_parity(agree, precision, f"{backend.name} {precision} student")
        candidates[precision] = PrecisionCandidate(
            precision, q, 100 * (ctx.teacher_accuracy - q["accuracy"]), agree, artifact.path.name, artifact.settings,
            figures.latency, figures.extra)
        artifacts[precision] = artifact
    if remote is None and blocker is None:
        _time_here(ctx, candidates, artifacts, float_p)
    for precision, c in candidates.items():
        ctx.console.print(f"  {precision}: {track.describe(c.quality)}, {c.latency.value:.4g} ms "
                          f"({c.latency.source}), parity {c.parity.summary()}")
    shipped, why = precision_guard(candidates, lambda q, qf: track.within(ctx, q, qf))
    ctx.console.print(f"  precision guard: {why}")
    record["precision_guard"] = {"requested": t.precision, "shipped": shipped, "reason": why,
                                 "candidates": {p: c.as_dict() for p, c in candidates.items()}}
    teacher = _compile_one(ctx, backend, teacher_onnx, folder, "fp32", options, remote)
    # The teacher's artifact is verified the same way: through its runtime, against its ONNX model.
    teacher_ref = track.outputs(ctx, OrtSession(teacher_onnx, threads))
    q, outputs, _ = _run_heldout(ctx, teacher, teacher_onnx, None, remote, blocker, eval_npz, timing=False)
    teacher_parity = track.compare(ctx, outputs, teacher_ref)
    record["teacher"] = {"accuracy": q["accuracy"], "parity": teacher_parity.as_dict(), "path": teacher.path.name}
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
    calibrated on the same subset; FP16 on TensorRT), with its quality through that runtime. The check
    stage times it beside the student."""
    precision = backend.compressed_teacher
    budget, tune = ctx.budgets.max_accuracy_drop, ctx.track.tune_set(ctx)
    opts = options
    if precision == "int8" and budget is not None and backend.tunes_int8 and tune is not None:
        opts = replace(options, tune=tune, max_accuracy_drop=budget)
    ctx.console.print(f"  the teacher alone, {precision} on {backend.name} (the alternative to distillation)")
    art = _compile_one(ctx, backend, teacher_onnx, folder / "teacher-compressed", precision, opts, remote)
    q, _, figures = _run_heldout(ctx, art, teacher_onnx, None, remote, blocker, eval_npz)
    alt = Alternative(art, precision, q["accuracy"], 100 * (ctx.teacher_accuracy - q["accuracy"]), figures,
                      quality={k: v for k, v in q.items() if k != "accuracy"})
    return {f"teacher-{precision}": alt}


def fill_report(report, result: CompileResult, ctx) -> None:
    report.artifacts["compiled"] = ctx.run.relative(result.student.path)
    report.student["artifact"] = result.student.to_dict() | {"path": report.artifacts["compiled"]}
    report.student["compile"] = result.record  # lint findings, precision guard, parity
