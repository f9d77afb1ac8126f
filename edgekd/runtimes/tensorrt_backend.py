"""TensorRT (Jetson targets): available only where the tensorrt package and a CUDA GPU are."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.errors import MissingDependency
from edgekd.runtimes import Artifact, runtimes


@runtimes.register("tensorrt")
class TensorRTBackend:
    name = "tensorrt"

    def unavailable_reason(self) -> str | None:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return ("TensorRT is not installed on this host; engines are built on the device "
                    "(pip install 'edgekd[tensorrt]' there, or use --remote)")
        return None

    def versions(self) -> dict[str, str]:
        try:
            import tensorrt
        except ImportError:
            return {}
        return {"tensorrt": tensorrt.__version__}

    def compile(self, onnx_path: Path, out_dir: Path, precision: str, calibration: np.ndarray | None,
                arch: str) -> Artifact:
        raise MissingDependency("tensorrt", "edgekd[tensorrt]", "building a TensorRT engine")

    def load(self, artifact: Artifact, threads: int):
        raise MissingDependency("tensorrt", "edgekd[tensorrt]", "running a TensorRT engine")
