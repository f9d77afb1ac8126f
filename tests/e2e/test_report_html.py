"""report.html in a real browser (headless Chromium over DevTools): it draws every chart without console
errors or network requests, and shows the numbers report.json holds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from browser import Chromium, find_chromium
from conftest import assert_exit_is_verdict, cli

from edgekd.report_html import fmt, render_html, write_html

READY = "document.getElementById('edgekd-status') && document.getElementById('edgekd-status').dataset.done === '1'"
INSPECT = """JSON.stringify({
  status: Object.assign({}, document.getElementById('edgekd-status').dataset),
  statusText: document.getElementById('edgekd-status').textContent,
  charts: Array.from(document.querySelectorAll('div.chart')).map(d => ({
    name: d.dataset.chart, svg: d.querySelectorAll('svg.main-svg').length,
    marks: d.querySelectorAll('g.point path, path.point, path.js-line').length,
    patterns: d.querySelectorAll('pattern').length, text: d.textContent})),
  values: Array.from(document.querySelectorAll('td.value')).map(td => [td.dataset.budget, td.textContent]),
  limits: Array.from(document.querySelectorAll('td.limit')).map(td => [td.dataset.budget, td.textContent]),
  sides: Array.from(document.querySelectorAll('td[data-side]')).map(td => [td.dataset.side + '.' + td.dataset.key,
                                                                         td.textContent]),
  speedup: (document.getElementById('speedup') || {}).textContent,
  verdict: document.getElementById('verdict').dataset.verdict,
  notAvailable: Array.from(document.querySelectorAll('.na')).map(p => p.textContent),
  renderErrors: document.querySelectorAll('.render-error').length,
  width: document.documentElement.scrollWidth})"""


def inspect_page(page: Path, tmp_path: Path, shot: str) -> dict:
    exe = find_chromium()
    with Chromium(exe, tmp_path / "chromium-profile") as browser:
        browser.open(page.resolve().as_uri(), READY)
        info = json.loads(browser.evaluate(INSPECT))
        info["console_errors"] = browser.console_errors()
        info["urls"] = browser.requested_urls()
        info["screenshot"] = browser.screenshot(tmp_path / shot)
    print(f"screenshot of {page.name}: {info['screenshot']}")
    return info


def assert_drawn(info: dict, charts: set[str]) -> None:
    assert info["console_errors"] == []
    assert info["status"]["errors"] == "0", info["statusText"]
    assert info["renderErrors"] == 0
    # self-contained: nothing fetched beyond the page itself
    assert [u for u in info["urls"] if not u.startswith(("file:", "data:", "blob:", "about:"))] == []
    assert {c["name"] for c in info["charts"]} == charts
    for c in info["charts"]:
        assert c["svg"] >= 1 and c["marks"] > 0, f"chart {c['name']} drew nothing"
    assert info["status"]["drawn"] == str(len(charts))
    assert info["width"] <= 1280, "the page scrolls sideways on a laptop screen"
    png = info["screenshot"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


@pytest.mark.slow
def test_build_report_renders_in_chromium_with_report_json_figures(host_build, tmp_path):
    report = json.loads((host_build / "report.json").read_text())
    assert all(s["status"] == "passed" for s in report["stages"]), report["stages"]
    info = inspect_page(host_build / "report.html", tmp_path, "build-report.png")
    assert_drawn(info, {"budgets", "latency", "search", "history", "kernels"})

    assert dict(info["values"]) == {b["name"]: fmt(b["value"]) for b in report["budgets"]}
    assert dict(info["limits"]) == {b["name"]: fmt(b["limit"]) for b in report["budgets"]}
    budget_chart = next(c for c in info["charts"] if c["name"] == "budgets")
    for b in report["budgets"]:  # the bars carry the same figures as the table
        assert fmt(b["value"]) in budget_chart["text"]
        assert f"limit {fmt(b['limit'])}" in budget_chart["text"]
    sides = dict(info["sides"])
    for who in ("teacher", "student"):
        for key in ("accuracy", "memory_mb", "params"):
            assert sides[f"{who}.{key}"] == fmt(report[who][key])
    assert info["speedup"].startswith(f"{report['student']['speedup']['value']:.2f}x")  # the pair's own ratio
    assert info["verdict"] == ("pass" if report["passed"] else "fail")
    search = json.loads((host_build / "search" / "search.json").read_text())
    scatter = next(c for c in info["charts"] if c["name"] == "search")
    assert scatter["marks"] >= sum(c.get("score") is not None for c in search["candidates"])
    # why this student: the score that ranked the candidates and each considered one's scores, the pick marked
    chosen = report["search"]
    assert chosen["score"] == search["score"] and set(chosen["scores_available"]) >= {"flops", "zico", "diswot"}
    picked = [c for c in chosen["considered"] if c["picked"]]
    assert [c["index"] for c in picked] == [search["pick_index"]]
    pick = next(c for c in search["candidates"] if c["index"] == search["pick_index"])
    assert picked[0]["scores"] == pick["scores"] and picked[0]["measured_speedup"] == pick["measured"]["speedup"]
    assert f"<b>pick</b> #{search['pick_index']}" in (host_build / "report.html").read_text()


def stopped_build_report() -> dict:
    """A build that failed in compile: an open budget, a predicted speed-up with its band, no search files."""
    return {"schema": "edgekd.report/1", "passed": False,
            "target": {"name": "jetson", "profile": "jetson-orin", "runtime": "tensorrt", "precision": "int8"},
            "teacher": {"source": "t.onnx", "params": 1000, "accuracy": 0.9, "latency_ms": 4.0},
            "student": {"arch": {"family": "resnet"}, "params": 100},
            "budgets": [{"name": "latency_ms", "limit": 5.0, "value": 6.5, "source": "predicted",
                         "interval": [2.2, 19.5], "passed": False, "verdict": "inconclusive"},
                        {"name": "memory_mb", "limit": 64, "value": None, "source": "predicted", "passed": None,
                         "detail": "not reached: compile failed"},
                        {"name": "speedup", "limit": 3.0, "value": 4.2, "source": "predicted",
                         "interval": [3.9, 4.5], "passed": True}],
            "stages": [{"name": "search", "status": "passed", "seconds": 1.0, "reason": ""},
                       {"name": "compile", "status": "failed", "seconds": 0.1, "reason": "no TensorRT </script>"}],
            "artifacts": {}, "environment": {"edgekd": "0.1.0", "tensorrt": ""}, "seed": 0}


def test_stopped_build_page_says_what_is_missing_and_hatches_predictions(tmp_path):
    page = write_html(stopped_build_report(), tmp_path / "report.html", tmp_path)
    info = inspect_page(page, tmp_path, "stopped-report.png")
    assert_drawn(info, {"budgets"})
    assert info["verdict"] == "fail"
    assert dict(info["values"]) == {"latency_ms": "6.5", "memory_mb": "-", "speedup": "4.2"}
    budget_chart = info["charts"][0]
    assert budget_chart["patterns"] > 0, "predicted bars are not hatched"
    assert "4.2 predicted" in budget_chart["text"] and "limit 3" in budget_chart["text"]
    missing = " ".join(info["notAvailable"])
    for what in ("search candidates", "training history", "per-kernel cost", "precision guard"):
        assert what in missing


def test_any_report_renders_without_crashing():
    for report in ({}, {"budgets": [{"name": "x"}], "stages": [{}], "teacher": None, "student": {"compile": 3}},
                   stopped_build_report()):
        page = render_html(report, Path("/nonexistent"))
        assert "could not be drawn" not in page and "not available" in page


def test_check_html_is_written_for_the_gate(tiny_onnx, tmp_path):
    page = tmp_path / "gate" / "check.html"
    result = cli("check", tiny_onnx, "--target", "host-cpu", "--input-size", "8,8", "--mean", "0", "--std", "1",
                 "--max-seconds", "1", "--html", page, "--json", tmp_path / "check.json")
    report = assert_exit_is_verdict(result, tmp_path / "check.json")
    text = page.read_text()
    assert "Reference vs model" in text and "search candidates" in text
    latency = next(b for b in report["budgets"] if b["name"] == "latency_ms")
    assert f'data-budget="latency_ms">{fmt(latency["value"])}</td>' in text


@pytest.mark.slow
def test_report_command_redraws_from_edited_report_json(host_build, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(host_build, run)
    for name in ("report.md", "report.html", "junit.xml"):
        (run / name).unlink()
    report = json.loads((run / "report.json").read_text())
    latency = next(b for b in report["budgets"] if b["name"] == "latency_ms")
    latency["limit"], latency["passed"] = latency["value"] / 2, False  # a tool tightened the budget
    (run / "report.json").write_text(json.dumps(report))
    result = cli("report", run)
    assert result.exit_code == 1, result.output + result.stderr
    assert "FAILED" in (run / "report.md").read_text()
    assert 'name="latency_ms"><properties>' in (run / "junit.xml").read_text()
    assert "<failure" in (run / "junit.xml").read_text()
    assert f'data-budget="latency_ms">{fmt(latency["limit"])}</td>' in (run / "report.html").read_text()
    assert cli("report", tmp_path / "missing").exit_code == 2
