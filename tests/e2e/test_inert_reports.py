"""Reports are inert: strings from files (a target's name, a stage's reason, a note, a budget's source, all of
which `edgekd report` reads back from report.json) never run as script in report.html, never render as HTML
or a table cell in report.md, never make junit.xml unparseable, and never drive the terminal (rich markup,
escape sequences)."""

from __future__ import annotations

import json
import re
from xml.etree import ElementTree as ET

from browser import Chromium, find_chromium
from conftest import cli

SCRIPT = "<script>window.__edgekd_pwned = 1</script>"
IMG = '<img src=x onerror="window.__edgekd_pwned = 2">'
CLOSE = "</script><script>window.__edgekd_pwned = 3</script>"
CONTROL = "nul\x00 esc\x1b]0;owned\x07 bel\x07 csi\x1b[31m"
MARKUP = "[/x] [red]red[/red] [link=http://x]l[/link]"


def hostile_report() -> dict:
    every = f"{SCRIPT} {IMG} {CLOSE} {CONTROL} {MARKUP} a|b `code` *em*"
    return {"schema": "edgekd.report/1", "passed": False,
            "target": {"name": every, "profile": every, "runtime": every, "precision": every},
            "teacher": {"source": every, "params": 1000, "accuracy": 0.9, "latency_ms": 4.0},
            "student": {"arch": {"family": every}, "params": 100, "accuracy": 0.8, "latency_ms": 1.0},
            "budgets": [{"name": "latency_ms", "limit": 5.0, "value": 6.5, "source": every,
                         "interval": [6.0, 7.0], "passed": False, "verdict": "fail", "detail": every},
                        {"name": every, "limit": None, "value": 1.0, "source": every, "passed": True,
                         "detail": every}],
            "stages": [{"name": every, "status": "failed", "seconds": 0.1, "reason": every}],
            "artifacts": {every: every}, "environment": {"edgekd": every, every: every}, "seed": 0,
            "notes": [every], "preprocessing": {"mean": every}}


def test_a_report_full_of_hostile_strings_stays_inert(tmp_path):
    run = tmp_path / "run [red]x"  # a folder name that is rich markup
    run.mkdir()
    (run / "report.json").write_text(json.dumps(hostile_report()))
    r = cli("report", run)
    assert r.exit_code == 1, r.output + r.stderr  # the latency budget failed: exit follows the figures
    assert "Traceback" not in r.output + r.stderr and "MarkupError" not in r.output + r.stderr

    # terminal: markup shown as typed, no escape sequence or bell reaches it
    assert "[/x] [red]red[/red]" in r.output
    assert not re.search("[\x00\x07\x1b]", r.output + r.stderr), repr(r.output)
    assert "\\x1b]0;owned\\x07" in r.output  # shown escaped instead

    # junit.xml: well-formed, no control characters, the strings kept as text
    suite = ET.parse(run / "junit.xml").getroot()
    assert suite.get("failures") == "2"  # the latency budget and the failed stage
    assert "<script>" in suite.get("name") and "\x00" not in (run / "junit.xml").read_text()

    # report.md: no raw tag a Markdown viewer would render, no cell split by a name's |
    md = (run / "report.md").read_text()
    assert not re.search(r"<\s*(script|img|/script)", md, re.I), md
    assert "&lt;script&gt;" in md and "a\\|b" in md and "\x1b" not in md and "\x00" not in md
    budget_rows = [ln for ln in md.splitlines() if ln.startswith("| latency_ms ")]
    assert len(budget_rows) == 1 and len(re.findall(r"(?<!\\)\|", budget_rows[0])) == 7  # 6 cells

    # report.html in a browser: no script from the strings ran, nothing fetched (the <img src=x>)
    page = run / "report.html"
    text = page.read_text()
    assert SCRIPT not in text and IMG not in text and CLOSE not in text
    with Chromium(find_chromium(), tmp_path / "profile") as browser:
        browser.open(page.resolve().as_uri(), "document.readyState === 'complete'")
        assert browser.evaluate("window.__edgekd_pwned === undefined") is True
        assert browser.evaluate("document.querySelectorAll('img[onerror]').length") == 0
        assert not [u for u in browser.requested_urls() if not u.startswith(("file:", "data:", "blob:", "about:"))]


def test_error_lines_show_control_characters_escaped(tmp_path, tiny_onnx):
    """A class folder named with terminal escape sequences (set the title, recolour the log) reaches stderr as
    visible escapes in the one error line."""
    data = tmp_path / "imgs"
    (data / "ok").mkdir(parents=True)
    (data / "\x1b]0;owned\x07\x1b[31m").mkdir()
    from PIL import Image

    Image.new("L", (8, 8)).save(data / "ok" / "0.png")
    r = cli("build", "--out", tmp_path / "out", "--teacher", tiny_onnx, "--data", data)
    assert r.exit_code == 2 and "Traceback" not in r.stderr, r.stderr
    assert "\x1b" not in r.stderr and "\x07" not in r.stderr and "\\x1b]0;owned\\x07" in r.stderr, repr(r.stderr)
