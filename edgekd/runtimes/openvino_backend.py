"""OpenVINO: IR with fp16 (or fp32) weights; int8 by NNCF post-training quantization."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.errors import MissingDependency
from edgekd.runtimes import Artifact, runtimes


class OpenVinoSession:
    def __init__(self, path: Path, threads: int):
        import openvino as ov

        # Pin f32 execution: on AMX/AVX512-BF16 hosts OpenVINO would otherwise run in bf16 and change
        # results silently; the LATENCY hint is what a single-stream edge deployment uses.
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
        compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.settings = {"device": "CPU", **config}
        self.request = compiled.create_infer_request()

    def run(self, x: np.ndarray) -> np.ndarray:
        self.request.infer({0: x})
        return self.request.get_output_tensor(0).data.copy()


@runtimes.register("openvino")
class OpenVinoBackend:
    name = "openvino"

    def unavailable_reason(self) -> str | None:
        try:
            import openvino  # noqa: F401
        except ImportError:
            return "openvino is not installed"
        return None

    def versions(self) -> dict[str, str]:
        import openvino

        return {"openvino": openvino.__version__}

    def compile(self, onnx_path: Path, out_dir: Path, precision: str, calibration: np.ndarray | None,
                arch: str) -> Artifact:
        import openvino as ov

        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / f"{onnx_path.stem}.xml"
        model = ov.convert_model(str(onnx_path))
        settings = {"format": "openvino-ir"}
        if precision == "int8":
            model = self._quantize(model, calibration)
            settings.update({"quantization": "nncf.quantize", "calibration_samples": len(calibration)})
        ov.save_model(model, str(out), compress_to_fp16=precision == "fp16")
        settings["weights"] = {"fp16": "fp16", "fp32": "fp32", "int8": "int8 (nncf)"}[precision]
        return Artifact(out, self.name, precision, settings)

    @staticmethod
    def _quantize(model, calibration: np.ndarray):
        try:
            import nncf
        except ImportError:
            raise MissingDependency("nncf", "nncf", "int8 on OpenVINO") from None
        data = nncf.Dataset([calibration[i:i + 1] for i in range(len(calibration))])
        return nncf.quantize(model, data, subset_size=len(calibration))

    def load(self, artifact: Artifact, threads: int) -> OpenVinoSession:
        return OpenVinoSession(artifact.path, threads)
