"""The speed-up budget: interleaved timing, its interval, and the rule that a slower student never passes."""

import numpy as np
import pytest
import torch

from edgekd.config import Budgets
from edgekd.figures import Figure, Figures
from edgekd.gate.verdict import decide, decide_budgets, exit_code
from edgekd.interleave import RATIO_FLOOR, Interleaved, load_replicas, time_sessions
from edgekd.report import Report, speedup_text


def test_interleaving_cancels_the_machines_drift_in_the_ratio():
    """A machine that slows down 2x during the run widens each model's latency interval, but the two models'
    rounds share the drift, so their ratio stays tight around the true 3x."""
    rng = np.random.default_rng(0)
    drift = np.linspace(1.0, 2.0, 60)
    noise = lambda: 1 + 0.01 * rng.standard_normal(60)  # noqa: E731
    timed = Interleaved({"teacher": 3.0 * drift * noise(), "student": drift * noise()},
                        {"teacher": 5, "student": 15}, 1.0)
    lo, hi = timed.interval_ms("student")
    assert hi / lo > 1.1  # the drift shows in the latency's interval
    ratio = timed.speedup("teacher", "student")
    assert ratio.value == pytest.approx(3.0, rel=0.02)
    assert ratio.interval[0] <= 3.0 <= ratio.interval[1]
    assert ratio.interval[1] / ratio.interval[0] < 1 + 3 * RATIO_FLOOR  # tight: the floor, not the drift


def test_a_ratio_interval_is_never_narrower_than_the_floor():
    timed = Interleaved({"a": np.full(20, 2.0), "b": np.full(20, 1.0)}, {"a": 1, "b": 1}, 1.0)
    r = timed.speedup("a", "b")
    assert r.value == 2.0 and r.interval == pytest.approx((2.0 * (1 - RATIO_FLOOR), 2.0 * (1 + RATIO_FLOOR)))


@pytest.mark.parametrize(("interval", "verdict"), [((3.2, 3.6), "pass"), ((2.8, 3.1), "inconclusive"),
                                                   ((2.0, 2.5), "fail")])
def test_speedup_is_decided_as_a_minimum(interval, verdict):
    assert decide(interval, 3.0, at_least=True) == verdict


def test_a_student_slower_than_its_teacher_fails(tmp_path):
    """Real ONNX Runtime sessions: a 'student' far bigger than its 'teacher' is measured slower, its speed-up
    budget fails even at the loosest limit (1x), and the build's verdict is exit 1."""
    from edgekd.models.families import create_model
    from edgekd.onnx_export import export_onnx
    from edgekd.runtimes import Artifact

    torch.manual_seed(0)
    paths = {}
    for name, arch in (("teacher", {"family": "resnet", "widths": [8, 8, 8], "blocks": [1, 1, 1]}),
                       ("student", {"family": "resnet", "widths": [64, 128, 128], "blocks": [2, 2, 2]})):
        paths[name] = export_onnx(create_model(arch, 1, 10, (8, 8)).eval(), (1, 8, 8), tmp_path / f"{name}.onnx", {})
    x = np.zeros((1, 1, 8, 8), np.float32)
    timed = time_sessions({n: load_replicas(Artifact(p, "onnxruntime", "fp32"), 1) for n, p in paths.items()}, x,
                          seconds=1.0)
    ratio = timed.speedup("teacher", "student")
    assert ratio.interval[1] < 1
    speedup = Figure(ratio.value, "measured", ratio.interval, "")
    student = timed.figures("student") | Figures(memory=Figure(1.0, "measured"))
    budgets = decide_budgets(Budgets(latency_ms=1000, memory_mb=100, max_accuracy_drop=1), student, speedup, 0.0)
    by_name = {b.name: b for b in budgets}
    assert by_name["speedup"].verdict == "fail" and by_name["speedup"].limit == 1.0
    assert all(by_name[n].passed for n in ("latency_ms", "memory_mb", "accuracy_drop"))
    report = Report(target={}, seed=0, budgets=budgets)
    assert exit_code(report.verdict) == 1
    assert "SLOWER than the teacher" in speedup_text(speedup)


def test_speedup_text_reads_as_the_terminal_says_it():
    assert speedup_text(Figure(4.2, "measured", (3.9, 4.5))) == "4.20x faster [3.90 .. 4.50] (measured)"
    assert speedup_text(Figure(2.0, "predicted")) == "2.00x faster (predicted)"


def test_a_speedup_record_round_trips_through_the_report():
    measured = Figure(4.2, "measured", (3.9, 4.5), "teacher / student p50")
    assert measured.as_dict() == {"value": 4.2, "interval": [3.9, 4.5], "source": "measured",
                                  "detail": "teacher / student p50"}
    assert Figure.from_dict(measured.as_dict()) == measured
    predicted = Figure(2.0, "predicted")
    assert predicted.as_dict() == {"value": 2.0, "source": "predicted"} and predicted.bounds == (2.0, 2.0)


@pytest.mark.parametrize("meets, student_meets, acc, speed, better", [
    (True, False, 0.90, (1.5, 1.7), True),  # it meets every budget, the student misses one: better
    (False, False, 0.99, (9.0, 9.5), False),  # it misses a budget: never better
    (True, True, 0.97, (3.5, 3.9), True),  # as accurate, and its interval reaches the student's
    (True, True, 0.97, (2.0, 2.2), False),  # as accurate but measurably slower
    (True, True, 0.96, (5.0, 6.0), False),  # faster but less accurate: the student keeps its place
])
def test_the_alternative_is_judged_on_the_budgets_first(meets, student_meets, acc, speed, better):
    from edgekd.stages.check import alternative_is_better

    student = Figure(4.0, "measured", (3.8, 4.2))
    assert alternative_is_better(meets, student_meets, acc, 0.97, Figure(sum(speed) / 2, "measured", speed),
                                 student) is better


@pytest.mark.parametrize("teacher_ms, verdict", [(3.7, "inconclusive"), (5.2, "pass"), (1.7, "fail")])
def test_a_predicted_speedup_is_decided_on_the_cost_models_band(teacher_ms, verdict):
    """Both latencies predicted: the ratio carries x0.6 .. x1/0.6 (cost/roofline.py SPEEDUP_BAND), so 3.7x
    against 3x is inconclusive, not a pass; the search asks a predicted pick for 3 / 0.6 = 5x."""
    from types import SimpleNamespace

    from edgekd.measurable import predicted_speedup
    from edgekd.search import speedup_bar

    speed = predicted_speedup(Figure(teacher_ms, "predicted"), Figure(1.0, "predicted"), "no device here")
    assert speed.source == "predicted" and speed.interval == pytest.approx((0.6 * teacher_ms, teacher_ms / 0.6))
    assert decide(speed.interval, 3.0, at_least=True) == verdict
    ctx = SimpleNamespace(budgets=SimpleNamespace(min_speedup=3.0),
                          cfg=SimpleNamespace(search=SimpleNamespace(speedup_margin=0.15)))
    assert speedup_bar(ctx, timed=False) == pytest.approx(5.0) and speedup_bar(ctx, timed=True) == pytest.approx(3.45)
