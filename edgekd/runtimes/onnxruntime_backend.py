"""ONNX Runtime: fp32 as exported, int8 by static QDQ quantization (per-channel weights) on the
calibration subset; for mobile builds both are converted to the ORT format that ONNX Runtime Mobile
loads. XNNPACK is used when the installed onnxruntime has it (Android/iOS/Arm builds)."""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from edgekd.errors import InputError
from edgekd.optional import require
from edgekd.runtimes.base import Artifact, Backend, CompileOptions, register_runtime

XNNPACK = "XnnpackExecutionProvider"


class OrtSession:
    def __init__(self, path: Path, threads: int, prefer_xnnpack: bool = False):
        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No spinning: edgekd times several sessions in one process (replicas, teacher and student in turn), and
        # an idle session's pool spinning for work holds a core the running one needs. On 2 cores, a 2 ms model
        # timed against a copy of itself read 0.86x..1.04x with spinning and 1.00x..1.01x without, and each ran
        # faster without (docs/architecture.md, "Timing").
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers: list = ["CPUExecutionProvider"]
        if prefer_xnnpack and XNNPACK in ort.get_available_providers():
            # XNNPACK runs its own thread pool (ORT's XNNPACK guidance: ORT's own pool then gets one thread).
            providers.insert(0, (XNNPACK, {"intra_op_num_threads": str(threads)}))
            opts.intra_op_num_threads = 1
        else:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.sample_shape = tuple(self.session.get_inputs()[0].shape[1:])  # one sample: no batch dimension
        self.settings = {"providers": self.session.get_providers(), "threads": threads, "graph_optimization": "all",
                         "spinning": False,
                         "format": "ort" if path.suffix == ".ort" else "onnx"}

    def run(self, x: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        """One input array (image models), or a feed per input name (text models: input_ids, attention_mask)."""
        return self.session.run(None, x if isinstance(x, dict) else {self.input_name: x})[0]


class _Calibration:
    """onnxruntime.quantization CalibrationDataReader over an array of inputs, one sample per call."""

    def __init__(self, name: str, x: np.ndarray):
        self.items = iter([{name: x[i:i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self.items, None)


def quantize_qdq(onnx_path: Path, out: Path, calibration: np.ndarray | None, activation: str,
                 symmetric: bool = False) -> dict:
    """Static INT8 QDQ with per-channel weights; returns the settings used. activation: 'QInt8' or 'QUInt8'.
    `symmetric` is the form TensorRT's explicit quantization takes: zero points 0, and biases left in float
    (its parser has no INT32 DequantizeLinear; it folds the float bias into the INT8 kernel itself)."""
    if calibration is None or len(calibration) == 0:
        raise InputError("int8 needs calibration data (the --data calibration subset)")
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "preprocessed.onnx"
        quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
        input_name = onnx.load(str(pre), load_external_data=False).graph.input[0].name
        extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False} if symmetric else {}
        quantize_static(str(pre), str(out), _Calibration(input_name, calibration), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType[activation], weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, extra_options=extra)
    return {"format": "onnx-qdq", "per_channel": True, "activations": activation, "weights": "QInt8",
            "symmetric": symmetric, "calibration_samples": len(calibration), "calibration": "minmax"}


def quantize_dynamic_int8(onnx_path: Path, out: Path) -> dict:
    """INT8 weights and per-call dynamic INT8 activations for the MatMuls: ONNX Runtime's recommended INT8 for
    transformer encoders on CPU (their activation ranges vary too much per input for static calibration;
    onnxruntime's quantization guide)."""
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "preprocessed.onnx"
        quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
        quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gemm"])
    return {"format": "onnx", "quantization": "onnxruntime quantize_dynamic", "weights": "QInt8 per channel",
            "activations": "dynamic (per call)", "ops": ["MatMul", "Gemm"]}


def to_ort_format(onnx_path: Path, out: Path, arch: str) -> None:
    """ONNX -> ORT format (what ONNX Runtime Mobile loads), graph optimizations fixed for the target's
    CPU family (the NCHWc layout transforms are x86-only, so an Arm target must not bake them in)."""
    # onnxruntime.tools imports torch (its export helpers); this package imports none at the top (docs/architecture.md)
    tool = require("onnxruntime.tools.convert_onnx_models_to_ort", "converting to the ORT format")
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)
        src = Path(tmp) / out.with_suffix(".onnx").name
        shutil.copyfile(onnx_path, src)
        tool.convert_onnx_models_to_ort(src, Path(tmp) / "ort", [tool.OptimizationStyle.Fixed],
                                        target_platform="arm" if arch == "aarch64" else "amd64")
        shutil.move(Path(tmp) / "ort" / src.with_suffix(".ort").name, out)


@register_runtime
class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    label = "ONNX Runtime"
    float_precision = "fp32"  # the CPU provider has no fp16 kernels
    compressed_teacher = "int8"
    suffixes = (".onnx", ".ort")
    sdk = ("onnxruntime",)

    def options_for(self, arch: str, batch: int) -> CompileOptions:
        # ORT format on Arm CPUs (phones, Raspberry Pi): what ONNX Runtime Mobile loads.
        return CompileOptions(mobile=arch == "aarch64", batch=batch, max_batch=max(64, batch))

    def compile(self, onnx_path: Path, out_dir: Path, precision: str, calibration: np.ndarray | None,
                arch: str, options: CompileOptions | None = None) -> Artifact:
        options = options or CompileOptions()
        if precision not in ("fp32", "int8"):
            raise InputError(f"precision '{precision}': ONNX Runtime's CPU provider has no fp16 kernels; "
                             "use fp32 or int8 for an onnxruntime target")
        out_dir.mkdir(parents=True, exist_ok=True)
        onnx_out = out_dir / f"{onnx_path.stem}-{precision}.onnx"
        if precision == "fp32":
            shutil.copyfile(onnx_path, onnx_out)
            settings: dict = {"format": "onnx"}
        elif options.transformer:
            settings = quantize_dynamic_int8(onnx_path, onnx_out)
        else:
            # Arm's integer dot products take signed activations (S8S8); x86 VNNI/AVX2 kernels prefer U8S8.
            settings = quantize_qdq(onnx_path, onnx_out, calibration, "QInt8" if arch == "aarch64" else "QUInt8")
        settings["target_arch"] = arch
        if not options.mobile:
            return Artifact(onnx_out, self.name, precision, settings)
        out = onnx_out.with_suffix(".ort")
        to_ort_format(onnx_out, out, arch)
        onnx_out.unlink()
        settings.update({"format": "ort", "from": settings["format"], "prefer_xnnpack": True})
        return Artifact(out, self.name, precision, settings)

    def load(self, artifact: Artifact, threads: int) -> OrtSession:
        return OrtSession(artifact.path, threads, prefer_xnnpack=bool(artifact.settings.get("prefer_xnnpack")))
