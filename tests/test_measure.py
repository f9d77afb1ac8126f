import time

import numpy as np

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
