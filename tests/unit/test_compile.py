"""The compile stage's parts: the precision guard's rule, the TensorRT lint gate, `edgekd compile MODEL`."""


import onnx
import pytest
from onnx import TensorProto, helper

from edgekd.compile import lint_or_fail
from edgekd.errors import StageFailed
from edgekd.runtimes import create_backend
from edgekd.stages.compile import precision_guard


def _candidate(ms, interval, drop, source="measured"):
    return {"latency_ms": ms, "latency_interval": interval, "latency_source": source, "accuracy_drop": drop}


def test_guard_ships_int8_only_when_clearly_faster_and_within_budget():
    fp = _candidate(1.0, [0.95, 1.05], 0.5)
    assert precision_guard({"fp16": fp, "int8": _candidate(0.5, [0.48, 0.52], 1.0)}, 2.0)[0] == "int8"
    shipped, why = precision_guard({"fp16": fp, "int8": _candidate(0.97, [0.9, 1.0], 1.0)}, 2.0)
    assert shipped == "fp16" and "is not faster" in why and "(measured)" in why  # intervals overlap
    shipped, why = precision_guard({"fp16": fp, "int8": _candidate(0.5, [0.48, 0.52], 2.5)}, 2.0)
    assert shipped == "fp16" and "is over budget (accuracy drop 2.50 points (budget 2.0))" in why
    assert precision_guard({"fp32": fp, "int8": _candidate(0.5, [0.48, 0.52], 9.0)}, None)[0] == "int8"


def test_guard_compares_predictions_by_value():
    fp = _candidate(1.0, [0.5, 2.0], 0.0, "predicted")
    shipped, why = precision_guard({"fp32": fp, "int8": _candidate(0.6, [0.3, 1.2], 0.0, "predicted")}, 1.0)
    assert shipped == "int8" and "(predicted)" in why
    assert precision_guard({"fp32": fp}, 1.0) == ("fp32", "fp32: the target asks for fp32")


def test_lint_gate_fails_the_stage_with_the_findings(tiny_onnx, tmp_path):
    assert lint_or_fail(create_backend("tensorrt"), tiny_onnx, 1)["errors"] == 0
    bad = tmp_path / "bad.onnx"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("Unique", ["x"], ["y"], name="uniq")], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(bad))
    with pytest.raises(StageFailed, match=r"TensorRT lint: 1 finding\(s\) would fail on the device: uniq \(Unique\)"):
        lint_or_fail(create_backend("tensorrt"), bad, 1)


def test_parity_rule_fails_a_float_artifact_that_disagrees_but_not_int8():
    from edgekd.parity import Parity
    from edgekd.stages.compile import _check_parity

    drift = Parity(0.2, 0.9, 100)
    with pytest.raises(StageFailed, match=r"fp16 student artifact disagrees .*max \|diff\| 0.2 \(limit 0.02\)"):
        _check_parity(drift, "fp16", "openvino fp16 student")
    _check_parity(drift, "int8", "openvino int8 student")  # bounded by the accuracy budget instead
    _check_parity(Parity(1e-6, 1.0, 100), "fp32", "teacher")
