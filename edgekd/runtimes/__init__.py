"""Runtime backends behind one interface, split as Polygraphy does into compile/load and run.

    backend = create_backend("openvino")
    artifact = backend.compile(onnx_path, out_dir, "int8", calibration, "x86_64")   # build once
    session = backend.load(artifact, threads=4)                                     # then run many times
    logits = session.run(x)

Backends import their SDK inside their methods, so `import edgekd.runtimes` is cheap and a missing SDK
is a clear error naming the extra to install. A session whose runtime can time the device itself
(TensorRT, with CUDA events) also sets `last_compute_ms` after each run, beside the host latency the
caller measures around `run`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from edgekd.errors import InputError
from edgekd.registry import Registry

# What ships when INT8 does not pay (the precision guard), per runtime: ONNX Runtime's CPU provider has
# no fp16 kernels; OpenVINO and TensorRT take fp16 weights (TensorRT also computes in fp16).
FLOAT_PRECISION = {"onnxruntime": "fp32", "openvino": "fp16", "tensorrt": "fp16"}


@dataclass(frozen=True)
class Artifact:
    path: Path
    runtime: str
    precision: str
    settings: dict = field(default_factory=dict)  # how it was built, recorded in the report

    def to_dict(self) -> dict:
        return {"path": str(self.path), "runtime": self.runtime, "precision": self.precision,
                "settings": self.settings}

    @classmethod
    def from_dict(cls, d: dict) -> Artifact:
        return cls(Path(d["path"]), d["runtime"], d["precision"], d.get("settings", {}))

    @property
    def files(self) -> list[Path]:
        """Every file the artifact needs beside it (an IR's weights, the build record)."""
        extra = [self.path.with_suffix(".bin")] if self.path.suffix == ".xml" else []
        meta = [sidecar(self.path)]
        return [p for p in (self.path, *extra, *meta) if p.is_file()]


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


class Session(Protocol):
    settings: dict  # how it runs (providers, threads, precision hints), recorded in the report
    sample_shape: tuple  # the input of one sample (no batch dimension)

    def run(self, x: np.ndarray) -> np.ndarray: ...


class Backend(Protocol):
    name: str

    def unavailable_reason(self) -> str | None:
        """None when this runtime can compile and run here, else why not (one sentence)."""

    def versions(self) -> dict[str, str]: ...

    def compile(self, onnx_path: Path, out_dir: Path, precision: str, calibration: np.ndarray | None,
                arch: str, options: CompileOptions | None = None) -> Artifact: ...

    def load(self, artifact: Artifact, threads: int) -> Session: ...


runtimes: Registry[type] = Registry("runtime")


def create_backend(name: str) -> Backend:
    from edgekd.runtimes import onnxruntime_backend, openvino_backend, tensorrt_backend  # noqa: F401  (register)

    return runtimes.get(name)()


SUFFIX_RUNTIME = {".onnx": "onnxruntime", ".ort": "onnxruntime", ".xml": "openvino", ".engine": "tensorrt",
                  ".plan": "tensorrt"}


def sidecar(path: Path) -> Path:
    """The build record beside an artifact (`student-int8.xml.json`), read by check and bench."""
    return path.with_suffix(path.suffix + ".json")


def save_artifact(artifact: Artifact) -> None:
    sidecar(artifact.path).write_text(json.dumps(artifact.to_dict(), indent=2, default=str))


def artifact_from_path(path: Path, runtime: str | None = None, precision: str | None = None) -> Artifact:
    """An artifact for a model file (check, bench); a plain ONNX runs on any runtime."""
    from edgekd.validate import check_model_file

    if path.is_dir() or not path.is_file():
        check_model_file(path)  # says which: a directory, or no such file
    native = SUFFIX_RUNTIME.get(path.suffix.lower())
    if native is None:
        raise InputError(f"MODEL '{path}': unknown model format; give an .onnx, .ort, OpenVINO .xml, "
                         "or TensorRT .engine")
    if runtime is not None and native != runtime and path.suffix.lower() != ".onnx":
        raise InputError(f"MODEL '{path}' is a {native} artifact but --runtime is {runtime}")
    check_model_file(path)  # a damaged file is bad input here, not a runtime's traceback later
    meta = sidecar(path)
    if meta.is_file():  # written by edgekd's compile stage
        try:
            recorded = Artifact.from_dict(json.loads(meta.read_text()) | {"path": str(path)})
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise InputError(f"{meta}: not an edgekd build record ({e}); delete it or rebuild the artifact") from None
        if runtime is None or recorded.runtime == runtime:
            return recorded
    return Artifact(path, runtime or native, precision or "fp32")


def evaluate_accuracy(session: Session, x: np.ndarray, y: np.ndarray, batch: int = 256) -> tuple[float, np.ndarray]:
    """Top-1 accuracy through a runtime session, and the logits it produced."""
    outs = [session.run(np.ascontiguousarray(x[i:i + batch])) for i in range(0, len(x), batch)]
    logits = np.concatenate(outs)
    return float((logits.argmax(1) == y).mean()), logits


def compare_logits(got: np.ndarray, ref: np.ndarray) -> dict:
    """Parity of an artifact's outputs with the ONNX model's: max |diff| relative to the largest
    reference logit, and top-1 agreement."""
    diff = float(np.abs(got - ref).max() / max(1.0, float(np.abs(ref).max())))
    return {"max_abs_diff": diff, "top1_agreement": float((got.argmax(1) == ref.argmax(1)).mean()),
            "samples": len(ref)}


linters: Registry = Registry("lint runtime")  # runtime -> lint_file(path, batch, max_batch) -> [Finding]


def get_linter(runtime: str):
    from edgekd.runtimes import tensorrt_lint  # noqa: F401  (register)

    return linters.get(runtime)
