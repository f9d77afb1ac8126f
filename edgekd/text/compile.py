"""The compile stage for text students: the same steps as for images (edgekd/stages/compile.py), with the
INT8 each runtime uses for transformer encoders (CompileOptions.transformer: ONNX Runtime's dynamic
quantization, NNCF's transformer preset on OpenVINO) and parity by cosine for embeddings.

1. TensorRT targets: the TensorRT lint over the transformer graph (an error fails the stage).
2. The float artifact (fp32 on ONNX Runtime, fp16 IR on OpenVINO; ORT format on Arm) and, for int8 targets,
   the INT8 one, each run on the held-out text: parity with the ONNX model (float must agree) and quality.
3. Precision guard: INT8 ships only if timed faster than the float artifact here (else predicted) and within
   the quality budget (classification: accuracy drop; embeddings: cosine and neighbour agreement, each no
   worse than the float artifact's on its bootstrap interval): quantization alone can spend a quality budget.
4. The teacher fp32 on the same runtime, and the teacher INT8 without distillation (the alternative).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from rich.markup import escape

from edgekd import parity
from edgekd.compile import lint_or_fail
from edgekd.errors import StageFailed
from edgekd.gate.verdict import decide
from edgekd.interleave import load_replicas, time_sessions
from edgekd.measurable import GUARD_SECONDS_PER_CANDIDATE, local_measurement_blocker, local_threads
from edgekd.results import Alternative, CompileResult, DistillResult, ExportResult
from edgekd.runtimes import ONNX_FILE, Artifact, CompileOptions, create_backend, save_artifact
from edgekd.runtimes.onnxruntime_backend import OrtSession
from edgekd.text.check import DEFAULT_MIN_AGREEMENT, DEFAULT_MIN_COSINE, EVAL_BATCH, predicted, quality
from edgekd.text.export import compare, session_outputs

CALIBRATION_TEXTS = 64  # feeds of one text each; NNCF's transformer preset needs few


def _outputs(ctx, artifact: Artifact, threads: int):
    session = create_backend(artifact.runtime).load(artifact, threads)
    return session_outputs(session, ctx.data.batches(ctx.data.val_idx, EVAL_BATCH))


def _reference(ctx, onnx_path: Path, threads: int):
    return session_outputs(OrtSession(onnx_path, threads), ctx.data.batches(ctx.data.val_idx, EVAL_BATCH))


def _within(ctx, q: dict, teacher_acc: float, qf: dict | None = None) -> tuple[bool, str]:
    """Whether quality `q` is within the budgets; for embeddings each budget's verdict on its bootstrap interval
    must also be no worse than the float artifact's `qf` (INT8 may not turn a pass into an inconclusive)."""
    b = ctx.budgets
    if ctx.teacher.task == "embedding":
        cos, agree = b.min_embedding_cosine or DEFAULT_MIN_COSINE, b.min_neighbour_agreement or DEFAULT_MIN_AGREEMENT
        rank = {"pass": 0, "inconclusive": 1, "fail": 2}
        ok = q["mean_cosine"] >= cos and q["neighbour_agreement"] >= agree and all(
            rank[decide(q[f"{k}_interval"], limit, True)] <= rank[decide(qf[f"{k}_interval"], limit, True)]
            for k, limit in (("mean_cosine", cos), ("neighbour_agreement", agree)) if qf is not None)
        ci, ai = q["mean_cosine_interval"], q["neighbour_agreement_interval"]
        return ok, (f"cosine {q['mean_cosine']:.4f} [{ci[0]:.4f} .. {ci[1]:.4f}] (budget {cos}), agreement "
                    f"{q['neighbour_agreement']:.2%} [{ai[0]:.2%} .. {ai[1]:.2%}] (budget {agree:.0%})")
    drop = 100 * (teacher_acc - q["accuracy"])
    limit = b.max_accuracy_drop
    return limit is None or drop <= limit, f"accuracy drop {drop:.2f} points (budget {limit})"


def compile_options(ctx, backend) -> CompileOptions:
    """How an encoder is compiled for the target: at its batch and --max-length, INT8 calibrated on held-out
    texts one at a time (the search's timer compiles its candidates the same way)."""
    calib = tuple(ctx.data.encode([i]) for i in ctx.data.calib_idx[:CALIBRATION_TEXTS])
    return replace(backend.options_for(ctx.profile.arch, ctx.target.batch_size), transformer=True,
                   calibration_feeds=calib, sequence=ctx.data.max_length)


def _compile(ctx, backend, onnx_path: Path, folder: Path, precision: str, options) -> Artifact:
    art = backend.compile(onnx_path, folder, precision, None, ctx.profile.arch, options)
    save_artifact(art)
    return art


def run_text_compile(ctx, previous: ExportResult) -> CompileResult:

    t = ctx.target
    backend = create_backend(t.runtime)
    record: dict = {}
    if backend.has_lint:
        ctx.console.print(f"[bold]compile[/]: {backend.label} lint of the student ONNX (transformer graph)")
        record["lint"] = lint_or_fail(backend, previous.student_onnx, t.batch_size, ctx.data.max_length)
    reason = backend.unavailable_reason()
    if reason:
        ctx.console.print(f"[bold]compile[/]: skipped: {escape(reason)}; the ONNX model is the artifact")
        art = Artifact(previous.student_onnx, ONNX_FILE, "fp32", {"format": "onnx"})
        return CompileResult(art, None, record, {}, previous, skipped=reason)
    folder = ctx.run.folder("compile")
    threads = local_threads(ctx.profile)
    blocker = local_measurement_blocker(ctx.profile, t.runtime)
    options = compile_options(ctx, backend)
    ref = _reference(ctx, previous.student_onnx, threads)
    float_p = backend.float_precision
    teacher_acc = ctx.teacher_accuracy
    ctx.console.print(f"[bold]compile[/]: student -> {backend.name} {float_p}"
                      f"{' and int8 (precision guard)' if t.precision == 'int8' else ''}")
    candidates: dict[str, dict] = {}
    artifacts: dict[str, Artifact] = {}
    for precision in [float_p] + (["int8"] if t.precision == "int8" else []):
        art = _compile(ctx, backend, previous.student_onnx, folder, precision, options)
        got = _outputs(ctx, art, threads)
        agree = compare(ctx.teacher.task, got, ref)
        parity.require(agree, precision, f"compile: the {backend.name} {precision} student disagrees with its ONNX "
                                         "model")
        q = quality(ctx, got)
        candidates[precision] = q | {"accuracy_drop": 100 * (teacher_acc - q["accuracy"]), "parity": agree.as_dict(),
                                     "path": art.path.name, "settings": art.settings}
        artifacts[precision] = art
    if blocker is None:
        timed = time_sessions({p: load_replicas(a, threads) for p, a in artifacts.items()},
                              ctx.data.timing_feed(t.batch_size), GUARD_SECONDS_PER_CANDIDATE * len(artifacts))
        for p in artifacts:
            candidates[p] |= timed.figures(p).as_dict()
        if "int8" in artifacts:
            r = timed.speedup(float_p, "int8")
            candidates["int8"]["speedup_over_float"] = {"value": r.value, "interval": list(r.interval)}
    else:
        arch = DistillResult.load(ctx.run).arch
        for p in artifacts:
            candidates[p] |= predicted(ctx, arch, p, blocker).as_dict()
    shipped, why = float_p, f"{float_p}: the target asks for {float_p}"
    if "int8" in candidates:
        q8, qf = candidates["int8"], candidates[float_p]
        faster = (q8["speedup_over_float"]["interval"][0] > 1 if "speedup_over_float" in q8
                  else q8["latency_ms"] < qf["latency_ms"])
        ok, said = _within(ctx, q8, teacher_acc, qf)
        speed = f"int8 {q8['latency_ms']:.4g} ms vs {float_p} {qf['latency_ms']:.4g} ms ({q8['latency_source']})"
        if faster and ok:
            shipped, why = "int8", f"int8 pays: {speed}, {said}"
        else:
            why = "int8 " + " and ".join(([] if faster else [f"is not faster ({speed})"])
                                         + ([] if ok else [f"is over budget ({said})"])) + f"; shipping {float_p}"
    for p, c in candidates.items():
        ctx.console.print(f"  {p}: {c['latency_ms']:.4g} ms ({c['latency_source']}), quality "
                          + (f"cosine {c['mean_cosine']:.4f}" if "mean_cosine" in c else f"acc {c['accuracy']:.4f}"))
    ctx.console.print(f"  precision guard: {why}")
    record["precision_guard"] = {"requested": t.precision, "shipped": shipped, "reason": why, "candidates": candidates}
    teacher_onnx = previous.teacher_onnx
    teacher = _compile(ctx, backend, teacher_onnx, folder, "fp32", options)
    t_ref = _reference(ctx, teacher_onnx, threads)
    t_par = compare(ctx.teacher.task, _outputs(ctx, teacher, threads), t_ref)
    parity.require(t_par, "fp32", f"compile: the {backend.name} fp32 teacher disagrees with its ONNX model")
    record["teacher"] = {"parity": t_par.as_dict(), "path": teacher.path.name, "artifact": teacher.to_dict()}
    alternatives = {}
    if backend.compressed_teacher:
        p = backend.compressed_teacher
        ctx.console.print(f"  the teacher alone, {p} on {backend.name} (the alternative to distillation)")
        alt = _compile(ctx, backend, teacher_onnx, folder / "teacher-compressed", p, options)
        q = quality(ctx, _outputs(ctx, alt, threads))
        alternatives[f"teacher-{p}"] = Alternative(alt, p, q["accuracy"], 100 * (teacher_acc - q["accuracy"]),
                                                   quality={k: v for k, v in q.items() if k != "accuracy"})
        record["alternatives"] = {n: a.as_dict() | {"path": a.artifact.path.name} for n, a in alternatives.items()}
    ctx.run.compile_json.write_text(json.dumps(record | {"shipped": artifacts[shipped].to_dict()}, indent=2,
                                               default=str))
    if not artifacts:
        raise StageFailed("compile: no artifact was built")
    return CompileResult(artifacts[shipped], teacher, record, alternatives, previous)
