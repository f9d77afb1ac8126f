"""Candidates timed on the target's runtime, against the teacher, before the pick.

The cost model prices hundreds of candidates in seconds, but on a machine it was not calibrated on its
absolute figures can be off by 2x or more (the roofline alone has a x1/3..x3 band), and a student
picked on them can run slower than its teacher. So, where the target's runtime runs here:

1. the teacher is exported and compiled for the runtime;
2. anchors: per space, of a few random networks, the one the cost model puts nearest the required speed-up
   is timed against the teacher, and the ratio of its measured to its predicted speed-up corrects that
   space's predictions where they decide what fits (a per-machine, per-runtime scale found in seconds, so
   a machine no calibration file was made on needs none);
3. after the evolution, the best-scoring candidates (top_k a batch) are timed against the teacher, one at a
   time with it, interleaved (edgekd/interleave.py), and the pick is the best-scoring one whose measured
   speed-up clears the budget with margin. A batch with none that does corrects the predictions again,
   and the next batch is timed;
4. the pick is timed once more, alone with the teacher and as long as the check stage times it
   (edgekd/measurable.py). Its figure so far is one short timing that cleared the bar, and of many noisy
   figures near a bar the lucky ones clear it, so it leans high: in builds here the check then measured up
   to 14% less than the search had. A pick that no longer clears the bar gives way to the next.

Candidates are timed at initialization: latency depends on the graph, not on the weights' values.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgekd.interleave import Ratio, load_replicas, time_sessions
from edgekd.measurable import CHECK_SECONDS_PER_MODEL
from edgekd.onnx_export import export_onnx
from edgekd.runtimes import Artifact, CompileOptions, create_backend

SECONDS_PER_MODEL = 0.7  # interleaved timing of a candidate and of the teacher


@dataclass(frozen=True)
class Timed:
    """One candidate timed against the teacher on the target's runtime."""

    index: int
    space: str
    latency_ms: float
    latency_interval: tuple[float, float]
    speedup: float
    speedup_interval: tuple[float, float]
    predicted_speedup: float  # teacher / candidate by the cost model, uncorrected
    confirmed: bool = False  # timed again alone with the teacher, as long as the check times it (step 4)

    def as_dict(self) -> dict:
        return asdict(self)


class RuntimeTimer:
    """Times archs against the teacher through the target's runtime, in this process."""

    def __init__(self, ctx, teacher_onnx: Path, threads: int, folder: Path, feed=None):
        """feed: the input every model is timed on (default: a held-out image repeated to the target's batch)."""
        self.ctx, self.threads, self.folder = ctx, threads, folder
        self.backend = create_backend(ctx.target.runtime)
        self.precision = self.backend.float_precision
        self.teacher = load_replicas(self._compile(teacher_onnx, folder / "teacher"), threads)
        self.x = feed if feed is not None else np.ascontiguousarray(
            ctx.data.split("val")[0][:1].repeat(ctx.target.batch_size, 0))
        self.seconds = 0.0  # spent exporting, compiling and timing
        self.teacher_timings: list[dict] = []  # the teacher's figures from every batch

    def _compile(self, onnx_path: Path, out_dir: Path) -> Artifact:
        if self.ctx.target.runtime == "onnxruntime":  # fp32 ONNX runs as exported
            return Artifact(onnx_path, "onnxruntime", "fp32")
        return self.backend.compile(onnx_path, out_dir, self.precision, None, self.ctx.profile.arch,
                                    CompileOptions(batch=self.ctx.target.batch_size))

    def time(self, candidates: list) -> list[Timed]:
        """Export, compile and time `candidates` (search Candidates) against the teacher, one at a time, as the
        check stage times a student: with nine models in one rotation the teacher's weights left the caches between
        its blocks and every speed-up read ~20% high, and two candidates at a time still read 15-20% high (one
        build: 4.09x two at a time, 3.31x alone)."""
        return [self._against_teacher(c, SECONDS_PER_MODEL, confirmed=False) for c in candidates]

    def confirm(self, candidate) -> Timed:
        """`candidate` timed again against the teacher, for as long as the check stage times a student."""
        return self._against_teacher(candidate, CHECK_SECONDS_PER_MODEL, confirmed=True)

    def export(self, c, path: Path) -> Path:
        """The candidate's ONNX at `path`, randomly initialised (edgekd/text/search.py exports encoders)."""
        return export_onnx(self.ctx.new_student(c.arch), self.ctx.input_shape, path, {})

    def _against_teacher(self, c, seconds_per_model: float, confirmed: bool) -> Timed:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=self.folder) as tmp:
            path = self.export(c, Path(tmp) / "candidate.onnx")
            sessions = {"teacher": self.teacher, "candidate": load_replicas(self._compile(path, Path(tmp)),
                                                                            self.threads)}
            timed = time_sessions(sessions, self.x, seconds_per_model * len(sessions))
        self.teacher_timings.append(timed.figures("teacher").as_dict())
        ratio: Ratio = timed.speedup("teacher", "candidate")
        self.seconds += time.perf_counter() - start
        return Timed(c.index, c.space, timed.latency_ms("candidate"), timed.interval_ms("candidate"), ratio.value,
                     ratio.interval, c.predicted_speedup, confirmed)


def corrections(timed: list[Timed]) -> dict[str, float]:
    """Per space: median of measured / predicted speed-up over its timed candidates."""
    by_space: dict[str, list[float]] = {}
    for t in timed:
        by_space.setdefault(t.space, []).append(t.speedup / t.predicted_speedup)
    return {space: float(np.median(v)) for space, v in by_space.items()}
