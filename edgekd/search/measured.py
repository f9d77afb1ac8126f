"""Candidates timed on the target's runtime, against the teacher, before the pick.

The cost model prices hundreds of candidates in seconds, but on a machine it was not calibrated on its
absolute figures can be off by 2x or more (the roofline alone has a x1/3..x3 band), and a student
picked on them can run slower than its teacher. So, where the target's runtime runs here:

1. the teacher is exported and compiled for the runtime;
2. anchors: per space, of a few random networks, the one the cost model puts nearest the required speed-up
   is timed against the teacher, and the ratio of its measured to its predicted speed-up corrects that
   space's predictions where they decide what fits (a per-machine, per-runtime scale found in seconds, so
   a machine no calibration file was made on needs none);
3. where the target ships another precision than the float one timed here (INT8 on OpenVINO), its gain is
   timed once per space on the anchor, float against shipped, interleaved: the check times the shipped
   artifact, so the search holds a candidate's float speed-up times that gain against the budget, instead of
   asking the float model for a margin that INT8 already gives (a gain under 1 counts as 1: the precision
   guard then ships the float model);
4. after the evolution, the candidates are walked in score order, each timed alone with the teacher,
   interleaved (edgekd/interleave.py), as long as the check stage times a student (edgekd/measurable.py), and
   accepted by the check's own rule (edgekd/gate/verdict.py): its whole interval, the gain's combined with it by
   at_shipped, clears the budget. The first accepted is the pick; a refused one gives way to the next.

The same inputs should pick the same student, and every timing moves a few percent from run to run. So timing
only accepts or refuses, in an order fixed before anything but the anchors is timed, and nothing is decided
where a few percent would flip it:
- the scale the evolution sees (correction x gain, `scales`) is rounded down to a grid of quarter octaves
  (QUANTUM): runs whose anchors time a few percent apart see the same scale, so the same candidates fit and
  rank the same;
- a grid has edges, and a machine whose scale lies near one would still flip between two steps from run to run
  (on a 2-core VM the correction moved 11% between fresh processes: the host's measured peaks, which the
  predictions divide by, moved 133 to 187 GFLOPS). So the step a run settles on is remembered in the cache,
  per machine and search (teacher, target, spaces, seed, budget), and the next run keeps it while its own
  lies within one step of it (`remembered`): hysteresis, as a thermostat has. A scale two steps away is a
  changed machine and replaces it. `rm -r ~/.cache/edgekd/search` forgets them;
- a candidate fits when its scaled prediction clears the budget plus search.speedup_margin (15%), and is
  accepted when its timed interval clears the budget itself: the best-ranked candidates sit at the prediction's
  bar, and the margin keeps the bar timing decides on well under them. (With both bars at one place, as
  before, a candidate at the bar was accepted in one run and refused in the next: two fresh runs picked two
  students.)

Candidates are timed at initialization: latency depends on the graph, not on the weights' values.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgekd.hostinfo import cache_dir
from edgekd.interleave import Ratio, load_replicas, time_sessions
from edgekd.measurable import CHECK_SECONDS_PER_MODEL, local_threads
from edgekd.runtimes import Artifact, create_backend

QUANTUM = 4  # steps per octave of the measured scale the search sees (2 ** (1/4): 19% apart)
GAIN_CALIBRATION_SAMPLES = 64  # enough to place an INT8 anchor's scales: its speed is timed, not its accuracy


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

    def __init__(self, ctx, folder: Path):
        """Every model is compiled as the compile stage compiles it (the track's compile options) and timed on
        the input the check times (ctx.data.timing_feed)."""
        self.ctx, self.threads, self.folder = ctx, local_threads(ctx.profile), folder
        self.backend = create_backend(ctx.target.runtime)
        self.options = ctx.track.compile_options(ctx, self.backend)
        self.precision = self.backend.float_precision
        # timed as the check times it: as the runtime runs it by default (edgekd/measurable.py)
        teacher = ctx.track.teacher_onnx(ctx)[0]
        self.teacher = load_replicas(self._compile(teacher, folder / "teacher").as_deployed(), self.threads)
        self.x = ctx.data.timing_feed(ctx.target.batch_size)
        self.seconds = 0.0  # spent exporting, compiling and timing
        self.teacher_timings: list[dict] = []  # the teacher's figures from every batch

    def _compile(self, onnx_path: Path, out_dir: Path) -> Artifact:
        if self.ctx.target.runtime == "onnxruntime":  # fp32 ONNX runs as exported
            return Artifact(onnx_path, "onnxruntime", "fp32")
        return self.backend.compile(onnx_path, out_dir, self.precision, None, self.ctx.profile.arch, self.options)

    def export(self, c, path: Path) -> Path:
        """The candidate's ONNX at `path`, randomly initialised: latency depends on the graph, not the weights."""
        return self.ctx.track.export_candidate(self.ctx, c.arch, path)

    def calibration(self):
        """What INT8 is calibrated on where the gain is timed (None where the options carry the feeds)."""
        calibration = self.ctx.track.calibration(self.ctx)
        return None if calibration is None else calibration[:GAIN_CALIBRATION_SAMPLES]

    def time(self, candidate) -> Timed:
        """Export, compile and time `candidate` (a search Candidate) alone with the teacher, as long as the check
        stage times a student: with nine models in one rotation the teacher's weights left the caches between
        its blocks and every speed-up read ~20% high, and two candidates at a time still read 15-20% high (one
        build: 4.09x two at a time, 3.31x alone)."""
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=self.folder) as tmp:
            path = self.export(candidate, Path(tmp) / "candidate.onnx")
            sessions = {"teacher": self.teacher, "candidate": load_replicas(self._compile(path, Path(tmp)),
                                                                            self.threads)}
            timed = time_sessions(sessions, self.x, CHECK_SECONDS_PER_MODEL * len(sessions))
        self.teacher_timings.append(timed.figures("teacher").as_dict())
        ratio: Ratio = timed.speedup("teacher", "candidate")
        self.seconds += time.perf_counter() - start
        return Timed(candidate.index, candidate.space, timed.latency_ms("candidate"), timed.interval_ms("candidate"),
                     ratio.value, ratio.interval, candidate.predicted_speedup)

    def gain(self, c) -> Ratio | None:
        """How many times faster `c` runs at the precision the target ships than at the float precision the
        search times (float / shipped, interleaved, step 3); None where the float model is what ships."""
        shipping = self.ctx.target.precision
        if shipping == self.precision:
            return None
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=self.folder) as tmp:
            path = self.export(c, Path(tmp) / "anchor.onnx")
            shipped = self.backend.compile(path, Path(tmp) / shipping, shipping, self.calibration(),
                                           self.ctx.profile.arch, self.options)
            sessions = {"float": load_replicas(self._compile(path, Path(tmp) / "float"), self.threads),
                        "shipped": load_replicas(shipped, self.threads)}
            # as long as the check times a model: the gain multiplies every candidate's figure, so its interval
            # should be as narrow as the check's
            ratio = time_sessions(sessions, self.x, CHECK_SECONDS_PER_MODEL * len(sessions)).speedup("float",
                                                                                                      "shipped")
        self.seconds += time.perf_counter() - start
        return ratio


def corrections(anchors: list[Timed]) -> dict[str, float]:
    """Per space: its anchor's measured / predicted speed-up, what the cost model's figures are worth here."""
    return {t.space: t.speedup / t.predicted_speedup for t in anchors}


def at_shipped(t: Timed, gain: Ratio | None) -> tuple[float, tuple[float, float]]:
    """`t`'s speed-up and interval at the precision the target ships: times the gain, a gain under 1 counted as 1
    (the precision guard ships the float model then). The two were timed independently, so their intervals'
    relative half-widths add in quadrature (in logs), as independent errors do."""
    if gain is None or gain.value <= 1.0:
        return t.speedup, t.speedup_interval
    value = t.speedup * gain.value
    (lo, hi), (glo, ghi) = t.speedup_interval, gain.interval
    down = math.hypot(math.log(t.speedup / lo), math.log(gain.value / glo))
    up = math.hypot(math.log(hi / t.speedup), math.log(ghi / gain.value))
    return value, (value * math.exp(-down), value * math.exp(up))


def scales(correction: dict[str, float], gains: dict[str, Ratio | None]) -> dict[str, float]:
    """Per space, what a predicted float speed-up is multiplied by to stand for the shipped model's measured
    one: correction x gain, rounded down to the QUANTUM grid (the module's docstring says why)."""
    out = {}
    for space, c in correction.items():
        scale = c * max(1.0, gains[space].value if gains.get(space) else 1.0)
        out[space] = 2.0 ** (math.floor(QUANTUM * math.log2(scale) + 1e-9) / QUANTUM)
    return out


def remembered(key: str, found: dict[str, float]) -> tuple[dict[str, float], dict[str, str]]:
    """Hysteresis across runs (the module's docstring says why): per space, the scale an earlier run on this
    machine settled on for the same search (`key`) is kept while this run's lies within one QUANTUM step of it;
    otherwise this run's replaces it. Returns (the scales, per space "remembered" or "measured")."""
    path = cache_dir() / "search" / f"scales-{key}.json"
    try:
        old = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:  # a torn or foreign file: measured afresh, and rewritten below
        old = {}
    out, source = {}, {}
    for space, value in found.items():
        prev = old.get(space) if isinstance(old, dict) else None
        keep = isinstance(prev, float) and prev > 0 and abs(QUANTUM * math.log2(prev / value)) <= 1 + 1e-9
        out[space], source[space] = (prev, "remembered") if keep else (value, "measured")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps((old if isinstance(old, dict) else {}) | out))
    os.replace(tmp, path)
    return out, source
