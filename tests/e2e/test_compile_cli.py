"""`edgekd compile MODEL` and `edgekd bench` run as commands."""

from __future__ import annotations

import json

import numpy as np
from conftest import cli


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


def test_bench_times_a_model_and_its_teacher_as_a_pair(tiny_onnx, tmp_path):
    """`bench --against TEACHER`: both timed interleaved in one process, the speed-up with its own interval (what
    the check stage runs on a --remote device)."""
    import torch

    from edgekd.models.families import create_model
    from edgekd.onnx_export import export_onnx

    torch.manual_seed(0)
    big = create_model({"family": "resnet", "widths": [64, 128, 256], "blocks": [2, 2, 2]}, 1, 10, (8, 8)).eval()
    teacher = export_onnx(big, (1, 8, 8), tmp_path / "teacher.onnx", {})
    result = cli("bench", tiny_onnx, "--runtime", "onnxruntime", "--threads", "1", "--against", teacher, "--json")
    assert result.exit_code == 0, result.stderr
    pair = json.loads(result.stdout)["speedup_over"]
    lo, hi = pair["interval"]
    assert lo <= pair["value"] <= hi and lo > 1.5 and pair["against"]["path"].endswith("teacher.onnx")
    assert pair["rounds"] >= 12
