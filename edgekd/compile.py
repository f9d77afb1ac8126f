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
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.markup import escape

from edgekd.errors import StageFailed
from edgekd.runtimes import (
    FLOAT_PRECISION,
    Artifact,
    CompileOptions,
    compare_logits,
    create_backend,
    evaluate_accuracy,
    save_artifact,
)

# (max |diff| relative to the largest logit, min top-1 agreement) of a float artifact vs the ONNX model;
# INT8 is bounded by the accuracy budget instead (its logits move by design).
PARITY_LIMITS = {"fp32": (1e-3, 0.99), "fp16": (2e-2, 0.98)}
# The teacher compressed without distillation, per runtime: what a user gets by quantizing alone.
COMPRESSED_TEACHER = {"onnxruntime": "int8", "openvino": "int8", "tensorrt": "fp16"}
TUNE_SAMPLES = 512  # training images outside the calibration subset, for accuracy-controlled INT8
GUARD_SECONDS_PER_CANDIDATE = 1.0  # interleaved timing when the guard measures here


def lint_or_fail(onnx_path: Path, batch: int) -> dict:
    from edgekd.runtimes import get_linter

    findings = get_linter("tensorrt")(onnx_path, batch, max(64, batch))
    errors = [f for f in findings if f.severity == "error"]
    record = {"errors": len(errors), "warnings": len(findings) - len(errors),
              "findings": [f.to_dict() for f in findings]}
    if errors:
        shown = "; ".join(f"{f.node} ({f.op}): {f.why}" for f in errors[:5])
        more = f" (and {len(errors) - 5} more; run edgekd lint {onnx_path})" if len(errors) > 5 else ""
        raise StageFailed(f"TensorRT lint: {len(errors)} finding(s) would fail on the device: {shown}{more}")
    return record


def _remote(ctx):
    from edgekd.remote import parse_remote

    url = getattr(ctx.cfg, "remote", None)
    return parse_remote(url) if url else None


def _figures(ctx, artifact: Artifact, onnx_path: Path, remote, blocker: str | None, eval_npz: Path | None,
             timing: bool = True) -> dict:
    """Accuracy and logits on the held-out split through the artifact's runtime; with `timing`, its latency
    measured on the --remote device or predicted (latency measured here is taken by _time_here)."""
    from edgekd.checks import local_threads, predicted_figures

    if remote is not None:
        from edgekd.remote import remote_bench

        with tempfile.TemporaryDirectory() as tmp:
            res = remote_bench(remote, artifact.path, artifact.runtime, ctx.profile.threads, ctx.target.batch_size,
                               eval_npz, logits=True, into=Path(tmp))
            logits = np.load(res.pop("logits_path"))
        return {"accuracy": res["accuracy"], "logits": logits, "latency_ms": res["latency_ms"],
                "latency_interval": res["latency_interval"], "latency_source": "measured",
                "device_state": res["device_state"]}
    session = create_backend(artifact.runtime).load(artifact, local_threads(ctx.profile))
    accuracy, logits = evaluate_accuracy(session, *ctx.data.split("val"))
    out = {"accuracy": accuracy, "logits": logits}
    if timing and blocker is not None:
        predicted = predicted_figures(onnx_path, ctx.profile, artifact.precision, ctx.target.batch_size,
                                      artifact.runtime, blocker)
        out |= {k: predicted[k] for k in ("latency_ms", "latency_interval", "latency_source")}
    return out


def _time_here(ctx, artifacts: dict[str, Artifact], float_p: str) -> dict[str, dict]:
    """Latency of each candidate measured here, interleaved in one process (edgekd/interleave.py), so that a
    noisy spell on a shared machine hits every candidate alike."""
    from edgekd.checks import local_threads
    from edgekd.interleave import load_replicas, time_sessions

    x = ctx.data.split("val")[0][:1]
    xb = np.ascontiguousarray(x.repeat(ctx.target.batch_size, 0))
    threads = local_threads(ctx.profile)
    timed = time_sessions({p: load_replicas(a, threads) for p, a in artifacts.items()}, xb,
                          GUARD_SECONDS_PER_CANDIDATE * len(artifacts))
    out = {p: timed.figures(p) for p in artifacts}
    if "int8" in artifacts and float_p in artifacts:
        ratio = timed.speedup(float_p, "int8")
        out["int8"]["speedup_over_float"] = {"value": ratio.value, "interval": list(ratio.interval)}
    return out


def _check_parity(parity: dict, precision: str, what: str) -> None:
    """A float artifact must agree with its ONNX model; INT8's drift is bounded by the accuracy budget."""
    limits = PARITY_LIMITS.get(precision)
    if limits and (parity["max_abs_diff"] > limits[0] or parity["top1_agreement"] < limits[1]):
        raise StageFailed(f"compile: the {what} artifact disagrees with its ONNX model: max |diff| "
                          f"{parity['max_abs_diff']:.3g} (limit {limits[0]:g}), top-1 agreement "
                          f"{parity['top1_agreement']:.2%} (limit {limits[1]:.0%})")


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


def _tensorrt_qdq(ctx, onnx_path: Path, folder: Path, batch: int) -> tuple[Path, dict, dict]:
    """The Q/DQ ONNX a TensorRT int8 engine is built from (explicit quantization, calibrated here on the
    calibration subset), linted for TensorRT: (path, quantization settings, lint record)."""
    from edgekd.runtimes.onnxruntime_backend import quantize_qdq

    qdq = folder / f"{onnx_path.stem}-qdq.onnx"
    settings = quantize_qdq(onnx_path, qdq, ctx.data.split("calib")[0], "QInt8", symmetric=True)
    return qdq, settings, lint_or_fail(qdq, batch)


def _compile_one(ctx, backend, onnx_path: Path, folder: Path, precision: str, options: CompileOptions, remote):
    calibration = ctx.data.split("calib")[0] if precision == "int8" else None
    if remote is not None and backend.name == "tensorrt":  # engines are built on the device they run on
        from edgekd.remote import remote_compile

        source = onnx_path
        if precision == "int8":  # Q/DQ made here, where the calibration data is; the device builds from it
            source, _, _ = _tensorrt_qdq(ctx, onnx_path, folder, options.batch)
        return remote_compile(remote, source, backend.name, precision, folder, options.batch)
    artifact = backend.compile(onnx_path, folder, precision, calibration, ctx.profile.arch, options)
    save_artifact(artifact)
    return artifact


def _skip(ctx, student_onnx: Path, reason: str, record: dict) -> tuple[dict, str]:
    artifact = Artifact(student_onnx, "onnx", "fp32", {"format": "onnx"})
    if ctx.target.runtime == "tensorrt" and ctx.target.precision == "int8":
        qdq, settings, record["qdq_lint"] = _tensorrt_qdq(ctx, student_onnx, ctx.stage_dir("compile"),
                                                          ctx.target.batch_size)
        artifact = Artifact(qdq, "onnx", "int8", settings)
    ctx.console.print(f"[bold]compile[/]: skipped: {escape(reason)}; "
                      f"the ONNX model ({artifact.path.name}) is the artifact")
    return {"student": artifact, "teacher": None, "record": record}, reason


def run_compile(ctx, student_onnx: Path, teacher_onnx: Path) -> tuple[dict, str]:
    """Returns ({"student": Artifact, "teacher": Artifact | None, "record": dict}, skip reason or "")."""
    from edgekd.checks import local_measurement_blocker, local_threads
    from edgekd.runtimes.onnxruntime_backend import OrtSession

    t, profile = ctx.target, ctx.profile
    record: dict = {}
    if t.runtime == "tensorrt":
        ctx.console.print("[bold]compile[/]: TensorRT lint of the student ONNX")
        record["lint"] = lint_or_fail(student_onnx, t.batch_size)
    backend = create_backend(t.runtime)
    remote = _remote(ctx)
    reason = backend.unavailable_reason()
    if reason and remote is None:
        return _skip(ctx, student_onnx, reason, record)
    folder = ctx.stage_dir("compile")
    blocker = None if remote is not None else local_measurement_blocker(profile, t.runtime)
    # ORT format for ONNX Runtime on Arm CPUs (phones, Raspberry Pi): what ONNX Runtime Mobile loads.
    options = CompileOptions(mobile=t.runtime == "onnxruntime" and profile.arch == "aarch64",
                             batch=t.batch_size, max_batch=max(64, t.batch_size))
    x_val, y_val = ctx.data.split("val")
    eval_npz = None
    if remote is not None:
        eval_npz = folder / "heldout.npz"
        np.savez(eval_npz, x=x_val, y=y_val)
    reference = OrtSession(student_onnx, local_threads(profile))
    _, ref_logits = evaluate_accuracy(reference, x_val, y_val)
    float_p = FLOAT_PRECISION[t.runtime]
    where = f"on {remote.url}" if remote is not None else "here" if blocker is None else "predicted"
    ctx.console.print(f"[bold]compile[/]: student -> {backend.name} {float_p}"
                      f"{' and int8 (precision guard)' if t.precision == 'int8' else ''}; timing {where}")
    budget = ctx.budgets.max_accuracy_drop
    teacher_acc = ctx.teacher_accuracy
    candidates: dict[str, dict] = {}
    artifacts: dict[str, Artifact] = {}
    for precision in [float_p] + (["int8"] if t.precision == "int8" else []):
        opts = options
        if precision == "int8" and budget is not None and t.runtime == "openvino":
            left = budget - candidates[float_p]["accuracy_drop"]  # what the float student leaves of the budget
            if left > 0:
                opts = replace(options, tune=_tune_set(ctx), max_accuracy_drop=left)
        artifact = _compile_one(ctx, backend, student_onnx, folder, precision, opts, remote)
        figures = _figures(ctx, artifact, student_onnx, remote, blocker, eval_npz)
        parity = compare_logits(figures.pop("logits"), ref_logits)
        figures |= {"accuracy_drop": 100 * (teacher_acc - figures["accuracy"]), "parity": parity,
                    "path": artifact.path.name, "settings": artifact.settings}
        _check_parity(parity, precision, f"{backend.name} {precision} student")
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
    record["teacher"] = {"accuracy": got["accuracy"], "parity": compare_logits(got["logits"], teacher_ref),
                         "path": teacher.path.name}
    _check_parity(record["teacher"]["parity"], "fp32", f"{backend.name} fp32 teacher")
    record["teacher"]["artifact"] = teacher.to_dict()
    alternatives = {}
    if t.runtime in COMPRESSED_TEACHER:
        alternatives = _compressed_teacher(ctx, backend, teacher_onnx, folder, options, remote, blocker, eval_npz)
        record["alternatives"] = {n: {k: v for k, v in a.items() if k != "artifact"} | {"path": a["artifact"].path.name}
                                  for n, a in alternatives.items()}
    (folder / "compile.json").write_text(json.dumps(record | {"shipped": artifacts[shipped].to_dict()}, indent=2,
                                                    default=str))
    return {"student": artifacts[shipped], "teacher": teacher, "record": record, "alternatives": alternatives}, ""


def _compressed_teacher(ctx, backend, teacher_onnx: Path, folder: Path, options: CompileOptions, remote,
                        blocker: str | None, eval_npz: Path | None) -> dict[str, dict]:
    """The obvious alternative to distillation: the teacher itself, compressed on the target's runtime (INT8
    calibrated on the same subset; FP16 on TensorRT), with its accuracy through that runtime. The check
    stage times it beside the student."""
    precision = COMPRESSED_TEACHER[ctx.target.runtime]
    budget = ctx.budgets.max_accuracy_drop
    opts = options
    if precision == "int8" and budget is not None and ctx.target.runtime == "openvino":
        opts = replace(options, tune=_tune_set(ctx), max_accuracy_drop=budget)
    ctx.console.print(f"  the teacher alone, {precision} on {backend.name} (the alternative to distillation)")
    art = _compile_one(ctx, backend, teacher_onnx, folder / "teacher-compressed", precision, opts, remote)
    figures = _figures(ctx, art, teacher_onnx, remote, blocker, eval_npz)
    figures.pop("logits")
    figures |= {"accuracy_drop": 100 * (ctx.teacher_accuracy - figures["accuracy"]), "precision": precision,
                "artifact": art}
    return {f"teacher-{precision}": figures}


def load_calibration(path: Path) -> np.ndarray:
    """Preprocessed calibration inputs: an .npy array (N, C, H, W), or the `x` of an .npz."""
    from edgekd.errors import InputError

    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                x = f["x"]
        else:
            x = np.load(path, allow_pickle=False)
    except (OSError, KeyError, ValueError) as e:
        raise InputError(f"--calibration '{path}': need an .npy (N, C, H, W) or an .npz with x ({e})") from None
    if x.ndim != 4:
        raise InputError(f"--calibration '{path}': inputs have shape {x.shape}; need (N, C, H, W)")
    return x.astype(np.float32)


def compile_model(onnx_path: Path, out_dir: Path, runtime: str, precision: str | None = None,
                  calibration: Path | None = None, batch: int = 1, mobile: bool = False) -> Artifact:
    """One ONNX -> one artifact for `runtime`, with its build record beside it (`edgekd compile MODEL`;
    what the remote runner runs on a device to build a TensorRT engine there)."""
    import platform

    from edgekd.errors import InputError
    from edgekd.validate import check_model_file

    check_model_file(onnx_path)  # a damaged ONNX must not ship as an artifact
    if onnx_path.suffix != ".onnx":
        raise InputError(f"MODEL '{onnx_path}': need an .onnx file")
    from edgekd.rundir import make_dir

    make_dir(out_dir)
    backend = create_backend(runtime)
    reason = backend.unavailable_reason()
    if reason:
        raise InputError(f"--runtime {runtime}: {reason}")
    precision = precision or FLOAT_PRECISION[runtime]
    calib = load_calibration(calibration) if calibration is not None else None
    arch = platform.machine() if platform.machine() in ("x86_64", "aarch64") else "x86_64"
    artifact = backend.compile(onnx_path, out_dir, precision, calib, arch,
                               CompileOptions(mobile=mobile, batch=batch, max_batch=max(64, batch)))
    save_artifact(artifact)
    return artifact
