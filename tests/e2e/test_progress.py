"""Long stages talk in logs: plain lines (start, estimate, every ~10%, end) where stdout is not a terminal,
nothing extra on a terminal, silence with --quiet; NO_COLOR is honoured."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, cli
from rich.console import Console

from edgekd.config import DistillConfig
from edgekd.distill.trainer import TrainData, train
from edgekd.models.families import create_model
from edgekd.progress import NORMAL, QUIET, VERBOSE, set_verbosity


@pytest.fixture(autouse=True)
def normal_verbosity():
    set_verbosity(NORMAL)
    yield
    set_verbosity(NORMAL)


def train_tiny(console: Console, epochs: int) -> None:
    rng = np.random.default_rng(0)
    data = TrainData(rng.random((64, 1, 8, 8), dtype=np.float32), rng.integers(0, 4, 64))
    torch.manual_seed(0)
    model = create_model({"family": "resnet", "widths": [8, 8, 8], "blocks": [1, 1, 1]}, 1, 4, (8, 8))
    train(model, data, DistillConfig(method="ce", epochs=epochs, batch_size=32), torch.device("cpu"), 0,
          console=console, description="tiny")


def log_console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=False, width=80), buf


def progress_lines(text: str, epochs: int) -> list[str]:
    return re.findall(rf"\d+(?:\.\d)?/{epochs} epochs \(\d+%\)", text)


def test_training_prints_start_estimate_progress_and_end_lines_in_a_log():
    console, buf = log_console()
    train_tiny(console, epochs=10)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.startswith("tiny")]
    assert lines[0].startswith("tiny (ce, cpu): started: 10 epochs") and "64 images each" in lines[0]
    assert re.search(r"estimate [\d.]+ (s|min) in all, from the first [\d.]+ epochs", lines[1]), lines
    progress = [ln for ln in lines if progress_lines(ln, 10)]
    # about every 10% of 10 epochs (a slow machine may add some every 30 s)
    assert 4 <= len(progress) <= 12, lines
    assert "about" in progress[0] and "left" in progress[0]
    assert re.match(r"tiny \(ce, cpu\): done: 10/10 epochs in [\d.]+ (s|min) \(loss [\d.]+\)", lines[-1]), lines
    assert len(lines[0]) > 80, "log lines must not be wrapped at the console width"
    assert "━" not in buf.getvalue(), "no rich bar frame in a log"


def test_verbose_prints_more_often_and_quiet_prints_nothing():
    console, buf = log_console()
    train_tiny(console, epochs=10)
    normal = len(progress_lines(buf.getvalue(), 10))
    set_verbosity(VERBOSE)
    console, buf = log_console()
    train_tiny(console, epochs=10)
    assert len(progress_lines(buf.getvalue(), 10)) > normal
    set_verbosity(QUIET)
    console, buf = log_console()
    train_tiny(console, epochs=2)
    assert buf.getvalue() == ""


def test_a_terminal_gets_the_bar_not_the_lines():
    buf = io.StringIO()
    train_tiny(Console(file=buf, force_terminal=True, width=100), epochs=3)
    assert "started:" not in buf.getvalue() and "epochs" not in buf.getvalue()


def test_search_in_a_log_and_quiet(tmp_path):
    result = cli("search", "--out", tmp_path / "s", "--candidates", "10")
    assert result.exit_code == 0, result.output + result.stderr
    out = result.stdout
    assert "search: started: 10 candidates scored" in out
    assert re.search(r"search: estimate [\d.]+ (s|min) in all", out)
    assert re.search(r"search: done: \d+/10 candidates scored in [\d.]+ (s|min) \(\d+ priced\)", out)
    quiet = cli("--quiet", "search", "--out", tmp_path / "q", "--candidates", "10")
    assert quiet.exit_code == 0 and quiet.stdout == "", quiet.stdout
    assert (tmp_path / "q" / "search" / "search.json").is_file()


def test_no_color_is_honoured():
    def stderr(**env):
        run = subprocess.run([sys.executable, "-m", "edgekd", "check", "missing.onnx", "--target", "host-cpu"],
                             capture_output=True, text=True, cwd=REPO, env={**os.environ, **env}, timeout=120)
        assert run.returncode == 2
        return run.stderr

    assert "\x1b[31m" in stderr(FORCE_COLOR="1")  # the check can fail: colour is on where forced
    assert not re.search(r"\x1b\[3\dm", stderr(FORCE_COLOR="1", NO_COLOR="1"))
