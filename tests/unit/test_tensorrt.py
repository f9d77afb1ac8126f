"""TensorRT: the lint (runs everywhere, on real ONNX graphs), the fingerprint rule, and the engine build
path (skipped with a reason where tensorrt does not import or no CUDA GPU is visible)."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekd.errors import InputError
from edgekd.runtimes import artifact_from_path, create_backend
from edgekd.runtimes.onnxruntime_backend import quantize_qdq
from edgekd.runtimes.tensorrt_backend import check_fingerprint
from edgekd.runtimes.tensorrt_lint import lint_tensorrt, operator_table


def _model(nodes, inputs, outputs, inits=(), opset=18):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, dims, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, dims)


def _errors(model, **kw):
    return [f for f in lint_tensorrt(model, **kw) if f.severity == "error"]


def test_exported_student_is_clean(tiny_onnx):
    assert _errors(onnx.load(str(tiny_onnx))) == []


def test_operator_table_is_the_published_list():
    table = operator_table()
    assert table["opset"] == [9, 20] and len(table["ops"]) > 150
    assert table["ops"]["Conv"]["types"][:2] == ["FP32", "FP16"]
    assert table["ops"]["NonZero"]["types"] == ["FP32", "FP16"]
    assert table["ops"]["ConvInteger"] is None and "antialias" in table["ops"]["Resize"]["restrictions"].lower()


def test_unsupported_custom_and_unknown_ops_are_errors():
    x = _vi("x", ["batch", 4])
    model = _model([helper.make_node("ConvInteger", ["x", "w"], ["a"], name="ci"),
                    helper.make_node("FusedThing", ["a"], ["b"], name="fz", domain="com.example"),
                    helper.make_node("NoSuchOp", ["b"], ["y"], name="nx")],
                   [x, _vi("w", [4, 4])], [_vi("y", ["batch", 4])])
    found = {(f.node, f.op): f.why for f in _errors(model)}
    assert "listed as unsupported" in found[("ci", "ConvInteger")]
    assert "plugin" in found[("fz", "com.example.FusedThing")]
    assert "is not in" in found[("nx", "NoSuchOp")]


def test_data_type_outside_the_list_is_an_error_and_double_a_warning():
    model = _model([helper.make_node("Sin", ["x"], ["y"], name="s")], [_vi("x", ["batch", 3], TensorProto.INT32)],
                   [_vi("y", ["batch", 3], TensorProto.INT32)])
    (err,) = _errors(model)
    assert err.node == "s" and "INT32" in err.why and "FP32" in err.why
    double = _model([helper.make_node("Relu", ["x"], ["y"], name="r")], [_vi("x", ["batch", 3], TensorProto.DOUBLE)],
                    [_vi("y", ["batch", 3], TensorProto.DOUBLE)])
    assert _errors(double) == [] and any("DOUBLE" in f.why for f in lint_tensorrt(double))


def test_dynamic_shapes_against_the_batch_profile():
    relu = [helper.make_node("Relu", ["x"], ["y"], name="r")]
    spatial = _model(relu, [_vi("x", ["batch", 3, "h", 8])], [_vi("y", ["batch", 3, "h", 8])])
    (err,) = _errors(spatial)
    assert err.node == "x" and "dimension 2 is dynamic" in err.why and "fixed input size" in err.why
    fixed = _model(relu, [_vi("x", [1, 3, 8, 8])], [_vi("y", [1, 3, 8, 8])])
    assert _errors(fixed, batch=1) == []
    assert "fixed to 1" in _errors(fixed, batch=4)[0].why


def test_restrictions_column_is_checked():
    x = _vi("x", ["batch", 3, 8, 8])
    resize = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="rs", mode="cubic", antialias=1)
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    pool = helper.make_node("MaxPool", ["y"], ["p", "idx"], name="mp", kernel_shape=[2, 2], dilations=[2, 2])
    axes = helper.make_node("Shape", ["p"], ["shape"], name="sh")
    reduce = helper.make_node("ReduceMean", ["p", "shape"], ["r"], name="rm")
    model = _model([resize, pool, axes, reduce], [x], [_vi("r", None), _vi("idx", None, TensorProto.INT64)], [scales])
    why = {(f.node, f.why.split(" ")[0]) for f in _errors(model)}
    assert ("rs", "mode='cubic'") in why and ("rs", "antialiasing") in why
    assert ("mp", "dilations") in why and ("mp", "the") in why  # "the Indices output is not supported"
    assert ("rm", "input") in why  # axes computed at run time


def test_opset_outside_the_parser_range():
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", ["batch", 3])], [_vi("y", ["batch", 3])],
                   opset=22)
    assert any(f.op == "opset" and "9..20" in f.why for f in _errors(model))


def test_int64_beyond_int32_is_a_warning_not_an_error():
    big = numpy_helper.from_array(np.array([0, 2**40], np.int64), "starts")
    model = _model([helper.make_node("Add", ["x", "starts"], ["y"], name="add")],
                   [_vi("x", ["batch", 2], TensorProto.INT64)], [_vi("y", ["batch", 2], TensorProto.INT64)], [big])
    findings = lint_tensorrt(model)
    assert not _errors(model)
    assert {f.node for f in findings if "INT32 range" in f.why} == {"starts"}
    assert any(f.op == "output" and "INT64" in f.why for f in findings)


def test_qdq_must_be_symmetric(tiny_onnx, tmp_path):
    calib = np.random.default_rng(0).standard_normal((16, 1, 8, 8)).astype(np.float32)
    asym, sym = tmp_path / "asym.onnx", tmp_path / "sym.onnx"
    quantize_qdq(tiny_onnx, asym, calib, "QUInt8")
    quantize_qdq(tiny_onnx, sym, calib, "QInt8", symmetric=True)
    reasons = " ".join(f.why for f in _errors(onnx.load(str(asym))))
    assert "zero point must be 0" in reasons and "UINT8" in reasons and "INT32" in reasons  # int32 bias DQ
    assert _errors(onnx.load(str(sym))) == []


def test_foreign_engine_fingerprint_is_refused(tmp_path):
    here = {"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7", "l4t": "36.4.0"}
    check_fingerprint(dict(here), here, tmp_path / "a.engine")
    with pytest.raises(InputError, match=r"built for another device \(tensorrt '10.0.1' != '10.3.0'.*rebuild it"):
        check_fingerprint(here | {"tensorrt": "10.0.1"}, here, tmp_path / "a.engine")
    with pytest.raises(InputError, match="compute_capability '8.6' != '8.7'"):
        check_fingerprint(here | {"compute_capability": "8.6"}, here, tmp_path / "a.engine")


# ----------------------------------------------------------------------------- the build path (needs TensorRT)
def _tensorrt_or_skip():
    reason = create_backend("tensorrt").unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_engine_builds_runs_and_times_the_gpu(precision, tiny_onnx, tmp_path):
    _tensorrt_or_skip()
    from edgekd.compile import compile_model
    from edgekd.runtimes.bench import latency_figures

    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((32, 1, 8, 8)).astype(np.float32))
    artifact = compile_model(tiny_onnx, tmp_path, "tensorrt", precision, calib, batch=2)
    assert artifact.path.suffix == ".engine" and artifact.settings["fingerprint"]["compute_capability"]
    (profile,) = artifact.settings["optimization_profile"].values()  # the one input's
    assert profile["min_opt_max"][1][0] == 2
    assert (tmp_path / "timing.cache").stat().st_size > 0
    loaded = artifact_from_path(artifact.path)  # through the build record
    session = create_backend("tensorrt").load(loaded, threads=1)
    x = np.random.default_rng(1).standard_normal((100, 1, 8, 8)).astype(np.float32)  # > max batch: chunked
    ref = create_backend("onnxruntime").load(artifact_from_path(tiny_onnx), 1).run(x)
    got = session.run(x)
    assert got.shape == ref.shape and (got.argmax(1) == ref.argmax(1)).mean() > 0.9
    figures = latency_figures(session, x[:2])
    assert 0 < figures["compute_ms"] <= figures["latency_ms"]


@pytest.mark.gpu
def test_engine_with_a_foreign_fingerprint_is_refused_on_load(tiny_onnx, tmp_path):
    _tensorrt_or_skip()
    from edgekd.compile import compile_model

    artifact = compile_model(tiny_onnx, tmp_path, "tensorrt", "fp16")
    record = artifact.path.with_suffix(".engine.json")
    data = json.loads(record.read_text())
    data["settings"]["fingerprint"]["compute_capability"] = "5.3"  # a Jetson Nano's
    record.write_text(json.dumps(data))
    with pytest.raises(InputError, match="built for another device"):
        create_backend("tensorrt").load(artifact_from_path(artifact.path), threads=1)


def test_trtexec_command_builds_or_loads_with_shapes_and_times():
    from edgekd.remote import trtexec_command

    build = trtexec_command("student-qdq.onnx", "int8", batch=4, input_name="input", sample_shape=(1, 8, 8))
    assert build[:2] == ["trtexec", "--onnx=student-qdq.onnx"] and {"--fp16", "--int8"} <= set(build)
    assert "--minShapes=input:1x1x8x8" in build and "--optShapes=input:4x1x8x8" in build
    assert "--exportTimes=times.json" in build
    load = trtexec_command("student-fp16.engine", "fp16")
    assert load[1] == "--loadEngine=student-fp16.engine" and "--fp16" not in load
