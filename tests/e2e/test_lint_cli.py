"""`edgekd lint`: exit codes, JSON and text output, bad input."""

from __future__ import annotations

import json

import onnx
from conftest import cli
from onnx import TensorProto, helper


def _model(nodes, inputs, outputs, opset=18):
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, dims, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, dims)


def test_lint_command_exit_codes(tiny_onnx, tmp_path):
    clean = cli("lint", tiny_onnx, "--runtime", "tensorrt")
    assert clean.exit_code == 0 and "0 error(s)" in clean.stdout
    bad = tmp_path / "bad.onnx"
    onnx.save(_model([helper.make_node("NonMaxSuppression", ["x"], ["y"], name="nms"),
                      helper.make_node("Unique", ["y"], ["z"], name="u")],
                     [_vi("x", ["batch", 4])], [_vi("z", None)]), str(bad))
    result = cli("lint", bad, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["errors"] >= 1 and {"node": "u", "op": "Unique"}.items() <= report["findings"][0].items()
    text = cli("lint", bad)
    assert "error   u (Unique): Unique is listed as unsupported" in text.stdout
    assert cli("lint", tmp_path / "missing.onnx").exit_code == 2
    assert "unknown runtime 'openvno'" in cli("lint", tiny_onnx, "--runtime", "openvno").stderr
