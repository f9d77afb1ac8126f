"""Damaged model files are bad input (exit 2, one line) for every command that takes a model."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from conftest import cli, matmul_with_external_weight

from edgekd.errors import InputError
from edgekd.validate import check_model_file


def _one_line(r) -> bool:
    return len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1 and "Traceback" not in r.output


@pytest.fixture()
def broken(tmp_path, tiny_onnx):
    (tmp_path / "empty.onnx").write_bytes(b"")
    data = tiny_onnx.read_bytes()
    (tmp_path / "truncated.onnx").write_bytes(data[: len(data) // 2])
    (tmp_path / "random.xml").write_bytes(os.urandom(512))
    (tmp_path / "random.onnx").write_bytes(os.urandom(512))
    (tmp_path / "folder.onnx").mkdir()
    return tmp_path


def test_lint_never_calls_an_empty_or_truncated_file_clean(broken):
    for name in ("empty.onnx", "truncated.onnx", "random.onnx", "folder.onnx"):
        r = cli("lint", broken / name)
        assert r.exit_code == 2 and _one_line(r), (name, r.output, r.stderr)
    assert "is empty (0 bytes)" in cli("lint", broken / "empty.onnx").stderr
    assert "is a directory" in cli("lint", broken / "folder.onnx").stderr


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_compile_refuses_a_truncated_onnx_and_ships_nothing(broken, runtime):
    out = broken / f"out-{runtime}"
    r = cli("compile", broken / "truncated.onnx", "--runtime", runtime, "--out", out)
    assert r.exit_code == 2 and _one_line(r) and "not a valid ONNX model" in r.stderr, r.stderr
    assert not out.exists() or not any(out.iterdir())


def test_compile_openvino_on_random_bytes(broken):
    r = cli("compile", broken / "random.onnx", "--runtime", "openvino", "--out", broken / "ov")
    assert r.exit_code == 2 and _one_line(r), r.stderr


@pytest.mark.parametrize("name", ["empty.onnx", "truncated.onnx", "random.xml", "folder.onnx"])
def test_bench_refuses_broken_models(broken, name):
    r = cli("bench", broken / name)
    assert r.exit_code == 2 and _one_line(r), r.output + r.stderr
    assert "MODEL" in r.stderr and "file not found" not in r.stderr


def test_external_weights_outside_the_folder_are_refused(tmp_path):
    (tmp_path / "secret.bin").write_bytes(np.ones(16, np.float32).tobytes())
    sub = tmp_path / "model"
    sub.mkdir()
    onnx.save(matmul_with_external_weight("../secret.bin"), str(sub / "m.onnx"))
    with pytest.raises(InputError, match="outside|inside the model's folder"):
        check_model_file(sub / "m.onnx")
    # through a symbolic link inside the folder that leads out of it
    (sub / "link.bin").symlink_to(tmp_path / "secret.bin")
    onnx.save(matmul_with_external_weight("link.bin"), str(sub / "l.onnx"))
    with pytest.raises(InputError, match="not a file inside the model's folder"):
        check_model_file(sub / "l.onnx")
    r = cli("bench", sub / "m.onnx")
    assert r.exit_code == 2 and _one_line(r)


def test_engine_header(tmp_path):
    (tmp_path / "t.engine").write_text("not an engine at all " * 100)
    (tmp_path / "s.engine").write_bytes(b"\x00\x01" * 10)
    for name, why in (("t.engine", "is text"), ("s.engine", "too small")):
        with pytest.raises(InputError, match=why):
            check_model_file(tmp_path / name)


def test_valid_models_pass(tiny_onnx, tmp_path):
    from edgekd.compile import compile_model

    check_model_file(tiny_onnx)
    ir = compile_model(tiny_onnx, tmp_path / "ir", "openvino", "fp16")
    check_model_file(ir.path)
    assert cli("lint", tiny_onnx).exit_code == 0
