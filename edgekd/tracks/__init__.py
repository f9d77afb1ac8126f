"""A Track: what differs between the modalities a build distils (images, text), chosen once per run.

The five stages (edgekd/stages) are one pipeline for every teacher. What a modality changes lives behind this
protocol and nowhere else: how the teacher and data load, the candidates the search prices and builds, the
training loop, the ONNX export, how a model's held-out outputs are produced and judged (accuracy; a sentence
encoder's cosine and neighbour agreement), how it is priced when it cannot be timed, and its quality budgets.
The search driver, the precision guard, the check, the timing service and the report are shared; a new
modality is one new module here (docs/architecture.md, "Adding a modality").

    register_track(track)      a Track instance, under track.name
    create_track(name)         the registered instance
    list_tracks()              names, in registration order
    track_for_source(source)   the track whose source prefix starts a --teacher source (hf: -> text), else
                               the one without a prefix (image)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from edgekd.registry import Registry

if TYPE_CHECKING:
    from edgekd.figures import Figure, Figures
    from edgekd.parity import Parity
    from edgekd.report import BudgetResult, Report
    from edgekd.results import DistillResult, ExportResult
    from edgekd.runtimes import CompileOptions, Session


class Track(Protocol):
    name: str
    source_prefix: str | None  # the --teacher sources it takes ("hf:"); None: every source no other track takes

    # run set-up (edgekd/context.py)
    def load(self, cfg, target, profile, device, console) -> tuple[object, object]:
        """(teacher, data), validated; InputError names the option at fault. Nothing is written."""

    def teacher_accuracy(self, ctx) -> float:
        """The teacher as supplied, on the held-out split (the reference every accuracy drop is taken from)."""

    # search, distill, export
    def check_arch(self, ctx, arch: dict) -> None:
        """A pinned --student-arch that cannot be built fails here, before any training."""

    def search(self, ctx) -> dict:
        """OUT/search/search.json's record (its `pick` the student); BudgetFailed when nothing fits."""

    def distill(self, ctx, arch: dict, resume: bool, nproc_per_node: int) -> dict:
        """OUT/distill/student.json's record, the weights beside it; BudgetFailed over the accuracy budget."""

    def export(self, ctx, distilled: DistillResult) -> ExportResult:
        """Student (and a torch teacher) -> ONNX, checked for parity through onnxruntime."""

    def teacher_onnx(self, ctx) -> tuple[Path, Parity | None]:
        """The teacher as ONNX (exported once per run; the search times it before the export stage runs)."""

    def export_candidate(self, ctx, arch: dict, path: Path) -> Path:
        """A search candidate's ONNX, randomly initialised (latency depends on the graph, not the weights)."""

    # what compile and check ask of a model's outputs
    def outputs(self, ctx, session: Session) -> np.ndarray:
        """The model's outputs on the held-out split, in order, through a runtime session."""

    def quality(self, ctx, outputs: np.ndarray) -> dict:
        """{"accuracy": ..., and the track's own measures with their intervals} against labels or the teacher."""

    def describe(self, quality: dict) -> str:
        """One line of a model's quality, for the terminal."""

    def compare(self, ctx, got: np.ndarray, reference: np.ndarray) -> Parity:
        """Parity of a runtime's outputs with the ONNX model's."""

    def within(self, ctx, quality: dict, float_quality: dict) -> tuple[bool, str]:
        """The precision guard's quality rule for an INT8 artifact against the float one: (within, said)."""

    def compile_options(self, ctx, backend) -> CompileOptions:
        """How a model is compiled for the target (batch, calibration, a text model's sequence)."""

    def calibration(self, ctx) -> np.ndarray | None:
        """Calibration inputs an INT8 artifact is built from, where they are arrays (images); None otherwise."""

    def tune_set(self, ctx) -> tuple[np.ndarray, np.ndarray] | None:
        """Inputs and labels for accuracy-controlled INT8 (OpenVINO), or None where the track has none."""

    def sequence_length(self, ctx) -> int | None:
        """Tokens per input for a text model (the lint and the timing run at it); None for images."""

    def predicted(self, ctx, onnx_path: Path, arch: dict | None, precision: str, blocker: str) -> Figures:
        """Latency and memory from the profile's cost model where the runtime does not run here (`arch` None:
        the teacher)."""

    def budgets(self, ctx, figures: Figures, speedup: Figure, drop: float, quality: dict,
                blocker: str | None = None) -> list[BudgetResult]:
        """Every budget of a model (the student, or the teacher compressed alone) decided."""

    def shortfall(self, ctx, results: list[BudgetResult], arch: dict, evaluated_with: str,
                  speedup: Figure) -> str:
        """What to say when the student misses a quality budget ('' when nothing is to be said)."""

    def details(self, ctx, quality: dict) -> dict:
        """The report's extra fields of the checked student (a text model's quality and sequence length)."""

    def teacher_details(self, ctx) -> dict:
        """The report's extra fields of the teacher."""

    def fill_report(self, ctx, report: Report) -> None:
        """The track's own report fields, set when the report is started."""


_tracks: Registry[Track] = Registry("track")


def register_track(track: Track) -> Track:
    return _tracks.register(track.name)(track)


def create_track(name: str) -> Track:
    return _tracks.get(name)


def list_tracks() -> list[str]:
    return _tracks.names()


def track_for_source(source: str | None) -> Track:
    """The track whose teacher this is: text for `hf:DIR`, images for everything else."""
    tracks = [create_track(name) for name in list_tracks()]
    prefixed = [t for t in tracks if t.source_prefix and (source or "").startswith(t.source_prefix)]
    return prefixed[0] if prefixed else next(t for t in tracks if t.source_prefix is None)


# the modules register their track
from edgekd.tracks import image as _image  # noqa: E402,F401
from edgekd.tracks import text as _text  # noqa: E402,F401
