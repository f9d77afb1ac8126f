"""Runtime backends behind one interface, split as Polygraphy does into compile/load and run.

    backend = create_backend("openvino")
    artifact = backend.compile(onnx_path, out_dir, "int8", calibration, "x86_64")   # build once
    session = backend.load(artifact, threads=4)                                     # then run many times
    logits = session.run(x)

Backends import their SDK inside their methods (edgekd/optional.py), so `import edgekd.runtimes` is cheap
and a missing SDK is a clear error naming the extra to install. Each backend owns its runtime's facts
(edgekd/runtimes/base.py); `list_runtimes()` is the registry's list. A session whose runtime can time the device itself
(TensorRT, with CUDA events) also sets `last_compute_ms` after each run, beside the host latency the
caller measures around `run`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgekd.errors import InputError
from edgekd.runtimes import onnxruntime_backend, openvino_backend, tensorrt_backend  # noqa: F401  (register)
from edgekd.runtimes.base import (
    ONNX_FILE,
    Artifact,
    Backend,
    CompileOptions,
    Session,
    backend_classes,
    create_backend,
    linting_runtimes,
    list_runtimes,
    register_runtime,
    save_artifact,
    sidecar,
)
from edgekd.validate import check_model_file

__all__ = ["ONNX_FILE", "Artifact", "Backend", "CompileOptions", "Session", "artifact_from_path", "create_backend",
           "evaluate_accuracy", "linting_runtimes", "list_runtimes", "register_runtime", "runtime_for_suffix",
           "save_artifact", "sidecar"]


def runtime_for_suffix(suffix: str) -> str | None:
    """The runtime that loads files ending in `suffix` (a plain .onnx: ONNX Runtime), or None."""
    return next((b.name for b in backend_classes() if suffix.lower() in b.suffixes), None)


def artifact_from_path(path: Path, runtime: str | None = None, precision: str | None = None) -> Artifact:
    """An artifact for a model file (check, bench); a plain ONNX runs on any runtime."""
    if path.is_dir() or not path.is_file():
        check_model_file(path)  # says which: a directory, or no such file
    native = runtime_for_suffix(path.suffix)
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
