"""The compile stage's parts: the precision guard's rule, the TensorRT lint gate, `edgekd compile MODEL`."""

import json

import numpy as np
import onnx
import pytest
from conftest import cli
from onnx import TensorProto, helper

from edgekd.errors import StageFailed
from edgekd.runtimes import create_backend
from edgekd.stages.compile import lint_or_fail, precision_guard


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


def test_compile_model_command(tiny_onnx, tmp_path):
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((16, 1, 8, 8)).astype(np.float32))
    result = cli("compile", tiny_onnx, "--runtime", "onnxruntime", "--precision", "int8", "--calibration", calib,
                 "--out", tmp_path / "o", "--json")
    assert result.exit_code == 0, result.stderr
    built = json.loads(result.stdout)
    assert built["precision"] == "int8" and built["settings"]["calibration_samples"] == 16
    assert (tmp_path / "o" / "tiny-int8.onnx.json").is_file()
    no_calib = cli("compile", tiny_onnx, "--runtime", "openvino", "--precision", "int8", "--out", tmp_path / "p")
    assert no_calib.exit_code == 2 and "calibration" in no_calib.stderr
    assert "give --runtime and --out" in cli("compile", tiny_onnx, "--out", tmp_path).stderr
    bad_calib = cli("compile", tiny_onnx, "--runtime", "onnxruntime", "--precision", "int8", "--calibration",
                    tiny_onnx, "--out", tmp_path / "q")
    assert bad_calib.exit_code == 2 and "--calibration" in bad_calib.stderr


def test_bench_command_here(tiny_onnx, tmp_path):
    x = np.random.default_rng(0).standard_normal((12, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", x=x, y=np.arange(12) % 10)
    result = cli("bench", tiny_onnx, "--runtime", "openvino", "--threads", "1", "--eval", tmp_path / "eval.npz",
                 "--logits", tmp_path / "logits.npy", "--json")
    assert result.exit_code == 0, result.stderr
    res = json.loads(result.stdout)
    assert res["input_shape"] == [1, 1, 8, 8] and res["eval_samples"] == 12 and 0 <= res["accuracy"] <= 1
    assert np.load(tmp_path / "logits.npy").shape == (12, 10) and res["memory_mb"] > 0
    bad = cli("bench", tiny_onnx, "--eval", tiny_onnx)
    assert bad.exit_code == 2 and "--eval" in bad.stderr


def test_parity_rule_fails_a_float_artifact_that_disagrees_but_not_int8():
    from edgekd.parity import Parity
    from edgekd.stages.compile import _check_parity

    drift = Parity(0.2, 0.9, 100)
    with pytest.raises(StageFailed, match=r"fp16 student artifact disagrees .*max \|diff\| 0.2 \(limit 0.02\)"):
        _check_parity(drift, "fp16", "openvino fp16 student")
    _check_parity(drift, "int8", "openvino int8 student")  # bounded by the accuracy budget instead
    _check_parity(Parity(1e-6, 1.0, 100), "fp32", "teacher")
