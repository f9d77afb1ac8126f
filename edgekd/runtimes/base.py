"""What every runtime backend is: an Artifact it builds, a Session it runs, and the facts about the runtime
that the stages ask for (float precision, file suffixes, where engines are built, its lint, versions,
whether it runs here). Backends subclass Backend and register with `register_runtime`; nothing outside a
backend branches on a runtime's name."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np

from edgekd.optional import installed
from edgekd.registry import Registry

RUNTIME_DEFAULT = "runtime default"  # Artifact.settings["execution"] of Artifact.as_deployed()


@dataclass(frozen=True)
class Artifact:
    path: Path
    runtime: str  # a registered runtime, or ONNX_FILE: the ONNX model itself where no runtime compiled it
    precision: str
    settings: dict = field(default_factory=dict)  # how it was built, recorded in the report

    def to_dict(self) -> dict:
        return {"path": str(self.path), "runtime": self.runtime, "precision": self.precision,
                "settings": self.settings}

    @classmethod
    def from_dict(cls, d: dict) -> Artifact:
        return cls(Path(d["path"]), d["runtime"], d["precision"], d.get("settings", {}))

    def as_deployed(self) -> Artifact:
        """This artifact run with the runtime's own execution settings, as a user deploying it unasked would: the
        teacher a speed-up is measured against (OpenVINO runs an fp32 model in bf16 on CPUs that have it)."""
        return replace(self, settings=self.settings | {"execution": RUNTIME_DEFAULT})

    @property
    def compiled(self) -> bool:
        """False for the ONNX model standing in as the artifact (the compile stage skipped)."""
        return self.runtime != ONNX_FILE

    @property
    def files(self) -> list[Path]:
        """Every file the artifact needs beside it (an IR's weights, the build record)."""
        extra = [self.path.with_suffix(".bin")] if self.path.suffix == ".xml" else []
        meta = [sidecar(self.path)]
        return [p for p in (self.path, *extra, *meta) if p.is_file()]


# The runtime of an Artifact that is the exported ONNX model itself, not compiled for any runtime (the
# compile stage skipped where the target's runtime is neither here nor on --remote). Not a backend.
ONNX_FILE = "onnx"


@dataclass(frozen=True)
class CompileOptions:
    """What a backend may use beyond precision, calibration and arch.

    tune: labelled inputs for accuracy-controlled INT8 (OpenVINO), drawn from the training split outside
    the calibration subset, never from the held-out split the report's accuracy comes from.
    """

    tune: tuple[np.ndarray, np.ndarray] | None = None
    max_accuracy_drop: float | None = None  # points INT8 may lose against the float model (accuracy control)
    mobile: bool = False  # ONNX Runtime: ORT format for mobile builds
    batch: int = 1  # TensorRT: the optimization profile's opt batch ...
    max_batch: int = 64  # ... and its max (min is 1)
    timing_cache: Path | None = None  # TensorRT: reused and updated across builds on one device
    sequence: int | None = None  # TensorRT: a token input's sequence axis spans 1..sequence (opt: sequence)
    # A transformer encoder (token inputs): INT8 the way each runtime quantizes those (ONNX Runtime: dynamic
    # per-token activations; OpenVINO: NNCF with its transformer patterns), calibrated on `calibration_feeds`.
    transformer: bool = False
    calibration_feeds: tuple = ()  # feeds (input name -> array) for runtimes that calibrate activations


class Session(Protocol):
    settings: dict  # how it runs (providers, threads, precision hints), recorded in the report
    sample_shape: tuple  # the input of one sample (no batch dimension)

    def run(self, x: np.ndarray) -> np.ndarray: ...


class Backend:
    """A runtime. Subclasses set the facts below and implement compile and load."""

    name: ClassVar[str]
    label: ClassVar[str]  # as people write it, in messages
    # What ships when INT8 does not pay (the precision guard), and what the search compares speed at.
    float_precision: ClassVar[str]
    # The teacher compressed without distillation: what a user gets by quantizing alone on this runtime.
    compressed_teacher: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]  # artifact files this runtime loads
    sdk: ClassVar[tuple[str, ...]]  # modules whose versions are recorded; the first must import to run
    builds_on_device: ClassVar[bool] = False  # engines are specific to the device: built there over --remote
    tunes_int8: ClassVar[bool] = False  # INT8 can be accuracy-controlled within what the budget leaves
    # INT8 is built from a Q/DQ ONNX calibrated where the data is (explicit quantization), not by the backend
    int8_from_qdq: ClassVar[bool] = False

    def lint(self, onnx_path: Path, batch: int, max_batch: int, sequence: int | None = None) -> list:
        """What this runtime's parser would refuse in an ONNX model ([Finding]), where `has_lint`; `sequence`:
        a text model's tokens per input."""
        raise NotImplementedError

    @property
    def has_lint(self) -> bool:
        return type(self).lint is not Backend.lint

    def unavailable_reason(self) -> str | None:
        """None when this runtime can compile and run here, else why not (one sentence)."""
        return None if installed(self.sdk[0]) else f"{self.sdk[0]} is not installed"

    def versions(self) -> dict[str, str]:
        return {m: mod.__version__ for m in self.sdk if (mod := installed(m)) is not None}

    def compile(self, onnx_path: Path, out_dir: Path, precision: str, calibration: np.ndarray | None,
                arch: str, options: CompileOptions | None = None) -> Artifact:
        raise NotImplementedError

    def load(self, artifact: Artifact, threads: int) -> Session:
        raise NotImplementedError

    def options_for(self, arch: str, batch: int) -> CompileOptions:
        """The compile options a target with this runtime on `arch` gets (ORT format on Arm CPUs)."""
        return CompileOptions(batch=batch, max_batch=max(64, batch))


_runtimes: Registry[type[Backend]] = Registry("runtime")


def register_runtime(cls: type[Backend]) -> type[Backend]:
    return _runtimes.register(cls.name)(cls)


def create_backend(name: str) -> Backend:
    return _runtimes.get(name)()


def list_runtimes() -> list[str]:
    return _runtimes.names()


def backend_classes() -> list[type[Backend]]:
    return [_runtimes.get(n) for n in _runtimes.names()]


def linting_runtimes() -> list[str]:
    return [b.name for b in backend_classes() if b.lint is not Backend.lint]


def sidecar(path: Path) -> Path:
    """The build record beside an artifact (`student-int8.xml.json`), read by check and bench."""
    return path.with_suffix(path.suffix + ".json")


def save_artifact(artifact: Artifact) -> None:
    sidecar(artifact.path).write_text(json.dumps(artifact.to_dict(), indent=2, default=str))
