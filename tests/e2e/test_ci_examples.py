"""The CI examples in docs/ci/ work as written: their `edgekd check` command lines run, with the variables the
CI sets, against a model and the base branch's copy of it (A/B), and exit 0 with the reports in gate/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ci"


def _github_gate() -> tuple[str, dict]:
    workflow = yaml.safe_load((DOCS / "edgekd-check.yml").read_text())
    step = next(s for s in workflow["jobs"]["gate"]["steps"] if s.get("name") == "Gate")
    return step["run"], workflow["env"]


def _gitlab_gate() -> tuple[str, dict]:
    job = yaml.safe_load((DOCS / "gitlab-ci.yml").read_text())["edgekd-gate"]
    (script,) = [line for line in job["script"] if "edgekd check" in line]
    return script, job["variables"]


@pytest.mark.parametrize("ci", [_github_gate, _gitlab_gate], ids=["github", "gitlab"])
def test_ci_example_runs_its_gate(tmp_path, tiny_onnx, ci):
    command, variables = ci()
    assert "--baseline gate/base.onnx" in command and "--max-regression 5%" in command
    work = tmp_path / "repo"
    model = work / variables["MODEL"]
    model.parent.mkdir(parents=True)
    shutil.copy(tiny_onnx, model)
    (work / "gate").mkdir()
    shutil.copy(tiny_onnx, work / "gate" / "base.onnx")  # what the job's `git show` of the base branch leaves
    shim = tmp_path / "bin" / "edgekd"  # `pip install edgekd` puts an `edgekd` on PATH; this repo's, here
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m edgekd "$@"\n')
    shim.chmod(0o755)
    summary = tmp_path / "summary.md"
    env = os.environ | variables | {"PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}",
                                    "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
                                    "GITHUB_STEP_SUMMARY": str(summary) if ci is _github_gate else ""}
    r = subprocess.run(["bash", "-e", "-c", command], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for report in ("report.json", "junit.xml", "report.md"):
        assert (work / "gate" / report).is_file(), report
    assert "latency_regression" in (work / "gate" / "junit.xml").read_text()
    if ci is _github_gate:
        assert summary.read_text().startswith("## edgekd: PASSED")
