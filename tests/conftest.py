"""Shared fixtures: one XDG cache per test session (the embedded teacher trains once), tiny models,
and one end-to-end build that several tests inspect."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]


def check_report(report: Path, *args: str):
    """Run the repository's copy of the report contract checker (tests/contract/check_report.py) on a
    report.json, as the reviewers' tool runs: a subprocess whose stdout names the first shortfall."""
    import subprocess
    import sys

    tool = REPO / "tests" / "contract" / "check_report.py"
    return subprocess.run([sys.executable, str(tool), str(report), *args], capture_output=True, text=True)


def assert_exit_is_verdict(result, report_json: Path) -> dict:
    """The command's exit code is the one its report's verdict maps to (0 pass, 1 fail, 3 inconclusive): a
    check that accepted any of them would pass a command that lied in either."""
    import json

    from edgekd.gate.verdict import exit_code
    from edgekd.rerender import report_from_dict

    report = json.loads(report_json.read_text())
    assert result.exit_code == exit_code(report_from_dict(report).verdict), result.output + result.stderr
    return report


@pytest.fixture(scope="session", autouse=True)
def xdg_cache(tmp_path_factory):
    """Keep the embedded teacher and host measurements out of the user's cache, shared by all tests."""
    path = os.environ.get("EDGEKD_TEST_CACHE") or str(tmp_path_factory.mktemp("xdg-cache"))
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = path
    yield Path(path)
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


def cli(*args: str):
    """Run the edgekd CLI in-process; returns the click Result (exit_code, stdout, stderr)."""
    from edgekd.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="session")
def tiny_arch():
    return {"family": "resnet", "widths": [8, 16, 32], "blocks": [1, 1, 1]}


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, tiny_arch) -> Path:
    """A small 10-class CNN on 1x8x8 inputs, exported with edgekd's exporter."""
    from edgekd.models.families import create_model
    from edgekd.onnx_export import export_onnx

    torch.manual_seed(0)
    model = create_model(tiny_arch, 1, 10, (8, 8)).eval()
    return export_onnx(model, (1, 8, 8), tmp_path_factory.mktemp("tiny") / "tiny.onnx", {"test": True})


@pytest.fixture(scope="session")
def host_build(tmp_path_factory) -> Path:
    """One real `edgekd build --target host-cpu` on the embedded default, with few epochs."""
    out = tmp_path_factory.mktemp("build") / "host"
    # The tests read the report and artifacts of a full run, so the 3-epoch student must get past distill's
    # accuracy budget: a 3-epoch student drops up to ~12 points on digits, depending on which student the measured
    # search picks on a busy machine; a wide budget keeps every stage running. Every other budget is the target's
    # default (3x faster than the teacher, measured): it must pass.
    # --baseline-scratch: the report also carries the same student trained on labels alone (3 more epochs)
    result = cli("build", "--target", "host-cpu", "--out", out, "--epochs", "3", "--max-accuracy-drop", "30",
                 "--baseline-scratch")
    assert result.exit_code == 0, result.output + result.stderr
    return out


def digits_like_npz(path: Path, n: int = 120, classes: int = 3, size: int = 8) -> Path:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(n, size, size), dtype=np.uint8)
    y = np.arange(n) % classes
    np.savez(path, x=x, y=y)
    return path


def matmul_with_external_weight(location: str):
    """A one-MatMul ONNX model whose 4x4 weight is stored outside it, at `location` (relative to the model)."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value=location)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    return helper.make_model(graph)

