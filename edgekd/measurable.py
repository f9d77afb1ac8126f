"""Whether an artifact can be measured here (and on how many threads), and what the cost model predicts
where it cannot."""

from __future__ import annotations

import platform
from dataclasses import replace

import onnx

from edgekd.config import Profile
from edgekd.cost.roofline import predict_onnx
from edgekd.figures import Figure, Figures
from edgekd.hostinfo import usable_cores
from edgekd.interleave import load_replicas, time_sessions
from edgekd.results import Alternative
from edgekd.runtimes import Artifact, create_backend
from edgekd.runtimes.memprobe import memory_figures


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
    return min(profile.threads, usable_cores())


def predicted_figures(onnx_path, profile: Profile, precision: str, batch: int, runtime: str,
                      blocker: str) -> Figures:
    """Latency and memory of an ONNX model predicted by the cost model for `runtime` on the profile."""
    latency, memory = predict_onnx(onnx.load(str(onnx_path)), profile, precision, batch, runtime=runtime)
    return Figures(Figure(latency.value, "predicted", tuple(latency.interval), latency.detail),
                   Figure(memory.value, "predicted", tuple(memory.interval), memory.detail), {"blocker": blocker})


CHECK_SECONDS_PER_MODEL = 2.0  # interleaved timing per model in the final check

def measure_here(ctx, student_art: Artifact, teacher_art: Artifact, alternatives: dict[str, Alternative], feed,
                 shape, threads: int, at: str = ""):
    """Student, teacher and the alternatives timed interleaved in one process here (edgekd/interleave.py), memory
    probed in fresh processes: (student Figures, teacher Figures, their sessions' settings, the speed-up, the
    alternatives with their figures). `at` says what the timing ran at (" at batch 1 and 128 tokens")."""
    arts = {"teacher": teacher_art, "student": student_art} | {n: a.artifact for n, a in alternatives.items()}
    sessions = {n: load_replicas(a, threads) for n, a in arts.items()}
    with ctx.console.status(f"timing the student, the teacher and {len(alternatives)} alternative(s) "
                            f"interleaved on {ctx.target.runtime}{at}"):
        timed = time_sessions(sessions, feed, CHECK_SECONDS_PER_MODEL * len(arts))
    s_fig = timed.figures("student") | memory_figures(student_art, shape, threads)
    t_fig = timed.figures("teacher") | memory_figures(teacher_art, shape, threads)
    ratio = timed.speedup("teacher", "student")
    speedup = Figure(ratio.value, "measured", ratio.interval,
                     f"teacher / student p50 on {ctx.target.runtime}{at}, timed interleaved in one process "
                     f"({timed.rounds} rounds); paired-bootstrap 95% interval")
    measured = {}
    for name, alt in alternatives.items():
        r = timed.speedup("teacher", name)
        measured[name] = replace(
            alt, figures=alt.figures | timed.figures(name) | memory_figures(alt.artifact, shape, threads),
            speedup=Figure(r.value, "measured", r.interval, f"teacher fp32 / teacher {alt.precision}"))
    settings = {n: sessions[n][0].settings for n in ("student", "teacher")}
    return s_fig, t_fig, settings, speedup, measured
