import numpy as np
import pytest

from edgekd.runtimes import artifact_from_path, create_backend, evaluate_accuracy, list_runtimes
from edgekd.runtimes.memprobe import measure_memory_mb

create_backend("onnxruntime")  # registers every backend
PRECISIONS = {"onnxruntime": ["fp32", "int8"], "openvino": ["fp32", "fp16", "int8"], "tensorrt": ["fp16"]}
CASES = [(r, p) for r in list_runtimes() for p in PRECISIONS[r]]


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


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_mobile_build_is_ort_format_and_runs(precision, tiny_onnx, tmp_path):
    import onnxruntime as ort

    from edgekd.runtimes import CompileOptions

    calib = np.random.default_rng(0).standard_normal((16, 1, 8, 8)).astype(np.float32)
    artifact = create_backend("onnxruntime").compile(tiny_onnx, tmp_path, precision, calib, "aarch64",
                                                     CompileOptions(mobile=True))
    assert artifact.path.suffix == ".ort" and artifact.path.read_bytes()[4:8] == b"ORTM"  # flatbuffer identifier
    assert artifact.settings["format"] == "ort" and artifact.settings.get("activations", "QInt8") == "QInt8"
    session = create_backend("onnxruntime").load(artifact, threads=2)
    xnnpack = "XnnpackExecutionProvider" in ort.get_available_providers()
    assert ("XnnpackExecutionProvider" in session.settings["providers"]) == xnnpack
    x = np.random.default_rng(1).standard_normal((4, 1, 8, 8)).astype(np.float32)
    ref = create_backend("onnxruntime").load(artifact_from_path(tiny_onnx), threads=1).run(x)
    assert (session.run(x).argmax(1) == ref.argmax(1)).mean() >= (1.0 if precision == "fp32" else 0.5)


def test_openvino_session_pins_precision_and_latency_hint(tiny_onnx):
    settings = create_backend("openvino").load(artifact_from_path(tiny_onnx, "openvino"), threads=1).settings
    assert settings["INFERENCE_PRECISION_HINT"] == "f32" and settings["PERFORMANCE_HINT"] == "LATENCY"
    assert settings["INFERENCE_NUM_THREADS"] == "1"


def test_openvino_int8_with_accuracy_control(tiny_onnx, tmp_path):
    from edgekd.runtimes import CompileOptions

    rng = np.random.default_rng(0)
    calib = rng.standard_normal((32, 1, 8, 8)).astype(np.float32)
    xt = rng.standard_normal((128, 1, 8, 8)).astype(np.float32)
    ref = create_backend("onnxruntime").load(artifact_from_path(tiny_onnx), threads=1)
    yt = ref.run(xt).argmax(1)  # labels the float model gets all right
    backend = create_backend("openvino")
    artifact = backend.compile(tiny_onnx, tmp_path, "int8", calib, "x86_64",
                               CompileOptions(tune=(xt, yt), max_accuracy_drop=5.0))
    assert artifact.settings["quantization"] == "nncf.quantize_with_accuracy_control"
    assert artifact.settings["max_drop_points"] == 5.0 and artifact.settings["tune_samples"] == 128
    acc, _ = evaluate_accuracy(backend.load(artifact, 1), xt, yt)
    assert acc >= 0.95 - 1 / len(yt)  # within the 5-point bound on the tune set (one sample of slack)


def test_artifact_record_round_trips_and_a_broken_one_is_bad_input(tiny_onnx, tmp_path):
    from edgekd.errors import InputError
    from edgekd.runtimes import save_artifact

    artifact = create_backend("openvino").compile(tiny_onnx, tmp_path, "fp16", None, "x86_64")
    save_artifact(artifact)
    assert artifact_from_path(artifact.path).settings["weights"] == "fp16"
    assert {p.suffix for p in artifact.files} == {".xml", ".bin", ".json"}
    artifact.path.with_suffix(".xml.json").write_text("{not json")
    with pytest.raises(InputError, match="not an edgekd build record"):
        artifact_from_path(artifact.path)
    with pytest.raises(InputError, match="is a openvino artifact but --runtime is onnxruntime"):
        artifact_from_path(artifact.path, "onnxruntime")
