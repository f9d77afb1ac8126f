"""check, bench and compile read the preprocessing an edgekd ONNX records when no options are given, and
say so; the figures show the recorded values were really used."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import assert_exit_is_verdict, cli

from edgekd.config import Preprocess
from edgekd.data import load_data
from edgekd.model_meta import read_recorded
from edgekd.onnx_export import export_onnx

MEAN, STD = 0.5, 0.25


class SignOfMean(torch.nn.Module):
    """Predicts class 3 when the normalised image's mean is negative, else 7: its accuracy on digits tells
    which normalisation its inputs got (pixels in 0..1 stay >= 0 without one, mostly fall below 0.5 with)."""

    def forward(self, x):
        neg = torch.sigmoid(-1e4 * x.mean(dim=(1, 2, 3)))[:, None]
        one_hot = torch.eye(10, dtype=x.dtype, device=x.device)
        return neg * one_hot[3] + (1 - neg) * one_hot[7]


@pytest.fixture(scope="module")
def recorded_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("meta") / "sign.onnx"
    meta = {"preprocessing": {"input_size": [8, 8], "mean": [MEAN], "std": [STD], "channels": 1, "layout": "NCHW"},
            "classes": [str(i) for i in range(10)], "arch": {}, "edgekd": "0.1.0"}
    return export_onnx(SignOfMean().eval(), (1, 8, 8), path, meta)


def share_of(label: int) -> float:
    _, y = load_data("digits", Preprocess(), 0).split("val")
    return float((y == label).mean())


def check(model, tmp_path, *options):
    report = tmp_path / f"r{len(options)}.json"
    result = cli("check", model, "--target", "host-cpu", "--data", "digits", "--max-seconds", "0.5",
                 "--json", report, *options)
    return result.stdout, assert_exit_is_verdict(result, report)["student"]["accuracy"]


def test_read_recorded(recorded_onnx, tiny_onnx, tmp_path):
    rec = read_recorded(recorded_onnx)
    assert (rec.input_size, rec.mean, rec.std, len(rec.classes)) == ([8, 8], [MEAN], [STD], 10)
    assert read_recorded(tiny_onnx).mean is None  # metadata without preprocessing
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    assert read_recorded(tmp_path / "junk.onnx").describe() == ""


def test_check_uses_and_names_the_recorded_preprocessing(recorded_onnx, tmp_path):
    assert share_of(3) != share_of(7)  # else the accuracies below could not tell the two apart
    out, accuracy = check(recorded_onnx, tmp_path)
    assert f"records its preprocessing; using input size 8x8, mean {MEAN:g}, std {STD:g} (10 classes)" in out
    assert accuracy == pytest.approx(share_of(3))
    out, overridden = check(recorded_onnx, tmp_path, "--mean", "0", "--std", "1")
    assert "records its preprocessing; using input size 8x8 (10 classes)" in out
    assert overridden == pytest.approx(share_of(7))


def test_bench_and_compile_say_what_the_model_records(recorded_onnx, tmp_path):
    x, y = load_data("digits", Preprocess(mean=[MEAN], std=[STD]), 0).split("val")
    np.savez(tmp_path / "eval.npz", x=x.astype(np.float32), y=y)
    result = cli("bench", recorded_onnx, "--runtime", "onnxruntime", "--eval", tmp_path / "eval.npz", "--json")
    assert result.exit_code == 0, result.output + result.stderr
    assert "records its preprocessing: input size 8x8, mean 0.5, std 0.25, 10 classes" in result.stderr
    assert json.loads(result.stdout)["accuracy"] == pytest.approx(share_of(3))
    result = cli("compile", recorded_onnx, "--runtime", "onnxruntime", "--out", tmp_path / "c")
    assert result.exit_code == 0, result.output + result.stderr
    assert "records its preprocessing: input size 8x8" in result.stdout
