"""Runtime backends behind one interface, split as Polygraphy does into compile/load and run.

    backend = create_backend("openvino")
    artifact = backend.compile(onnx_path, out_dir, "fp16", calibration)   # build once
    session = backend.load(artifact, threads=4)                         # then run many times
    logits = session.run(x)

Backends import their SDK inside their methods, so `import edgekd.runtimes` is cheap and a missing SDK
is a clear error naming the extra to install.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from edgekd.errors import InputError
from edgekd.registry import Registry


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


class Session(Protocol):
    settings: dict

    def run(self, x: np.ndarray) -> np.ndarray: ...


class Backend(Protocol):
    name: str

    def unavailable_reason(self) -> str | None:
        """None when this runtime can compile and run here, else why not (one sentence)."""

    def versions(self) -> dict[str, str]: ...

    def compile(self, onnx_path: Path, out_dir: Path, precision: str, calibration: np.ndarray | None,
                arch: str) -> Artifact: ...

    def load(self, artifact: Artifact, threads: int) -> Session: ...


runtimes: Registry[type] = Registry("runtime")


def create_backend(name: str) -> Backend:
    from edgekd.runtimes import onnxruntime_backend, openvino_backend, tensorrt_backend  # noqa: F401  (register)

    return runtimes.get(name)()


SUFFIX_RUNTIME = {".onnx": "onnxruntime", ".ort": "onnxruntime", ".xml": "openvino", ".engine": "tensorrt",
                  ".plan": "tensorrt"}


def artifact_from_path(path: Path, runtime: str | None = None, precision: str = "fp32") -> Artifact:
    """An artifact for a model file edgekd did not build (check, bench); ONNX runs on any runtime."""
    if not path.is_file():
        raise InputError(f"MODEL '{path}': file not found")
    native = SUFFIX_RUNTIME.get(path.suffix.lower())
    if native is None:
        raise InputError(f"MODEL '{path}': unknown model format; give an .onnx, OpenVINO .xml, or TensorRT .engine")
    if runtime is not None and native != runtime and native != "onnxruntime":
        raise InputError(f"MODEL '{path}' is a {native} artifact but the target runs {runtime}")
    meta = path.with_suffix(path.suffix + ".json")
    if meta.is_file():  # written by edgekd's compile stage
        return Artifact.from_dict(json.loads(meta.read_text()) | {"path": str(path)})
    return Artifact(path, runtime or native, precision)


def evaluate_accuracy(session: Session, x: np.ndarray, y: np.ndarray, batch: int = 256) -> tuple[float, np.ndarray]:
    """Top-1 accuracy through a runtime session, and the logits it produced."""
    outs = [session.run(np.ascontiguousarray(x[i:i + batch])) for i in range(0, len(x), batch)]
    logits = np.concatenate(outs)
    return float((logits.argmax(1) == y).mean()), logits
