import numpy as np
import pytest

from edgekd.runtimes import artifact_from_path, create_backend, evaluate_accuracy, runtimes
from edgekd.runtimes.memprobe import measure_memory_mb

create_backend("onnxruntime")  # registers every backend
PRECISIONS = {"onnxruntime": ["fp32", "int8"], "openvino": ["fp32", "fp16", "int8"], "tensorrt": ["fp16"]}
CASES = [(r, p) for r in runtimes.names() for p in PRECISIONS[r]]


@pytest.mark.parametrize(("runtime", "precision"), CASES)
def test_compile_load_run_matches_onnx(runtime, precision, tiny_onnx, tmp_path):
    backend = create_backend(runtime)
    reason = backend.unavailable_reason()
    if reason:
        pytest.skip(reason)
    calib = np.random.default_rng(0).standard_normal((16, 1, 8, 8)).astype(np.float32)
    artifact = backend.compile(tiny_onnx, tmp_path, precision, calib, "x86_64")
    assert artifact.path.is_file() and artifact.precision == precision
    x = np.random.default_rng(1).standard_normal((5, 1, 8, 8)).astype(np.float32)
    got = backend.load(artifact, threads=1).run(x)
    ref = create_backend("onnxruntime").load(artifact_from_path(tiny_onnx), threads=1).run(x)
    tol = {"fp32": 1e-4, "fp16": 2e-2, "int8": 0.5}[precision] * max(1.0, float(np.abs(ref).max()))
    assert got.shape == (5, 10) and float(np.abs(got - ref).max()) < tol


def test_onnxruntime_has_no_fp16_and_says_so(tiny_onnx, tmp_path):
    from edgekd.errors import InputError

    with pytest.raises(InputError, match="no fp16 kernels"):
        create_backend("onnxruntime").compile(tiny_onnx, tmp_path, "fp16", None, "x86_64")


def test_tensorrt_reason_names_the_extra():
    reason = create_backend("tensorrt").unavailable_reason()
    if reason is None:
        pytest.skip("tensorrt imports here")
    assert "TensorRT is not installed" in reason


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_memory_probe_reports_what_the_model_adds(runtime, tiny_onnx):
    artifact = artifact_from_path(tiny_onnx, runtime)
    mb = measure_memory_mb(artifact, (1, 1, 8, 8), threads=1)
    assert 0 < mb < 200


def test_accuracy_is_computed_through_the_session(tiny_onnx):
    session = create_backend("onnxruntime").load(artifact_from_path(tiny_onnx), threads=1)
    x = np.random.default_rng(0).standard_normal((20, 1, 8, 8)).astype(np.float32)
    logits = session.run(x)
    acc, out = evaluate_accuracy(session, x, logits.argmax(1), batch=7)
    assert acc == 1.0 and out.shape == (20, 10)
