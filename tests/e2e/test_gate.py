"""`edgekd check`: verdict logic on synthetic samples, the cheat audits against real cheating sessions,
the command on real ONNX Runtime / OpenVINO, its reports, and every bad input (exit 2, one line)."""

from __future__ import annotations

import json
import os
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from conftest import cli, digits_like_npz
from rich.console import Console

from edgekd.gate.timing import outputs_match, repeated_input_audit, time_models
from edgekd.gate.verdict import budget_result, decide, parse_percent, regression_limit
from edgekd.measure import summarize
from edgekd.report import BudgetResult, Report, StageRecord, print_summary, to_junit, to_markdown
from edgekd.runtimes import Artifact, create_backend

FAST = ("--max-seconds", "1")


# ----------------------------------------------------------------------------- verdicts
@pytest.fixture(scope="module")
def samples():
    """Latencies around 10 ms with jitter and a slow tail, as a busy machine gives them."""
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(10, 0.4, 380), rng.uniform(12, 20, 20)])


@pytest.mark.parametrize("limit, expected", [(13.0, "pass"), (7.0, "fail"), (None, "inconclusive")])
def test_verdict_of_synthetic_samples(samples, limit, expected):
    st = summarize(samples, "p50")
    lo, hi = st.interval_ms
    assert lo < st.p50_ms < hi
    limit = st.p50_ms if limit is None else limit  # None: the budget sits on the median, inside the interval
    result = budget_result("latency_ms", limit, st.p50_ms, "measured", st.interval_ms)
    assert result.verdict == expected and result.passed == (expected == "pass")


def test_p90_interval_is_wider_and_gated_separately(samples):
    p50, p90 = summarize(samples, "p50"), summarize(samples, "p90")
    assert p90.value_ms > p50.value_ms
    limit = (p50.interval_ms[1] + p90.interval_ms[0]) / 2  # above the median's interval, below the p90's
    assert decide(p50.interval_ms, limit) == "pass" and decide(p90.interval_ms, limit) == "fail"


def test_verdict_edges_and_policies():
    assert decide((1.0, 2.0), 2.0) == "pass"  # the upper end may touch the limit
    assert decide((2.0, 3.0), 2.0) == "inconclusive"  # the lower end on the limit is not beyond it
    assert decide((2.01, 3.0), 2.0) == "fail"
    straddle = dict(name="latency_ms", limit=2.0, value=2.1, source="measured", interval=(1.5, 2.5))
    assert budget_result(**straddle, inconclusive="pass").verdict == "pass"
    failed = budget_result(**straddle, inconclusive="fail")
    assert failed.verdict == "fail" and "--inconclusive fail" in failed.detail
    predicted = budget_result("latency_ms", 10.0, 1.0, "predicted", (0.5, 2.0), require_measured=True)
    assert predicted.verdict == "fail" and "--require-measured" in predicted.detail
    assert budget_result("accuracy_drop", 1.0, 0.5, "measured", None).verdict == "pass"  # a point is its interval
    assert regression_limit(2.0, 5) == pytest.approx(2.1)
    assert parse_percent("5%") == parse_percent(" 5 ") == 5.0


def test_report_verdict_junit_and_markdown_for_an_inconclusive_budget():
    budgets = [BudgetResult("latency_ms", 2.0, 2.1, "measured", False, (1.9, 2.3), "p50", "inconclusive"),
               BudgetResult("memory_mb", 64, 9.0, "measured", True, (8.9, 9.1), "", "pass")]
    report = Report(target={"name": "host-cpu"}, seed=0, budgets=budgets)
    assert report.verdict == "inconclusive" and not report.passed
    suite = ET.fromstring(to_junit(report))
    assert (suite.get("errors"), suite.get("failures"), suite.get("tests")) == ("1", "0", "2")
    lat = suite.find("testcase[@name='latency_ms']")
    assert lat.find("error").get("type") == "inconclusive" and lat.find("failure") is None
    assert {p.get("name"): p.get("value") for p in lat.iter("property")}["interval_high"] == "2.3"
    assert "## edgekd: INCONCLUSIVE" in to_markdown(report) and "**INCONCLUSIVE**" in to_markdown(report)
    report.stages.append(StageRecord("outputs-match", "failed", 0.0, "outputs differ"))
    assert report.verdict == "fail"  # a failed audit outranks an undecided budget


def test_summary_says_which_audit_failed_when_every_budget_passed():
    budgets = [BudgetResult("latency_ms", 2.0, 1.0, "measured", True, (0.9, 1.1), "p50", "pass")]
    report = Report(target={"name": "host-cpu"}, seed=0, budgets=budgets,
                    stages=[StageRecord("no-input-caching", "failed", 0.4, "a repeated input is 60% faster")])
    console = Console(record=True, width=200)
    print_summary(report, console)
    assert report.verdict == "fail"
    assert "no-input-caching failed: a repeated input is 60% faster" in console.export_text()


# ----------------------------------------------------------------------------- audits on real sessions
@pytest.fixture(scope="module")
def ort_session(tiny_onnx):
    return create_backend("onnxruntime").load(Artifact(tiny_onnx, "onnxruntime", "fp32"), threads=1)


@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(0)
    return [rng.standard_normal((1, 1, 8, 8)).astype(np.float32) for _ in range(16)]


class StaleWhenTimed:
    """A cheat: after its first calls it returns the last result instead of computing."""

    def __init__(self, session, honest_calls: int):
        self.session, self.left, self.last = session, honest_calls, None

    def run(self, x):
        if self.left > 0 or self.last is None:
            self.left -= 1
            self.last = self.session.run(x)
        return self.last


class Memoizing:
    """A cheat: results cached by input content, so a repeated input costs a dictionary lookup."""

    def __init__(self, session):
        self.session, self.cache = session, {}

    def run(self, x):
        key = x.tobytes()
        if key not in self.cache:
            self.cache[key] = self.session.run(x)
        return self.cache[key]


def test_outputs_match_passes_an_honest_session_and_catches_stale_results(ort_session, pool):
    reference = [ort_session.run(x) for x in pool]
    honest = time_models({"model": [ort_session]}, pool, "p50", 0.5)
    audit = outputs_match(honest.outputs["model"], reference)
    assert audit.passed and audit.figures["compared"] == len(pool), audit.reason
    cheat = time_models({"model": [StaleWhenTimed(ort_session, honest_calls=1)]}, pool, "p50", 0.5)
    caught = outputs_match(cheat.outputs["model"], reference)
    assert not caught.passed and caught.figures["mismatched"] >= len(pool) - 1, caught.reason


def test_repeated_input_audit_passes_an_honest_session_and_catches_a_cache(ort_session, pool):
    honest = repeated_input_audit(ort_session, pool, p50_ms=0.02, seconds=0.3)
    assert honest.passed, honest.reason
    caught = repeated_input_audit(Memoizing(ort_session), pool, p50_ms=0.02, seconds=0.3)
    assert not caught.passed and caught.figures["ratio"] < 0.5, caught.reason


# ----------------------------------------------------------------------------- the command
def _lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.strip()]


def test_check_passes_and_writes_json_junit_markdown(tmp_path, tiny_onnx):
    out = {k: tmp_path / f"gate.{k}" for k in ("json", "xml", "md")}
    r = cli("check", tiny_onnx, "--target", "host-cpu", "--latency-ms", "50", "--memory-mb", "256",
            "--data", "digits", "--reference", tiny_onnx, "--max-accuracy-drop", "0.5",
            "--json", out["json"], "--junit", out["xml"], "--markdown", out["md"], *FAST)
    assert r.exit_code == 0, r.output + r.stderr
    report = json.loads(out["json"].read_text())
    assert report["schema"] == "edgekd.report/1" and report["passed"] and report["verdict"] == "pass"
    budgets = {b["name"]: b for b in report["budgets"]}
    assert set(budgets) == {"latency_ms", "memory_mb", "accuracy_drop"}
    lat = budgets["latency_ms"]
    assert lat["source"] == "measured" and lat["interval"][0] <= lat["value"] <= lat["interval"][1] <= 50
    assert report["student"]["latency_stats"]["runs"] >= 30 and report["student"]["latency_stats"]["statistic"] == "p50"
    assert budgets["accuracy_drop"]["value"] == 0.0  # the model against itself
    assert report["teacher"]["accuracy"] == report["student"]["accuracy"]
    stages = {s["name"]: s for s in report["stages"]}
    assert stages["outputs-match"]["status"] == "passed" and stages["no-input-caching"]["status"] == "passed"
    suite = ET.fromstring(out["xml"].read_text())
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == set(budgets) and suite.get("failures") == "0"
    props = {p.get("name"): float(p.get("value")) for p in cases["latency_ms"].iter("property")
             if p.get("name") in ("value", "limit", "interval_low", "interval_high")}
    assert props == pytest.approx({"value": lat["value"], "limit": 50.0, "interval_low": lat["interval"][0],
                                   "interval_high": lat["interval"][1]})
    md = out["md"].read_text()
    assert md.startswith("## edgekd: PASSED on `host-cpu`") and "| latency_ms |" in md and "| reference |" in md


def test_check_fails_a_budget_beyond_the_interval(tmp_path, tiny_onnx):
    r = cli("check", tiny_onnx, "--target", "host-cpu", "--latency-ms", "0.000001", "--junit", tmp_path / "j.xml",
            "--markdown", tmp_path / "r.md", *FAST)
    assert r.exit_code == 1, r.output + r.stderr
    failure = ET.fromstring((tmp_path / "j.xml").read_text()).find("testcase[@name='latency_ms']/failure")
    assert failure is not None and "limit 1e-06" in failure.get("message")
    assert "## edgekd: FAILED" in (tmp_path / "r.md").read_text()


def test_predicted_straddle_is_inconclusive_exit_3_unless_a_policy_decides(tmp_path, tiny_onnx):
    first = cli("check", tiny_onnx, "--target", "jetson", "--json", tmp_path / "p.json")
    assert first.exit_code == 0, first.output + first.stderr
    lat = next(b for b in json.loads((tmp_path / "p.json").read_text())["budgets"] if b["name"] == "latency_ms")
    assert lat["source"] == "predicted" and lat["interval"][0] < lat["value"] < lat["interval"][1]
    on_the_line = ("check", tiny_onnx, "--target", "jetson", "--latency-ms", str(lat["value"]))
    assert cli(*on_the_line).exit_code == 3
    assert cli(*on_the_line, "--inconclusive", "pass").exit_code == 0
    assert cli(*on_the_line, "--inconclusive", "fail").exit_code == 1
    assert cli("check", tiny_onnx, "--target", "jetson", "--require-measured").exit_code == 1


def _budgets(path) -> dict:
    return {b["name"]: b for b in json.loads(path.read_text())["budgets"]}


@pytest.fixture(scope="module")
def big_onnx(tmp_path_factory):
    """The tiny model's family, 8x as wide: many times slower on the same 1x8x8 input."""
    from edgekd.models.families import create_model
    from edgekd.onnx_export import export_onnx

    model = create_model({"family": "resnet", "widths": [64, 128, 256], "blocks": [2, 2, 2]}, 1, 10, (8, 8)).eval()
    return export_onnx(model, (1, 8, 8), tmp_path_factory.mktemp("big") / "big.onnx", {})


def test_ab_gate_passes_an_unchanged_model_at_5_percent(tmp_path, tiny_onnx, monkeypatch):
    """The model against a copy of itself, interleaved in one process: ratio ~1, decided within 5%."""
    old = tmp_path / "old.onnx"
    old.write_bytes(tiny_onnx.read_bytes())
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    r = cli("check", tiny_onnx, "--target", "host-cpu", "--baseline", old, "--max-regression", "5%",
            "--max-seconds", "120", "--json", tmp_path / "ab.json")
    report = json.loads((tmp_path / "ab.json").read_text())
    reg = _budgets(tmp_path / "ab.json")["latency_regression"]
    assert r.exit_code == 0 and reg["verdict"] == "pass", r.output + r.stderr
    assert reg["limit"] == pytest.approx(1.05) and reg["interval"][0] <= 1.0 <= reg["interval"][1] <= 1.05
    assert report["baseline_mode"] == "a/b" and report["notes"][0].startswith("baseline: A/B")
    assert report["baseline_model"]["latency_source"] == "measured"
    timing = report["student"]["latency_timing"]
    assert timing["method"] == "interleaved blocks" and timing["rounds"] >= 12
    assert report["student"]["latency_stats"]["threads"] <= os.cpu_count()
    assert f"{timing['rounds']} rounds of model and baseline" in next(s["reason"] for s in report["stages"]
                                                                      if s["name"] == "latency")
    text = summary.read_text()  # appended to what earlier steps wrote, not overwritten
    assert text.startswith("earlier step\n## edgekd: PASSED on `host-cpu`") and "| latency_regression |" in text


def test_ab_gate_fails_a_clearly_slower_model_and_gates_a_speedup(tmp_path, tiny_onnx, big_onnx):
    r = cli("check", big_onnx, "--target", "host-cpu", "--baseline", tiny_onnx, "--max-regression", "5%",
            "--reference", big_onnx, "--min-speedup", "1.2", "--json", tmp_path / "slow.json")
    budgets = _budgets(tmp_path / "slow.json")
    assert r.exit_code == 1, r.output + r.stderr
    assert budgets["latency_regression"]["verdict"] == "fail" and budgets["latency_regression"]["interval"][0] > 1.05
    assert budgets["speedup"]["verdict"] == "fail"  # the model against itself is no 1.2x faster
    # timed as its own pair, not in one rotation with the baseline (that read the model against itself at 1.26x)
    assert 0.9 < budgets["speedup"]["value"] < 1.1, budgets["speedup"]
    r = cli("check", tiny_onnx, "--target", "host-cpu", "--reference", big_onnx, "--min-speedup", "1.2",
            "--json", tmp_path / "fast.json")
    speedup = _budgets(tmp_path / "fast.json")["speedup"]
    assert r.exit_code == 0 and speedup["verdict"] == "pass" and speedup["interval"][0] >= 1.2, r.output + r.stderr
    assert json.loads((tmp_path / "fast.json").read_text())["teacher"]["latency_source"] == "measured"


def test_stored_baseline_says_so_widens_its_interval_and_refuses_other_settings(tmp_path, tiny_onnx):
    base = tmp_path / "base.json"
    assert cli("check", tiny_onnx, "--target", "host-cpu", "--json", base, *FAST).exit_code == 0
    stored = json.loads(base.read_text())
    faster = stored | {"student": stored["student"] | {"latency_ms": stored["student"]["latency_ms"] / 1000}}
    base.write_text(json.dumps(faster))  # a baseline 1000x faster: beyond any spread between processes
    r = cli("check", tiny_onnx, "--target", "host-cpu", "--baseline", base, "--json", tmp_path / "now.json", *FAST)
    report = json.loads((tmp_path / "now.json").read_text())
    reg = _budgets(tmp_path / "now.json")["latency_ms_regression"]
    assert r.exit_code == 1 and reg["verdict"] == "fail", r.output + r.stderr
    assert report["baseline_mode"] == "stored" and "stored figure" in report["notes"][0]
    assert "widened by" in reg["detail"] and reg["limit"] == pytest.approx(1.05 * faster["student"]["latency_ms"])
    other = stored | {"student": stored["student"] | {"session": {"threads": 64}}}
    base.write_text(json.dumps(other))
    r = cli("check", tiny_onnx, "--target", "host-cpu", "--baseline", base, *FAST)
    assert r.exit_code == 2 and len(_lines(r.stderr)) == 1 and "threads 64" in r.stderr, r.stderr


def test_check_reproduces_a_build_and_gates_its_student_ab(tmp_path, host_build):
    built = json.loads((host_build / "report.json").read_text())
    student, teacher = host_build / built["artifacts"]["compiled"], host_build / "teacher" / "teacher.onnx"
    old = tmp_path / f"old{student.suffix}"
    old.write_bytes(student.read_bytes())
    r = cli("check", student, "--target", "host-cpu", "--data", "digits", "--reference", teacher,
            "--min-speedup", "1.5", "--baseline", old, "--max-regression", "5%", "--max-seconds", "120",
            "--json", tmp_path / "c.json")
    report, budgets = json.loads((tmp_path / "c.json").read_text()), _budgets(tmp_path / "c.json")
    assert r.exit_code == 0 and budgets["latency_regression"]["verdict"] == "pass", r.output + r.stderr
    assert budgets["speedup"]["verdict"] == "pass" and budgets["speedup"]["limit"] == 1.5  # the build shipped >= 3x
    # same held-out split and preprocessing (read from the student's ONNX metadata) as the build used
    assert report["student"]["accuracy"] == pytest.approx(built["student"]["accuracy"])
    drop = next(b for b in built["budgets"] if b["name"] == "accuracy_drop")["value"]
    assert abs(budgets["accuracy_drop"]["value"] - drop) <= 0.51
    # the teacher gated against the student it was distilled into: several times slower, a clear fail
    r = cli("check", teacher, "--target", "host-cpu", "--baseline", student, "--max-regression", "5%",
            "--json", tmp_path / "t.json")
    assert r.exit_code == 1 and _budgets(tmp_path / "t.json")["latency_regression"]["value"] > 1.5, r.output


def test_check_gates_an_openvino_ir(tmp_path, tiny_onnx):
    ir = create_backend("openvino").compile(tiny_onnx, tmp_path / "ov", "fp16", None, "x86_64")
    r = cli("check", ir.path, "--target", "openvino", "--latency-ms", "50", "--memory-mb", "512",
            "--json", tmp_path / "ov.json", *FAST)
    assert r.exit_code == 0, r.output + r.stderr
    report = json.loads((tmp_path / "ov.json").read_text())
    assert report["student"]["latency_source"] == "measured"
    assert report["environment"]["openvino"] and report["student"]["session"]["device"] == "CPU"
    # its report is a stored baseline for the next check of the same IR (OpenVINO reads its threads back as text)
    r = cli("check", ir.path, "--target", "openvino", "--baseline", tmp_path / "ov.json", "--json",
            tmp_path / "again.json", *FAST)
    again = json.loads((tmp_path / "again.json").read_text())
    assert r.exit_code != 2 and again["baseline_mode"] == "stored", r.stderr
    assert _budgets(tmp_path / "again.json")["latency_ms_regression"]["verdict"] != "fail"  # the same IR


def _export_conv(path, channels: int):
    import torch

    torch.onnx.export(torch.nn.Conv2d(channels, 4, 3), (torch.randn(1, channels, 8, 8),), str(path), dynamo=False)
    return path


@pytest.fixture()
def bad_check_inputs(tmp_path, tiny_onnx):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"this is not an onnx file")
    big = digits_like_npz(tmp_path / "big.npz", size=16)
    empty_target = tmp_path / "empty.yaml"
    empty_target.write_text("name: empty\ndescription: no budgets\nprofile: host\nruntime: onnxruntime\n"
                            "precision: fp32\nbudgets: {}\n")
    ov = tmp_path / "m.xml"
    ov.write_text("<net/>")
    other_input = _export_conv(tmp_path / "rgb.onnx", channels=3)
    broken_json = tmp_path / "broken.json"
    broken_json.write_text("{not json")
    base = [tiny_onnx, "--target", "host-cpu"]
    return {
        "not onnx": ([corrupt, "--target", "host-cpu"], "not a valid ONNX model"),
        "missing model": ([tmp_path / "nope.onnx", "--target", "host-cpu"], "file not found"),
        "wrong input shape for the data": ([*base, "--data", big], "gives 1x16x16 inputs but MODEL"),
        "unknown target": ([tiny_onnx, "--target", "jetsonn"], "unknown target 'jetsonn'"),
        "missing baseline": ([*base, "--baseline", tmp_path / "gone.json"], "--baseline"),
        "baseline not a report": ([*base, "--baseline", big], "neither a report.json nor a model"),
        "baseline json not a report": ([*base, "--baseline", broken_json], "not a JSON report"),
        "drop without reference": ([*base, "--max-accuracy-drop", "1"], "--max-accuracy-drop: needs --data"),
        "nothing to check": ([tiny_onnx, "--target", empty_target], "nothing to check"),
        "ir for onnxruntime": ([ov, "--target", "host-cpu"], "is a openvino artifact"),
        "remote not ssh": ([*base, "--remote", "http://pi@edge"], "--remote 'http://pi@edge': expected ssh://"),
        "remote p90": ([*base, "--remote", "ssh://pi@edge", "--statistic", "p90"], "with --remote the device's"),
        "bad statistic": ([*base, "--statistic", "p77"], "--statistic: input should be 'p50' or 'p90'"),
        "bad regression": ([*base, "--max-regression", "lots"], "--max-regression 'lots'"),
        "speed-up without reference": ([*base, "--min-speedup", "2"], "--min-speedup: needs --reference"),
        "a/b baseline of other inputs": ([*base, "--baseline", other_input], "takes inputs 3x8x8 but MODEL takes"),
        "a/b baseline missing": ([*base, "--baseline", tmp_path / "old.onnx"], "--baseline"),
    }


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(tmp_path, bad_check_inputs):
    kept = tmp_path / "kept.json"
    kept.write_text('{"earlier": "report"}')
    for name, (args, expected) in bad_check_inputs.items():
        r = cli("check", *args, "--json", kept, "--junit", tmp_path / "new.xml")
        assert r.exit_code == 2, f"{name}: exit {r.exit_code}\n{r.output}{r.stderr}"
        assert expected in r.stderr and "Traceback" not in r.stderr, f"{name}: {r.stderr}"
        assert len(_lines(r.stderr)) == 1, f"{name}: {r.stderr}"
    assert kept.read_text() == '{"earlier": "report"}' and not (tmp_path / "new.xml").exists()
