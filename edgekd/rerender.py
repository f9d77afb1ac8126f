"""`edgekd report DIR`: report.md, junit.xml and report.html redrawn from a run's report.json, and opening
the page where someone can look at it.

report.json is the record; the other three are views of it. Redrawing them lets an old run get the current
page, and lets a tool that edits a budget's limit in report.json regenerate the verdicts people read.
"""

from __future__ import annotations

import os
import sys
import webbrowser
from dataclasses import fields
from pathlib import Path

from edgekd.errors import InputError
from edgekd.gate.verdict import recheck
from edgekd.report import BudgetResult, Report, StageRecord, read_report_json, write_outputs
from edgekd.report_html import fmt
from edgekd.rundir import RunDir

KNOWN = {"schema", "passed", "target", "teacher", "student", "budgets", "stages", "artifacts", "environment",
         "seed", "notes"}


def _only_fields(cls, d: dict) -> dict:
    # Keys a newer or older edgekd wrote that this one does not know are left out, not fatal.
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}


def report_from_dict(d: dict) -> Report:
    """A Report whose to_dict() gives back `d` (the verdict recomputed from the budgets and stages)."""
    budgets = []
    for b in d.get("budgets") or []:
        b = _only_fields(BudgetResult, b)
        b.setdefault("detail", "")
        if isinstance(b.get("interval"), list):
            b["interval"] = tuple(b["interval"])
        budgets.append(BudgetResult(**b))
    stages = [StageRecord(**_only_fields(StageRecord, s)) for s in d.get("stages") or []]
    # a gate report (no search stage) labels its two sides as edgekd check does
    roles = ("teacher", "student") if any(s.name == "search" for s in stages) else ("reference", "model")
    return Report(target=d.get("target") or {}, seed=d.get("seed", 0), teacher=d.get("teacher") or {},
                  student=d.get("student") or {}, budgets=budgets, stages=stages, artifacts=d.get("artifacts") or {},
                  environment=d.get("environment") or {}, extra={k: v for k, v in d.items() if k not in KNOWN},
                  notes=list(d.get("notes") or []), roles=roles)


def rerender(run: Path) -> Report:
    """Rewrite report.md, junit.xml and report.html in `run` (a folder, or its report.json).

    The stored verdicts are not trusted: each budget's is decided again from its value, limit and interval
    (gate.verdict.recheck), and where that differs from the stored one the redrawn report says so in a note.
    The exit code follows the figures, so an edited report.json cannot turn a failed budget into a pass,
    and an edited limit gives the verdict that follows from it."""
    path = RunDir(run).report_json if run.is_dir() else run
    if not path.is_file():
        raise InputError(f"{run}: no report.json here; give a build's --out folder or a report.json")
    d = read_report_json(path, str(path))
    if not isinstance(d.get("budgets", []), list) or not all(isinstance(b, dict) for b in d.get("budgets") or []) \
            or not all(isinstance(s, dict) for s in d.get("stages") or []):
        raise InputError(f"{path}: not an edgekd report (schema edgekd.report/1)")
    for key in ("target", "teacher", "student", "artifacts", "environment"):
        if d.get(key) is not None and not isinstance(d[key], dict):
            raise InputError(f"{path}: field '{key}' is {type(d[key]).__name__}, not an object; not an edgekd report")
    for b in d.get("budgets") or []:
        _check_budget(b, path)
    try:
        report = report_from_dict(d)
    except (TypeError, ValueError) as e:
        raise InputError(f"{path}: a budget or stage lacks a field ({e})") from None
    for i, stored in enumerate(report.budgets):
        try:
            b = recheck(stored)
        except InputError as e:
            raise InputError(f"{path}: {e}") from None
        if (b.verdict or _stored(b)) != (stored.verdict or _stored(stored)):
            report.notes.append(f"{b.name}: stored as {stored.verdict or _stored(stored)}, but {fmt(b.value)} "
                                f"against limit {fmt(b.limit)} gives {b.verdict}; the verdict is recomputed")
        report.budgets[i] = b
    folder = RunDir(path.parent)
    write_outputs(report, None, folder.report_md, folder.junit_xml, folder.report_html, folder.root)
    return report


def _check_budget(b: dict, path: Path) -> None:
    """The budget's fields have the contract's types (docs/report-contract.md), so a verdict can be decided."""
    name = b.get("name")
    where = f"{path}: budget {name!r}"
    if not isinstance(name, str):
        raise InputError(f"{path}: a budget's 'name' is {name!r}; expected text")
    for key in ("source", "detail", "verdict"):
        if not isinstance(b.get(key, ""), str):
            raise InputError(f"{where}: field '{key}' is {type(b[key]).__name__}; expected text")
    if b.get("passed") is not None and not isinstance(b["passed"], bool):
        raise InputError(f"{where}: field 'passed' is {b['passed']!r}; expected true, false or null")
    iv = b.get("interval")
    if iv is not None and (not isinstance(iv, list) or len(iv) != 2):
        raise InputError(f"{where}: field 'interval' is {iv!r}; expected [low, high] or null")
    for v in (b.get("value"), b.get("limit"), *(iv or ())):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise InputError(f"{where}: {v!r} is not a number; expected numbers for value, limit and interval")


def _stored(b: BudgetResult) -> str:
    return "pass" if b.passed else "fail"


def has_desktop() -> bool:
    """A browser can show a page here: macOS and Windows always, elsewhere only with a display server."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_page(page: Path, console) -> bool:
    """Open the page in the user's browser where a desktop exists; else say where it is (a CI log, ssh)."""
    if has_desktop() and webbrowser.open(page.resolve().as_uri()):
        console.print(f"opened {page}", highlight=False, markup=False)
        return True
    console.print(f"report page: {page} (no desktop here to open it on)", highlight=False, markup=False)
    return False
