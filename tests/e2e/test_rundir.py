"""Runs never mix: a build replaces OUT as a whole when it ends, a crash leaves OUT as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli, digits_like_npz

from edgekd.errors import InputError
from edgekd.rundir import staged_run


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
