"""Whether an artifact can be measured here (and on how many threads), and what the cost model predicts
where it cannot."""

from __future__ import annotations

import platform
from dataclasses import replace

import onnx

from edgekd.config import Profile
from edgekd.cost.roofline import SPEEDUP_BAND, predict_onnx
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


def predicted_speedup(teacher: Figure, model: Figure, blocker: str) -> Figure:
    """teacher / model, both predicted, with the cost model's band for a ratio (SPEEDUP_BAND): decided on that
    band like a measured speed-up on its interval, so a prediction near the budget is inconclusive."""
    value = teacher.value / model.value
    lo, hi = SPEEDUP_BAND
    return Figure(value, "predicted", (value * lo, value * hi),
                  f"teacher / model, both predicted by the same cost model; its shared error cancels in part, so the "
                  f"band is x{lo:g} .. x{hi:.3g} (edgekd/cost/roofline.py): {blocker}")


CHECK_SECONDS_PER_MODEL = 2.0  # interleaved timing per model in the final check
GUARD_SECONDS_PER_CANDIDATE = 1.0  # interleaved timing per precision when the precision guard measures here

def measure_here(ctx, student_art: Artifact, teacher_art: Artifact, alternatives: dict[str, Alternative],
                 threads: int, at: str = ""):
    """Every speed-up timed as a pair, interleaved in one process here (edgekd/interleave.py): student and teacher;
    then each alternative in its own pass with the teacher, and one with the student (the speed-up over the teacher
    compressed alone: at the student's precision, the same-precision ratio). A third model in one rotation pushed
    the teacher's weights out of the caches between its blocks and read 15-20% high (edgekd/search/measured.py).
    Memory probed in fresh processes. Returns (student Figures, teacher Figures, their sessions' settings, the
    speed-up, the alternatives with their figures). `at` says what the timing ran at (" at batch 1 and 128 tokens")."""
    batch = ctx.target.batch_size
    feed, shape = ctx.data.timing_feed(batch), ctx.data.timing_shape(batch)
    # the teacher as the runtime runs it by default (bf16 where OpenVINO picks it); its session settings say which
    teacher, student = load_replicas(teacher_art.as_deployed(), threads), load_replicas(student_art, threads)
    with ctx.console.status(f"timing the student and the teacher interleaved on {ctx.target.runtime}{at}"):
        timed = time_sessions({"teacher": teacher, "student": student}, feed, CHECK_SECONDS_PER_MODEL * 2)
    s_fig = timed.figures("student") | memory_figures(student_art, shape, threads)
    t_fig = timed.figures("teacher") | memory_figures(teacher_art, shape, threads)
    ratio = timed.speedup("teacher", "student")
    speedup = Figure(ratio.value, "measured", ratio.interval,
                     f"teacher / student on {ctx.target.runtime}{at}, timed as a pair interleaved in one process: the "
                     f"median of {timed.rounds} rounds' ratios, bootstrap 95% interval")
    measured = {}
    for name, alt in alternatives.items():
        sessions = load_replicas(alt.artifact, threads)
        with ctx.console.status(f"timing {name} with the teacher, then with the student, on {ctx.target.runtime}"):
            with_teacher = time_sessions({"teacher": teacher, name: sessions}, feed, CHECK_SECONDS_PER_MODEL * 2)
            with_student = time_sessions({name: sessions, "student": student}, feed, CHECK_SECONDS_PER_MODEL * 2)
        r, over = with_teacher.speedup("teacher", name), with_student.speedup(name, "student")
        measured[name] = replace(
            alt, figures=alt.figures | with_teacher.figures(name) | memory_figures(alt.artifact, shape, threads),
            speedup=Figure(r.value, "measured", r.interval, f"teacher fp32 / teacher {alt.precision}, a pair"),
            student_speedup=Figure(over.value, "measured", over.interval,
                                   f"teacher {alt.precision} / student {student_art.precision}, a pair"))
    settings = {"student": student[0].settings, "teacher": teacher[0].settings}
    return s_fig, t_fig, settings, speedup, measured
