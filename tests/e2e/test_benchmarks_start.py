"""Every benchmark script starts: its imports still match the package it measures (a renamed function once
left benchmarks/search_speed.py failing at import, with nothing in the test suite to notice)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[2] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_imports_and_prints_its_usage(script):
    r = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    if 'if __name__ == "__main__":' in script.read_text():  # a script, not a helper module (kd_pool.py)
        assert "usage:" in r.stdout, r.stdout[-2000:]
