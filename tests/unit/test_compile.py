"""The compile stage's parts: the precision guard's rule, the TensorRT lint gate, `edgekd compile MODEL`."""


import onnx
import pytest
from onnx import TensorProto, helper

from edgekd.compile import lint_or_fail
from edgekd.errors import StageFailed
from edgekd.figures import Figure
from edgekd.parity import Parity
from edgekd.precision import PrecisionCandidate, precision_guard
from edgekd.runtimes import create_backend


def _candidate(precision, ms, interval, drop, source="measured"):
    return PrecisionCandidate(precision, {"accuracy": 1 - drop / 100}, drop, Parity(0.0, 1.0, 1), "", {},
                              Figure(ms, source, tuple(interval)))


def _within(max_drop):
    """The image track's rule: the accuracy drop within the budget (None: no budget)."""
    def rule(q, _):
        drop = 100 * (1 - q["accuracy"])
        return max_drop is None or drop <= max_drop + 1e-9, f"accuracy drop {drop:.2f} points (budget {max_drop})"
    return rule


def test_guard_ships_int8_only_when_clearly_faster_and_within_budget():
    fp = _candidate("fp16", 1.0, [0.95, 1.05], 0.5)
    assert precision_guard({"fp16": fp, "int8": _candidate("int8", 0.5, [0.48, 0.52], 1.0)}, _within(2.0))[0] == "int8"
    shipped, why = precision_guard({"fp16": fp, "int8": _candidate("int8", 0.97, [0.9, 1.0], 1.0)}, _within(2.0))
    assert shipped == "fp16" and "is not faster" in why and "(measured)" in why  # intervals overlap
    shipped, why = precision_guard({"fp16": fp, "int8": _candidate("int8", 0.5, [0.48, 0.52], 2.5)}, _within(2.0))
    assert shipped == "fp16" and "is over budget (accuracy drop 2.50 points (budget 2.0))" in why
    assert precision_guard({"fp32": fp, "int8": _candidate("int8", 0.5, [0.48, 0.52], 9.0)}, _within(None))[0] == "int8"


def test_guard_compares_predictions_by_value():
    fp = _candidate("fp32", 1.0, [0.5, 2.0], 0.0, "predicted")
    int8 = _candidate("int8", 0.6, [0.3, 1.2], 0.0, "predicted")
    shipped, why = precision_guard({"fp32": fp, "int8": int8}, _within(1.0))
    assert shipped == "int8" and "(predicted)" in why
    assert precision_guard({"fp32": fp}, _within(1.0)) == ("fp32", "fp32: the target asks for fp32")


def test_guard_trusts_the_pair_s_own_ratio_where_the_two_were_timed_interleaved():
    """Timed here, the ratio of the pair decides: INT8's latency interval may overlap the float one's while
    the paired ratio's interval clears 1 (drift hits both alike), and the other way round."""
    fp = _candidate("fp32", 1.0, [0.8, 1.2], 0.0)
    int8 = _candidate("int8", 0.9, [0.7, 1.1], 0.0)
    int8.speedup_over_float = Figure(1.11, "measured", (1.05, 1.16))
    assert precision_guard({"fp32": fp, "int8": int8}, _within(1.0))[0] == "int8"
    int8.speedup_over_float = Figure(1.02, "measured", (0.97, 1.08))
    assert precision_guard({"fp32": fp, "int8": int8}, _within(1.0))[0] == "fp32"


def test_a_candidate_s_record_keeps_the_report_contract_s_fields():
    c = _candidate("int8", 0.5, [0.48, 0.52], 1.0)
    c.speedup_over_float = Figure(2.0, "measured", (1.9, 2.1))
    d = c.as_dict()
    assert d["latency_ms"] == 0.5 and d["latency_interval"] == [0.48, 0.52] and d["latency_source"] == "measured"
    assert d["accuracy_drop"] == 1.0 and d["speedup_over_float"] == {"value": 2.0, "interval": [1.9, 2.1]}
    assert d["parity"]["top1_agreement"] == 1.0 and "accuracy" in d


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
