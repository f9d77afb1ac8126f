"""Runs never mix: a build replaces OUT as a whole when it ends, a crash (or SIGTERM) leaves OUT as it was, and a
folder that is not a run (the user's own files, the current folder) is never written into or replaced."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, cli, digits_like_npz

from edgekd.errors import InputError
from edgekd.rundir import MARKER, staged_run


def _earlier_run(out: Path) -> dict[str, bytes]:
    """A folder that holds a finished run; returns its files and bytes to compare against later."""
    (out / "distill").mkdir(parents=True)
    (out / "report.json").write_text('{"schema": "edgekd.report/1", "earlier": true}')
    (out / "config.json").write_text('{"earlier": true}')
    (out / "distill" / "student.pt").write_bytes(b"earlier weights")
    return _snapshot(out)


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture()
def quick(tmp_path, tiny_onnx) -> list:
    """An ONNX teacher and a small .npz: a build that needs no teacher training."""
    return ["--teacher", tiny_onnx, "--data", digits_like_npz(tmp_path / "d.npz", n=200, classes=10)]


def _one_line(text: str) -> bool:
    return len([ln for ln in text.splitlines() if ln.strip()]) == 1 and "Traceback" not in text


def test_a_finished_run_replaces_out_as_a_whole(tmp_path):
    out = tmp_path / "run"
    _earlier_run(out)
    with staged_run(out, overwrite=True) as staging:
        assert staging != out and staging.parent == out.parent
        (staging / "report.json").write_text(json.dumps({"student": str(staging / "export" / "s.onnx")}))
    assert _snapshot(out) == {"report.json": json.dumps({"student": str(out / "export" / "s.onnx")}).encode()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging or replaced folder left


def test_a_crash_leaves_out_as_it_was_and_keeps_the_partial_output(tmp_path):
    out = tmp_path / "run"
    before = _earlier_run(out)
    with pytest.raises(RuntimeError), staged_run(out, overwrite=True) as staging:
        (staging / "config.json").write_text("{}")
        raise RuntimeError("boom")
    assert _snapshot(out) == before
    failed = [p for p in tmp_path.iterdir() if p.name.startswith("run.failed-")]
    assert len(failed) == 1 and (failed[0] / "config.json").is_file()


def test_bad_input_mid_run_names_where_the_partial_output_is(tmp_path):
    out = tmp_path / "run"
    before = _earlier_run(out)
    with pytest.raises(InputError, match=r"--data: bad \(--out '.*run' is unchanged; this run's partial output "
                                         r"is in '.*run.failed-"), staged_run(out, overwrite=True) as staging:
        (staging / "search").mkdir()
        raise InputError("--data: bad")
    assert _snapshot(out) == before


def test_build_refuses_an_out_holding_another_run(tmp_path):
    out = tmp_path / "run"
    before = _earlier_run(out)
    r = cli("build", "--out", out)
    assert r.exit_code == 2 and _one_line(r.stderr) and "--overwrite" in r.stderr, r.stderr
    assert _snapshot(out) == before


def test_out_under_a_regular_file_is_bad_input(tmp_path):
    (tmp_path / "file").write_text("x")
    for args in (["build"], ["search"]):
        r = cli(*args, "--out", tmp_path / "file" / "run")
        assert r.exit_code == 2 and _one_line(r.stderr) and "is a file" in r.stderr, r.stderr


def test_a_crash_mid_stage_keeps_the_earlier_run_intact(tmp_path, monkeypatch, quick):
    import edgekd.search

    def crashing_search(ctx):
        (ctx.run.folder("search") / "partial.json").write_text("{}")
        raise RuntimeError("injected crash in the search stage")

    monkeypatch.setattr(edgekd.search, "run_search", crashing_search)
    out = tmp_path / "run"
    before = _earlier_run(out)
    r = cli("build", "--out", out, "--overwrite", *quick)
    assert r.exit_code == 70, r.output + r.stderr
    assert _snapshot(out) == before
    failed = next(p for p in tmp_path.iterdir() if p.name.startswith("run.failed-"))
    assert (failed / "search" / "partial.json").is_file() and str(failed) in r.stderr.replace("\n", "")


def test_a_budget_failure_becomes_out_with_nothing_of_the_earlier_run(tmp_path, quick):
    out = tmp_path / "run"
    _earlier_run(out)
    r = cli("build", "--out", out, "--overwrite", "--latency-ms", "0.000001", *quick)
    assert r.exit_code == 1, r.output + r.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] is False and "earlier" not in report
    assert not (out / "distill" / "student.pt").exists()
    assert json.loads((out / "config.json").read_text())["budgets"]["latency_ms"] == 0.000001


def test_a_failed_build_lists_every_budget_and_the_known_teacher_figures(tmp_path, quick):
    out = tmp_path / "run"
    r = cli("build", "--out", out, "--latency-ms", "0.000001", "--memory-mb", "64", "--max-accuracy-drop", "5",
            *quick)
    assert r.exit_code == 1, r.output + r.stderr
    report = json.loads((out / "report.json").read_text())
    budgets = {b["name"]: b for b in report["budgets"]}
    assert {"latency_ms", "memory_mb", "accuracy_drop"} <= set(budgets)
    assert budgets["latency_ms"]["passed"] is False
    drop = budgets["accuracy_drop"]
    assert drop["passed"] is None and drop["detail"] == "not reached: search stopped the run" and drop["limit"] == 5
    assert report["teacher"]["latency_ms"] > 0 and report["teacher"]["latency_source"] == "predicted"
    assert "not reached" in (out / "report.md").read_text() and "<skipped" in (out / "junit.xml").read_text()


# ----------------------------------------------------------------------------- a user's folder is never replaced
def _users_folder(out: Path) -> dict[str, bytes]:
    (out / "data").mkdir(parents=True)
    (out / "notes.txt").write_text("my notes")
    (out / "data" / "x.bin").write_bytes(b"mine")
    return _snapshot(out)


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def test_build_never_replaces_a_folder_of_the_users_own_files(tmp_path):
    out = tmp_path / "mine"
    before = _users_folder(out)
    for extra in ([], ["--overwrite"]):
        r = cli("build", "--out", out, "--teacher", "missing.onnx", *extra)  # refused before the teacher
        assert r.exit_code == 2 and _one_line(r.stderr) and "not an edgekd run" in r.stderr, r.stderr
        assert "'notes.txt'" in r.stderr.replace("\n", "")
    assert _snapshot(out) == before and _leftovers(tmp_path, "mine") == []


def test_overwrite_refuses_a_run_folder_that_also_holds_other_files(tmp_path):
    out = tmp_path / "run"
    _earlier_run(out)
    (out / "notes.txt").write_text("added by the user")
    before = _snapshot(out)
    r = cli("build", "--out", out, "--overwrite", "--teacher", "missing.onnx")
    assert r.exit_code == 2 and _one_line(r.stderr) and "other files ('notes.txt')" in r.stderr, r.stderr
    assert _snapshot(out) == before


def test_the_current_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    here = tmp_path / "project"
    _earlier_run(here)  # even a run: the folder the user works in is not replaced
    (here / "sub").mkdir()
    before = _snapshot(here)
    for cwd, out in ((here, "."), (here / "sub", ".."), (here, str(here))):
        monkeypatch.chdir(cwd)
        r = cli("build", "--out", out, "--overwrite", "--teacher", "missing.onnx")  # refused before the teacher
        assert r.exit_code == 2 and _one_line(r.stderr) and "is the current folder" in r.stderr, r.stderr
    assert _snapshot(here) == before and _leftovers(tmp_path, "project") == []


def test_stage_commands_do_not_write_into_a_folder_of_other_files(tmp_path):
    out = tmp_path / "mine"
    before = _users_folder(out)
    arch = json.dumps({"family": "resnet", "widths": [8, 16, 32], "blocks": [1, 1, 1]})
    for args in (["search", "--teacher", "missing.onnx"], ["distill", "--arch", arch, "--teacher", "missing.onnx"],
                 ["export"], ["compile"]):
        r = cli(*args, "--out", out)
        assert r.exit_code == 2 and _one_line(r.stderr) and "not an edgekd run" in r.stderr, (args, r.stderr)
    assert _snapshot(out) == before


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_build_into_an_empty_folder_marks_it_and_clears_a_killed_runs_leftovers(tmp_path, quick):
    out = tmp_path / "run"
    out.mkdir()
    dead, alive = _dead_pid(), os.getppid()
    for name in (f".run.staging-20260101-000000-{dead}", f".run.replaced-20260101-000000-{dead}",
                 f".run.staging-20260101-000001-{alive}"):  # the last: a run that is still going
        (tmp_path / name / "distill").mkdir(parents=True)
        (tmp_path / name / "config.json").write_text("{}")
    r = cli("build", "--out", out, "--latency-ms", "0.000001", *quick)
    assert r.exit_code == 1, r.output + r.stderr
    assert (out / MARKER).is_file() and json.loads((out / "report.json").read_text())["passed"] is False
    assert _leftovers(tmp_path, "run") == [f".run.staging-20260101-000001-{alive}"]
    assert r.stderr.count("left by an edgekd run that was stopped") == 2


# ----------------------------------------------------------------------------- signals
def _start_build(out: Path, quick: list) -> subprocess.Popen:
    """A build in its own process, returned once it is writing into its staging folder (its search, with these
    inputs, then runs for minutes)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "edgekd", "build", "--out", str(out), "--overwrite",
                             *map(str, quick)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 300
    while not any(out.parent.glob(f".{out.name}.staging-*/config.json")):
        assert proc.poll() is None and time.time() < deadline, "the build ended before it started writing"
        time.sleep(0.05)
    return proc


@pytest.mark.slow
def test_sigterm_stops_a_build_as_ctrl_c_does(tmp_path, quick):
    out = tmp_path / "run"
    before = _earlier_run(out)
    proc = _start_build(out, quick)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert _snapshot(out) == before
    failed = next(p for p in tmp_path.iterdir() if p.name.startswith("run.failed-"))
    assert (failed / "config.json").is_file() and (failed / MARKER).is_file()
    text = " ".join(stderr.split())
    assert f"'{out}' is unchanged; this run's partial output is in '{failed}'" in text and "stopped: SIGTERM" in text
    assert "Traceback" not in stderr and _leftovers(tmp_path, "run") == []


@pytest.mark.slow
def test_the_next_build_clears_what_a_killed_build_left(tmp_path, quick):
    out = tmp_path / "run"
    before = _earlier_run(out)
    proc = _start_build(out, quick)
    proc.kill()  # SIGKILL: nothing of edgekd runs on the way out
    proc.communicate(timeout=60)
    assert len(_leftovers(tmp_path, "run")) == 1 and _snapshot(out) == before
    r = cli("build", "--out", out, "--overwrite", "--latency-ms", "0.000001", *quick)
    assert r.exit_code == 1, r.output + r.stderr
    assert _leftovers(tmp_path, "run") == [] and "left by an edgekd run that was stopped" in r.stderr
