"""ONNX Runtime: fp32 as exported, int8 by static QDQ quantization on the calibration subset."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgekd.errors import InputError
from edgekd.runtimes import Artifact, runtimes


class OrtSession:
    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.settings = {"providers": providers, "intra_op_threads": threads, "graph_optimization": "all"}

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]


class _Calibration:
    """onnxruntime.quantization CalibrationDataReader over an array of inputs, one sample per call."""

    def __init__(self, name: str, x: np.ndarray):
        self.items = iter([{name: x[i:i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self.items, None)


@runtimes.register("onnxruntime")
class OnnxRuntimeBackend:
    name = "onnxruntime"

    def unavailable_reason(self) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime is not installed"
        return None

    def versions(self) -> dict[str, str]:
        import onnxruntime

        return {"onnxruntime": onnxruntime.__version__}

    def compile(self, onnx_path: Path, out_dir: Path, precision: str, calibration: np.ndarray | None,
                arch: str) -> Artifact:
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / f"{onnx_path.stem}.onnx"
        if precision == "fp32":
            shutil.copyfile(onnx_path, out)
            return Artifact(out, self.name, precision, {"format": "onnx"})
        if precision == "int8":
            return self._quantize(onnx_path, out, calibration, arch)
        raise InputError(f"precision '{precision}': ONNX Runtime's CPU provider has no fp16 kernels; "
                         "use fp32 or int8 for an onnxruntime target")

    def _quantize(self, onnx_path: Path, out: Path, calibration: np.ndarray | None, arch: str) -> Artifact:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        if calibration is None or len(calibration) == 0:
            raise InputError("int8 needs calibration data (the --data calibration subset)")
        pre = out.with_name(out.stem + "-preprocessed.onnx")
        quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
        # x86 integer kernels prefer unsigned activations (U8S8); Arm's dot products take S8S8.
        activation = QuantType.QInt8 if arch == "aarch64" else QuantType.QUInt8
        input_name = onnx.load(str(pre), load_external_data=False).graph.input[0].name
        quantize_static(str(pre), str(out), _Calibration(input_name, calibration), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=activation, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        pre.unlink()
        settings = {"format": "onnx-qdq", "per_channel": True, "activations": activation.name,
                    "weights": "QInt8", "calibration_samples": len(calibration), "calibration": "minmax"}
        return Artifact(out, self.name, "int8", settings)

    def load(self, artifact: Artifact, threads: int) -> OrtSession:
        return OrtSession(artifact.path, threads)
