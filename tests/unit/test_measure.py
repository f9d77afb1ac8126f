import time

import numpy as np
import pytest

from edgekd.measure import bootstrap_interval, summarize, time_calls


def test_bootstrap_interval_brackets_the_median():
    s = np.random.default_rng(0).normal(10, 1, 400)
    lo, hi = bootstrap_interval(s, 50)
    assert lo < np.median(s) < hi and hi - lo < 0.5


def test_summary_percentiles_are_ordered():
    st = summarize(np.arange(1, 101, dtype=float))
    assert st.p50_ms <= st.p90_ms <= st.p99_ms and st.runs == 100


def test_time_calls_measures_a_known_sleep():
    st = time_calls(lambda: time.sleep(0.002), warmup=2, min_runs=30, max_seconds=1.0)
    assert st.runs >= 30 and 1.9 < st.p50_ms < 10


def test_warmup_runs_for_its_seconds_before_timing():
    calls = []
    st = time_calls(lambda: calls.append(time.perf_counter()), warmup=1, warmup_s=0.05, min_runs=10, max_seconds=0.1)
    assert len(calls) > st.runs and calls[len(calls) - st.runs] - calls[0] >= 0.05  # first timed call


def test_measure_artifact_pins_threads_and_records_versions(tiny_onnx):
    import onnxruntime

    from edgekd.measure import measure_artifact
    from edgekd.runtimes import Artifact

    m = measure_artifact(Artifact(tiny_onnx, "onnxruntime", "fp32"), (1, 1, 8, 8), threads=1, max_seconds=0.3)
    assert m.threads == 1 and m.settings["threads"] == 1
    assert m.versions["onnxruntime"] == onnxruntime.__version__
    lo, hi = m.stats.interval_ms
    assert lo <= m.value_ms <= hi and m.as_dict()["runtime"] == "onnxruntime"


def test_timing_lock_excludes_other_holders(tmp_path, monkeypatch):
    import fcntl

    from edgekd.measure import timing_lock

    path = tmp_path / "cpu.lock"
    monkeypatch.setenv("EDGEKD_TIMING_LOCK", str(path))
    with timing_lock(), open(path) as other, pytest.raises(BlockingIOError):
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(path) as other:  # released afterwards
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_interference_from_busy_processes_is_seen():
    import os
    import subprocess
    import sys

    # One spinner per core: the timed loop then shares every core and waits for one about 1/(cores+1) of
    # its runnable time (with a core left free it would wait for nothing, rightly).
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        time.sleep(0.3)
        st = time_calls(lambda: sum(range(20_000)), warmup=1, min_runs=20, max_seconds=0.5, rel_width=0.0,
                        min_seconds=0.5)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    quiet = time_calls(lambda: time.sleep(0.002), warmup=1, min_runs=20, max_seconds=0.2, rel_width=0.0)
    assert st.interference is not None and st.interference > 0.5 / (cores + 1)
    assert quiet.interference is not None and quiet.interference < st.interference


def test_canary_keeps_its_fastest_reading():
    from edgekd.measure import Canary

    delay = [0.002]
    canary = Canary(lambda: time.sleep(delay[0]), seconds=0.05)
    fast = canary.reading()
    delay[0] = 0.006
    slow = canary.reading()
    assert slow > 2 * fast and canary.best_ms == fast
