"""Candidates timed on the target's runtime, against the teacher, before the pick.

The cost model prices hundreds of candidates in seconds, but on a machine it was not calibrated on its
absolute figures can be off by 2x or more (the roofline alone has a x1/3..x3 band), and a student
picked on them can run slower than its teacher. So, where the target's runtime runs here:

1. the teacher is exported and compiled for the runtime;
2. anchors: per space, of a few random networks, the one the cost model puts nearest the required speed-up
   is timed against the teacher, and the ratio of its measured to its predicted speed-up corrects that
   space's predictions where they decide what fits (a per-machine, per-runtime scale found in seconds, so
   a machine no calibration file was made on needs none);
3. after the evolution, the best-scoring candidates (top_k a batch) are timed against the teacher, two at a
   time with it, interleaved (edgekd/interleave.py), and the pick is the best-scoring one whose measured
   speed-up clears the budget with margin. A batch with none that does corrects the predictions again,
   and the next batch is timed.

Candidates are timed at initialization: latency depends on the graph, not on the weights' values.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgekd.interleave import Ratio, load_replicas, time_sessions
from edgekd.onnx_export import export_onnx
from edgekd.runtimes import Artifact, CompileOptions, create_backend

SECONDS_PER_MODEL = 0.7  # interleaved timing per model in a group
GROUP = 2  # candidates timed with the teacher at a time


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

    def as_dict(self) -> dict:
        return asdict(self)


class RuntimeTimer:
    """Times archs against the teacher through the target's runtime, in this process."""

    def __init__(self, ctx, teacher_onnx: Path, threads: int, folder: Path):
        self.ctx, self.threads, self.folder = ctx, threads, folder
        self.backend = create_backend(ctx.target.runtime)
        self.precision = create_backend(ctx.target.runtime).float_precision
        self.teacher = load_replicas(self._compile(teacher_onnx, folder / "teacher"), threads)
        self.x = np.ascontiguousarray(ctx.data.split("val")[0][:1].repeat(ctx.target.batch_size, 0))
        self.seconds = 0.0  # spent exporting, compiling and timing
        self.teacher_timings: list[dict] = []  # the teacher's figures from every batch

    def _compile(self, onnx_path: Path, out_dir: Path) -> Artifact:
        if self.ctx.target.runtime == "onnxruntime":  # fp32 ONNX runs as exported
            return Artifact(onnx_path, "onnxruntime", "fp32")
        return self.backend.compile(onnx_path, out_dir, self.precision, None, self.ctx.profile.arch,
                                    CompileOptions(batch=self.ctx.target.batch_size))

    def time(self, candidates: list) -> list[Timed]:
        """Export, compile and time `candidates` (search Candidates) against the teacher in one run."""
        start = time.perf_counter()
        out = []
        with tempfile.TemporaryDirectory(dir=self.folder) as tmp:
            # A few models per timed group, as in the check stage: with nine in one rotation, the teacher's
            # weights left the caches between its blocks and every speed-up read ~20% high.
            for group in (candidates[i:i + GROUP] for i in range(0, len(candidates), GROUP)):
                sessions = {"teacher": self.teacher}
                for c in group:
                    path = export_onnx(self.ctx.new_student(c.arch), self.ctx.input_shape,
                                       Path(tmp) / f"candidate-{c.index}.onnx", {})
                    sessions[str(c.index)] = load_replicas(self._compile(path, Path(tmp)), self.threads)
                timed = time_sessions(sessions, self.x, SECONDS_PER_MODEL * len(sessions))
                self.teacher_timings.append(timed.figures("teacher").as_dict())
                for c in group:
                    ratio: Ratio = timed.speedup("teacher", str(c.index))
                    out.append(Timed(c.index, c.space, timed.latency_ms(str(c.index)),
                                     timed.interval_ms(str(c.index)), ratio.value, ratio.interval,
                                     c.predicted_speedup))
        self.seconds += time.perf_counter() - start
        return out


def corrections(timed: list[Timed]) -> dict[str, float]:
    """Per space: median of measured / predicted speed-up over its timed candidates."""
    by_space: dict[str, list[float]] = {}
    for t in timed:
        by_space.setdefault(t.space, []).append(t.speedup / t.predicted_speedup)
    return {space: float(np.median(v)) for space, v in by_space.items()}
