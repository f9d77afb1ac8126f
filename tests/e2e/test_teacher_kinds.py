"""Teachers as users save them: torch.export (.pt2), TorchScript, ONNX without shape information."""

from __future__ import annotations

import json

import onnx
import pytest
import torch
import torchvision
from conftest import cli, digits_like_npz

from edgekd.config import TeacherSpec, load_profile
from edgekd.cost.roofline import predict_onnx
from edgekd.models.families import create_model
from edgekd.models.teacher import load_teacher
from edgekd.onnx_export import pricing_onnx


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    d = tmp_path_factory.mktemp("teachers")
    torch.manual_seed(0)
    # the size of the embedded digits teacher before it was deepened: big enough that students several times
    # faster exist
    model = create_model({"family": "resnet", "widths": [32, 64, 128], "blocks": [2, 2, 2]}, 1, 10, (8, 8)).eval()
    torch.jit.script(model).save(str(d / "tiny.ts"))
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.export.save(torch.export.export(model, (torch.zeros(2, 1, 8, 8),), dynamic_shapes=({0: batch},)),
                      str(d / "tiny.pt2"))
    torch.export.save(torch.export.export(model, (torch.zeros(3, 1, 8, 8),)), str(d / "fixed.pt2"))
    return d, model


def test_pt2_teacher_runs_like_the_module(teachers):
    d, model = teachers
    x = torch.randn(7, 1, 8, 8)
    for name in ("tiny.pt2", "fixed.pt2"):  # a fixed-batch program is fed 3 at a time, the last chunk padded
        t = load_teacher(TeacherSpec(source=str(d / name)))
        t.module.eval()  # the program itself refuses eval(); the wrapper must not pass it on
        torch.testing.assert_close(t.logits(x), model(x))
    assert load_teacher(TeacherSpec(source=str(d / "fixed.pt2"))).input_size == (8, 8)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny.pt2", "tiny.ts"])
def test_search_with_pt2_and_torchscript_teachers_prices_the_teacher(teachers, tmp_path, name):
    d, _ = teachers
    data = digits_like_npz(tmp_path / "d.npz", n=200, classes=10)
    r = cli("search", "--teacher", d / name, "--data", data, "--out", tmp_path / "run",
            "--min-speedup", "1", "--set", "search.max_candidates=4", "--set", "search.measure_rounds=0")
    assert r.exit_code == 0, r.output + r.stderr
    result = json.loads((tmp_path / "run" / "search" / "search.json").read_text())
    assert result["limits"]["teacher_latency_ms"]["value"] > 0


def test_scripted_torchvision_teacher_is_priced_above_zero():
    """The hooks of the torch cost model see no layers in a TorchScript graph; its ONNX does."""
    scripted = torch.jit.script(torchvision.models.resnet18(num_classes=4).eval())
    proto = pricing_onnx(scripted, (1, 3, 32, 32))
    latency, memory = predict_onnx(proto, load_profile("host"), "fp32", 1, runtime="onnxruntime")
    assert latency.value > 0 and memory.value > 0


def test_nothing_fits_with_a_teacher_priced_at_zero():
    from edgekd.config import Budgets
    from edgekd.search import _nothing_fits
    from edgekd.search.evolution import Candidate

    c = Candidate(0, "resnet", "random", {}, 10, 1.0, 1.5, (1.0, 2.0), 3.0, False, "slow", ("latency_ms",), None,
                  {}, (2.0, 4.0))
    err = _nothing_fits([c], Budgets(latency_ms=1.0), {"latency_ms": 1}, {}, 1.0)
    assert "none of 1 candidates fits" in str(err)


def _bare(tiny_onnx, tmp_path):
    proto = onnx.load(str(tiny_onnx))
    proto.graph.ClearField("value_info")
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    return tmp_path / "bare.onnx"


def test_signals_of_an_onnx_teacher_without_shape_information(tiny_onnx, tmp_path):
    from edgekd.search.signals import onnx_signals

    s = onnx_signals(_bare(tiny_onnx, tmp_path), torch.randn(4, 1, 8, 8), torch.tensor([0, 1]))
    assert s.logits.shape == (4, 10)


@pytest.mark.slow
def test_search_with_an_onnx_teacher_without_shape_information(tiny_onnx, tmp_path):
    _bare(tiny_onnx, tmp_path)
    data = digits_like_npz(tmp_path / "d.npz", n=200, classes=10)
    r = cli("search", "--teacher", tmp_path / "bare.onnx", "--data", data, "--out", tmp_path / "run",
            "--min-speedup", "1", "--set", "search.max_candidates=4", "--target", "mobile-cpu")
    # priced and probed without shape information; no student of the space is predicted faster than this tiny
    # teacher by the cost model's whole band (test_search_cli.py's ONNX teacher test), and the search says so
    assert r.exit_code == 1 and "none of" in r.stderr, r.output + r.stderr
    saved = json.loads((tmp_path / "run" / "search" / "search.json").read_text())
    assert saved["limits"]["teacher_latency_ms"]["value"] > 0 and saved["probe"]["teacher"]["source"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny.pt2", "tiny.ts"])
def test_pt2_and_torchscript_teachers_build_end_to_end(teachers, tmp_path, name):
    d, _ = teachers
    data = digits_like_npz(tmp_path / "d.npz", n=300, classes=10)
    r = cli("build", "--teacher", d / name, "--data", data, "--out", tmp_path / "run", "--epochs", "1",
            "--max-accuracy-drop", "100", "--min-speedup", "1.5", "--set", "search.max_candidates=4",
            "--set", "search.spaces=[resnet]")
    assert r.exit_code == 0, r.output + r.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["teacher"]["latency_ms"] > 0 and (tmp_path / "run" / "teacher" / "teacher.onnx").is_file()
