"""One ONNX model -> one artifact for a runtime, with its build record beside it (`edgekd compile MODEL`, and
what the remote runner runs on a device to build a TensorRT engine there). The build's compile stage, which
also verifies and chooses precision, is edgekd/stages/compile.py."""

from __future__ import annotations

import platform
from pathlib import Path

from edgekd.errors import InputError, StageFailed
from edgekd.rundir import make_dir
from edgekd.runtimes import Artifact, Backend, CompileOptions, create_backend, save_artifact
from edgekd.validate import check_input_shape, check_model_file, load_input_arrays


def compile_model(onnx_path: Path, out_dir: Path, runtime: str, precision: str | None = None,
                  calibration: Path | None = None, batch: int = 1, mobile: bool = False,
                  sequence: int | None = None) -> Artifact:
    """One ONNX -> one artifact for `runtime`, with its build record beside it. `sequence`: a text model's
    tokens per input (its INT8 is each runtime's transformer INT8)."""
    check_model_file(onnx_path)  # a damaged ONNX must not ship as an artifact
    if onnx_path.suffix != ".onnx":
        raise InputError(f"MODEL '{onnx_path}': need an .onnx file")
    make_dir(out_dir)
    backend = create_backend(runtime)
    reason = backend.unavailable_reason()
    if reason:
        raise InputError(f"--runtime {runtime}: {reason}")
    precision = precision or backend.float_precision
    calib = None
    if calibration is not None:
        calib, _ = load_input_arrays(calibration, "--calibration")
        # the model's input as `edgekd check` reads it
        # edgekd.gate loads torch; compile runs on devices without it (tests/unit/test_layers.py)
        from edgekd.gate.inputs import inspect_model  # noqa: PLC0415

        check_input_shape(calib, inspect_model(onnx_path).dims[1:], f"--calibration '{calibration}'", onnx_path)
    arch = platform.machine() if platform.machine() in ("x86_64", "aarch64") else "x86_64"
    artifact = backend.compile(onnx_path, out_dir, precision, calib, arch,
                               CompileOptions(mobile=mobile, batch=batch, max_batch=max(64, batch),
                                              sequence=sequence, transformer=sequence is not None))
    save_artifact(artifact)
    return artifact

def lint_or_fail(backend: Backend, onnx_path: Path, batch: int, sequence: int | None = None) -> dict:
    findings = backend.lint(onnx_path, batch, max(64, batch), sequence)
    errors = [f for f in findings if f.severity == "error"]
    record = {"errors": len(errors), "warnings": len(findings) - len(errors),
              "findings": [f.to_dict() for f in findings]}
    if errors:
        shown = "; ".join(f"{f.node} ({f.op}): {f.why}" for f in errors[:5])
        more = f" (and {len(errors) - 5} more; run edgekd lint {onnx_path})" if len(errors) > 5 else ""
        raise StageFailed(f"{backend.label} lint: {len(errors)} finding(s) would fail on the device: {shown}{more}")
    return record
