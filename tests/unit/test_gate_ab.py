"""The gate's adaptive A/B logic without timing anything real: the interleaved engine's rounds and order,
and the verdicts gate/ab.py draws from synthetic block medians."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgekd.config import Budgets
from edgekd.gate.ab import all_decided, checks, passes
from edgekd.interleave import AB_RATIO_FLOOR, STORED_SPREAD, Interleaved, time_interleaved


def _timed(model_ms: float, baseline_ms: float, noise: float, rounds: int = 200, seed: int = 0,
           names: tuple[str, ...] = ("model", "baseline")) -> Interleaved:
    """One pass over `names`; the reference is 3x the baseline."""
    rng = np.random.default_rng(seed)
    drift = 1 + 0.3 * np.sin(np.arange(rounds) / 7)  # the machine's drift: the same in a round's blocks
    ms = {"model": model_ms, "baseline": baseline_ms, "reference": 3 * baseline_ms}
    blocks = {n: ms[n] * drift * (1 + noise * rng.standard_normal(rounds)) for n in names}
    return Interleaved(blocks, dict.fromkeys(blocks, 10), 1.0)


def _plan(**over):
    cfg = SimpleNamespace(max_regression_pct=5.0, statistic="p50", baseline=Path("old.onnx"),
                          reference=Path("teacher.onnx"))
    plan = dict(cfg=cfg, budgets=Budgets(), baseline=None, baseline_model=object(), reference_timed=None,
                target=SimpleNamespace(batch_size=1, runtime="onnxruntime"))
    return SimpleNamespace(**(plan | over))


@pytest.mark.parametrize("slower, noise, verdict", [(1.0, 0.01, "pass"), (1.10, 0.01, "fail"), (1.25, 0.05, "fail"),
                                                    (1.05, 0.01, "inconclusive"), (1.0, 0.4, "inconclusive")])
def test_ab_ratio_is_decided_on_its_interval(slower, noise, verdict):
    (c,) = checks(_plan(), _timed(slower * 0.1, 0.1, noise))
    assert c.name == "latency_regression" and c.limit == pytest.approx(1.05)
    assert c.figure.value == pytest.approx(slower, rel=0.03 if noise < 0.1 else 0.15) and c.verdict == verdict, c
    lo, hi = c.figure.interval
    assert hi - lo >= 2 * AB_RATIO_FLOOR * c.figure.value * 0.999  # never under the floor
    assert all_decided(_plan(), _timed(slower * 0.1, 0.1, noise)) == (verdict != "inconclusive")


def test_drift_cancels_in_the_ratio_not_in_the_latency():
    """The drift spans 0.7x..1.3x: the latency's interval is wide, the paired ratio's stays at the floor."""
    timed = _timed(0.1, 0.1, 0.005)
    lo, hi = timed.interval_ms("model")
    r = timed.speedup("model", "baseline", AB_RATIO_FLOOR)
    assert (hi - lo) / 0.1 > 0.06 and r.interval == pytest.approx((r.value * 0.98, r.value * 1.02))


def test_stored_baseline_is_widened_by_the_between_process_spread():
    base = SimpleNamespace(latency_ms=0.1, path=Path("base.json"))
    plan = _plan(baseline=base, baseline_model=None)
    (c,) = checks(plan, _timed(0.1, 0.1, 0.01, names=("model",)))
    lo, hi = _timed(0.1, 0.1, 0.01, names=("model",)).interval_ms("model")
    assert c.name == "latency_ms_regression" and c.limit == pytest.approx(0.105)
    assert c.figure.interval == pytest.approx((lo * (1 - STORED_SPREAD), hi * (1 + STORED_SPREAD)))
    assert c.verdict == "inconclusive" and "widened" in c.figure.detail  # the same model: within the spread, undecided
    assert checks(plan, _timed(0.2, 0.1, 0.01, names=("model",)))[0].verdict == "fail"  # beyond any spread


def test_speedup_is_a_minimum_decided_like_the_build():
    plan = _plan(baseline_model=None, budgets=Budgets(min_speedup=2.0))
    pair = _timed(0.1, 0.1, 0.01, names=("reference", "model"))  # the reference is 3x the model
    (c,) = checks(plan, pair)
    assert (c.name, c.at_least, c.verdict) == ("speedup", True, "pass") and c.figure.value == pytest.approx(3, rel=0.05)
    assert checks(_plan(baseline_model=None, budgets=Budgets(min_speedup=4.0)), pair)[0].verdict == "fail"


def test_each_comparison_is_timed_as_its_own_pair():
    """A/B and speed-up together: two passes of two models (three in one rotation read a model against a
    copy of itself at 1.26x); MODEL's own latency budget is decided once, in the first pass."""
    plan = _plan(reference_timed=object(), budgets=Budgets(min_speedup=2.0, latency_ms=1.0))
    assert passes(plan) == [("model", "baseline"), ("reference", "model")]
    assert passes(_plan(baseline_model=None, reference_timed=None)) == [("model",)]
    first = checks(plan, _timed(0.1, 0.1, 0.01), first=True)
    second = checks(plan, _timed(0.1, 0.1, 0.01, names=("reference", "model")), first=False)
    assert [c.name for c in first] == ["latency_ms", "latency_regression"] and [c.name for c in second] == ["speedup"]


def test_rounds_are_added_until_decided_and_stop_at_the_cap():
    seen = []

    def until(t: Interleaved) -> bool:
        seen.append(t.rounds)
        return t.rounds >= 60

    runners = {"a": [lambda: sum(range(300))], "b": [lambda: sum(range(300))]}  # a few microseconds a call
    done = time_interleaved(runners, seconds=0.05, min_rounds=12, until=until, max_seconds=30)
    assert seen[0] >= 12 and seen == sorted(seen) and len(seen) >= 2 and done.rounds == seen[-1] >= 60
    capped = time_interleaved(runners, seconds=0.05, min_rounds=12, until=lambda t: False, max_seconds=1.0)
    assert capped.rounds > 12 and 1.0 <= capped.seconds < 2.0
    assert time_interleaved(runners, seconds=0.05, min_rounds=12).rounds == seen[0]  # no until: one pass


def test_two_models_take_turns_running_first():
    order = []
    runners = {n: [lambda n=n: order.append(n)] for n in ("a", "b")}
    timed = time_interleaved(runners, seconds=0.0, min_rounds=40)
    block = {n: c + 1 for n, c in timed.calls_per_block.items()}  # a block: its untimed first call and the timed ones
    at = len(order) - timed.rounds * sum(block.values())  # the warm-up comes first
    firsts = []
    for _ in range(timed.rounds):
        firsts.append(order[at])
        at += sum(block.values())
    assert firsts.count("a") == firsts.count("b") == timed.rounds // 2
