"""OpenVINO: IR with fp16 (or fp32) weights; int8 by NNCF post-training quantization on the calibration
subset, accuracy-controlled (nncf.quantize_with_accuracy_control) when a tune set and a drop bound are given."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgekd.errors import InputError
from edgekd.optional import require
from edgekd.runtimes.base import RUNTIME_DEFAULT, Artifact, Backend, CompileOptions, register_runtime


class OpenVinoSession:
    def __init__(self, path: Path, threads: int, pin_f32: bool = True):
        ov = require("openvino", "running an OpenVINO model")

        # Pin f32 execution: on AMX/AVX512-BF16 hosts OpenVINO would otherwise run in bf16 and change
        # results silently; the LATENCY hint is what a single-stream edge deployment uses. The teacher a speed-up
        # is measured against runs unpinned (pin_f32=False): as the user's deployment of it would run, in bf16
        # where the CPU has it; the precision it ran at is read back below.
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        if pin_f32:
            config["INFERENCE_PRECISION_HINT"] = "f32"
        compiled = ov.Core().compile_model(str(path), "CPU", config)
        # What the plugin actually applied, read back, so the report shows the execution as it ran.
        applied = {k: _plain(compiled.get_property(k))
                   for k in (*config, "INFERENCE_PRECISION_HINT", "EXECUTION_MODE_HINT")}
        self.settings = {"device": "CPU", **applied}
        shape = compiled.input(0).get_partial_shape()
        self.sample_shape = tuple(d.get_length() if d.is_static else None for d in list(shape)[1:])
        self.request = compiled.create_infer_request()
        self.ov = ov

    def run(self, x: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        if isinstance(x, dict):  # text models: a feed per input name (input_ids, attention_mask)
            self.request.infer(x)
            return self.request.get_output_tensor(0).data.copy()
        # The input wrapped without a copy and set directly: the dict form of infer() costs ~5-10 us more a
        # call, which is a tenth of a small student's whole latency.
        x = np.ascontiguousarray(x, np.float32)  # kept alive by this frame while OpenVINO reads it
        self.request.set_input_tensor(self.ov.Tensor(x, shared_memory=True))
        self.request.infer()
        return self.request.get_output_tensor(0).data.copy()


def _plain(value) -> str:
    """OpenVINO property values (Type, enums) as the short strings the report shows: f32, LATENCY."""
    if hasattr(value, "to_string"):
        return value.to_string()
    return getattr(value, "name", None) or str(value)


def _accuracy(compiled, items) -> tuple[float, None]:
    """NNCF validation_fn: top-1 accuracy of an OpenVINO compiled model over (x, y) batches."""
    correct = total = 0
    for x, y in items:
        logits = compiled(x)[0]
        correct += int((logits.argmax(1) == y).sum())
        total += len(y)
    return correct / max(1, total), None


@register_runtime
class OpenVinoBackend(Backend):
    name = "openvino"
    label = "OpenVINO"
    float_precision = "fp16"  # fp16 weights; execution stays f32 on CPUs
    compressed_teacher = "int8"
    suffixes = (".xml",)
    sdk = ("openvino", "nncf")
    tunes_int8 = True  # nncf.quantize_with_accuracy_control

    def compile(self, onnx_path: Path, out_dir: Path, precision: str, calibration: np.ndarray | None,
                arch: str, options: CompileOptions | None = None) -> Artifact:
        ov = require("openvino", "compiling for OpenVINO")
        if precision not in ("fp32", "fp16", "int8"):
            raise InputError(f"precision '{precision}': OpenVINO takes fp32, fp16 or int8")
        options = options or CompileOptions()
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / f"{onnx_path.stem}-{precision}.xml"
        model = ov.convert_model(str(onnx_path))
        settings: dict = {"format": "openvino-ir"}
        if precision == "int8":
            model, quant = self._quantize(model, calibration, options)
            settings.update(quant)
        # Non-quantized weights of an int8 IR stay fp32: NNCF leaves them for the layers it kept in float.
        ov.save_model(model, str(out), compress_to_fp16=precision == "fp16")
        settings["weights"] = {"fp16": "fp16", "fp32": "fp32", "int8": "int8 (nncf), rest fp32"}[precision]
        return Artifact(out, self.name, precision, settings)

    @staticmethod
    def _quantize(model, calibration: np.ndarray | None, options: CompileOptions):
        nncf = require("nncf", "int8 on OpenVINO")
        nncf.set_log_level(logging.WARNING)  # its progress bars stay; per-step INFO lines would drown the stage's
        if options.transformer:
            # NNCF's transformer preset keeps softmax, layer norm and the attention's scaling in float and
            # quantizes the MatMuls (SmoothQuant where it helps): what optimum-intel's OVQuantizer runs too.
            if not options.calibration_feeds:
                raise InputError("int8 needs calibration data (the --data calibration subset)")
            feeds = list(options.calibration_feeds)
            quantized = nncf.quantize(model, nncf.Dataset(feeds), subset_size=len(feeds),
                                      model_type=nncf.ModelType.TRANSFORMER)
            return quantized, {"calibration_samples": len(feeds), "quantization": "nncf.quantize",
                               "model_type": "transformer"}
        if calibration is None or len(calibration) == 0:
            raise InputError("int8 needs calibration data (the --data calibration subset)")
        calib = nncf.Dataset([calibration[i:i + 1] for i in range(len(calibration))])
        settings = {"calibration_samples": len(calibration), "preset": "performance (symmetric)"}
        if options.tune is None or options.max_accuracy_drop is None:
            quantized = nncf.quantize(model, calib, subset_size=len(calibration))
            return quantized, settings | {"quantization": "nncf.quantize"}
        x, y = options.tune
        batches = [(x[i:i + 64], y[i:i + 64]) for i in range(0, len(x), 64)]
        # The bound is absolute, in accuracy (0..1) against the float model on the tune set; NNCF reverts the
        # layers that cost most to float until it is met (or none is left to revert).
        max_drop = max(0.0, options.max_accuracy_drop) / 100
        quantized = nncf.quantize_with_accuracy_control(
            model, calib, nncf.Dataset(batches, lambda item: item[0]), validation_fn=_accuracy, max_drop=max_drop,
            drop_type=nncf.DropType.ABSOLUTE, subset_size=len(calibration))
        return quantized, settings | {"quantization": "nncf.quantize_with_accuracy_control",
                                      "max_drop_points": options.max_accuracy_drop, "tune_samples": len(x)}

    def load(self, artifact: Artifact, threads: int) -> OpenVinoSession:
        return OpenVinoSession(artifact.path, threads, pin_f32=artifact.settings.get("execution") != RUNTIME_DEFAULT)
