"""report.json (the contract in docs/report-contract.md), report.md, junit.xml, and the terminal summary."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

from rich.console import Console
from rich.markup import escape
from rich.table import Table

import edgekd
from edgekd.errors import InputError
from edgekd.figures import Figure
from edgekd.hostinfo import cpu_name, usable_cores
from edgekd.inert import md_code, md_text, printable, xml_text
from edgekd.report_html import render_html
from edgekd.rundir import RunDir

SCHEMA = "edgekd.report/1"


@dataclass
class BudgetResult:
    name: str  # latency_ms | memory_mb | accuracy_drop
    limit: float | None
    value: float | None
    source: str  # measured | predicted
    passed: bool | None  # None: not reached (the run stopped before the stage that checks it)
    interval: tuple[float, float] | None = None
    detail: str = ""
    # pass | fail | inconclusive where a gate decided it from an interval (edgekd check); "" elsewhere.
    verdict: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("interval", "verdict"):
            if not d[key]:
                d.pop(key)
        return d


@dataclass
class StageRecord:
    name: str
    status: str  # passed | failed | skipped
    seconds: float
    reason: str = ""


@dataclass
class Report:
    target: dict
    seed: int
    teacher: dict = field(default_factory=dict)
    student: dict = field(default_factory=dict)
    budgets: list[BudgetResult] = field(default_factory=list)
    stages: list[StageRecord] = field(default_factory=list)
    artifacts: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # preprocessing, distillation settings, ...
    notes: list[str] = field(default_factory=list)  # one-line remarks shown under the budgets in report.md
    roles: tuple[str, str] = ("teacher", "student")  # row labels of report.md (check: reference, model)

    @property
    def passed(self) -> bool:
        """Every stage ran or was skipped with a reason, and every budget was checked and met."""
        stages_ok = all(s.status in ("passed", "skipped") for s in self.stages)
        return bool(self.budgets) and stages_ok and all(b.passed for b in self.budgets)

    @property
    def verdict(self) -> str:
        """pass | fail | inconclusive: inconclusive only when nothing failed outright."""
        if self.passed:
            return "pass"
        failed_stage = any(s.status == "failed" for s in self.stages)
        open_ = [b for b in self.budgets if not b.passed]
        if self.budgets and not failed_stage and open_ and all(b.verdict == "inconclusive" for b in open_):
            return "inconclusive"
        return "fail"

    def to_dict(self) -> dict:
        d = {"schema": SCHEMA, "passed": self.passed, "target": self.target, "teacher": self.teacher,
             "student": self.student, "budgets": [b.to_dict() for b in self.budgets],
             "stages": [asdict(s) for s in self.stages], "artifacts": self.artifacts,
             "environment": self.environment, "seed": self.seed, **self.extra}
        if self.notes:
            d["notes"] = self.notes
        return d


def read_report_json(path: Path, where: str) -> dict:
    """A report.json as a dict; an InputError naming `where` for a missing, unreadable, non-JSON or absurdly
    nested file (json's recursion would otherwise end in a RecursionError traceback)."""
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{where}: file not found; give the report.json of an earlier `edgekd check --json` "
                         "or `edgekd build`") from None
    except RecursionError:
        raise InputError(f"{where}: nested too deeply to be a report; give an edgekd report.json") from None
    except (ValueError, OSError) as e:  # JSONDecodeError, UnicodeDecodeError, IsADirectoryError, ...
        raise InputError(f"{where}: not a JSON report ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(d, dict):
        raise InputError(f"{where}: not an edgekd report (a JSON {type(d).__name__}, expected an object)")
    return d


def environment(versions: dict[str, str]) -> dict:
    env = {"edgekd": edgekd.__version__, "python": platform.python_version(),
           "host": f"{platform.node()} ({cpu_name()}, {usable_cores()} cores, {platform.machine()})"}
    for module in ("torch", "onnx", "onnxruntime", "openvino"):
        try:
            env[module] = __import__(module).__version__
        except ImportError:
            env[module] = ""
    return env | versions


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def _interval(b: BudgetResult) -> str:
    return f"{b.interval[0]:.4g} .. {b.interval[1]:.4g}" if b.interval else ""


RESULT_MD = {"pass": "pass", "fail": "**FAIL**", "inconclusive": "**INCONCLUSIVE**", "not reached": "not reached"}


def _outcome(b: BudgetResult) -> str:
    """pass | fail | inconclusive | not reached (passed is None: the run stopped before the budget's stage)."""
    return "not reached" if b.passed is None else b.verdict or ("pass" if b.passed else "fail")
HEADLINE = {"pass": "PASSED", "fail": "FAILED", "inconclusive": "INCONCLUSIVE"}


def to_markdown(report: Report) -> str:
    """Every string is md_text'd: report.json (what `edgekd report` redraws) and a target's name are files a
    Markdown viewer would otherwise render as HTML (docs/report-contract.md)."""
    d = report.to_dict()
    t = d["target"]
    m = md_text
    lines = [f"## edgekd: {HEADLINE[report.verdict]} on {md_code(t.get('name'))} ({m(t.get('runtime'))}, "
             f"{m(t.get('precision'))})",
             "",
             "| budget | value | limit | source | interval | result |", "|---|---|---|---|---|---|"]
    for b in report.budgets:
        result = RESULT_MD[_outcome(b)]
        lines.append(f"| {m(b.name)} | {m(_fmt(b.value))} | {m(_fmt(b.limit))} | {m(b.source)} | {_interval(b)} "
                     f"| {result} |")
    if report.notes:
        lines += [""] + [f"- {m(note)}" for note in report.notes]
    rows = [(label, d[who]) for who, label in zip(("teacher", "student"), report.roles, strict=True)
            if d[who].get("accuracy") is not None or d[who].get("latency_ms") is not None]
    if rows:
        lines += ["", "| | accuracy | latency_ms | params |", "|---|---|---|---|"]
        for label, w in rows:
            lines.append(f"| {label} | {m(_fmt(w.get('accuracy')))} | {m(_fmt(w.get('latency_ms')))} "
                         f"({m(w.get('latency_source', '-'))}) | {m(_fmt(w.get('params')))} |")
    if report.stages:
        lines += ["", "| stage | status | seconds | reason |", "|---|---|---|---|"]
        lines += [f"| {m(s.name)} | {m(s.status)} | {_seconds(s.seconds)} | {m(s.reason)} |" for s in report.stages]
    return "\n".join(lines) + "\n"


def _seconds(v) -> str:
    return f"{v:.1f}" if isinstance(v, (int, float)) else md_text(v)


def to_junit(report: Report) -> str:
    """One testcase per budget (value, limit, interval as properties and in the message) and one per
    failed stage. An inconclusive budget is an <error>, not a <failure>: nothing was shown to be wrong.
    Every string goes through xml_text: a control character from a name would make the file unparseable."""
    x = xml_text
    failures = sum(b.passed is False and b.verdict != "inconclusive" for b in report.budgets)
    failures += sum(s.status == "failed" for s in report.stages)
    errors = sum(not b.passed and b.verdict == "inconclusive" for b in report.budgets)
    suite = ET.Element("testsuite", name=x(f"edgekd.{report.target.get('name')}"),
                       tests=str(len(report.budgets) + sum(s.status == "failed" for s in report.stages)),
                       failures=str(failures), errors=str(errors))
    for b in report.budgets:
        case = ET.SubElement(suite, "testcase", classname="edgekd.budgets", name=x(b.name))
        props = ET.SubElement(case, "properties")
        values = {"value": b.value, "limit": b.limit, "source": b.source, "verdict": b.verdict or None}
        if b.interval:
            values |= {"interval_low": b.interval[0], "interval_high": b.interval[1]}
        for key, v in values.items():
            if v is not None:
                ET.SubElement(props, "property", name=key, value=x(v))
        msg = x(f"{b.name} = {_fmt(b.value)} ({b.source}) limit {_fmt(b.limit)}")
        if b.interval:
            msg += f" interval [{b.interval[0]:.4g}, {b.interval[1]:.4g}]"
        detail = x(b.detail)
        ET.SubElement(case, "system-out").text = msg + (f"; {detail}" if detail else "")
        if b.passed is None:
            ET.SubElement(case, "skipped", message=detail)
        elif not b.passed:
            kind = "error" if b.verdict == "inconclusive" else "failure"
            ET.SubElement(case, kind, message=msg + (f"; {detail}" if detail else ""),
                          type=x(b.verdict or "failure"))
    for s in report.stages:
        if s.status == "failed":
            case = ET.SubElement(suite, "testcase", classname="edgekd.stages", name=x(s.name))
            ET.SubElement(case, "failure", message=x(s.reason))
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)


def write_outputs(report: Report, json_path: Path | None = None, md_path: Path | None = None,
                  junit_path: Path | None = None, html_path: Path | None = None, run_dir: Path | None = None) -> None:
    """Write only the formats asked for, each atomically (a reader never sees half a file).

    The page is drawn from the JSON form (as `edgekd report` redraws it); `run_dir` adds its stage files."""
    for path, render in ((json_path, lambda: json.dumps(report.to_dict(), indent=2, default=str)),
                         (md_path, lambda: to_markdown(report)), (junit_path, lambda: to_junit(report)),
                         (html_path, lambda: render_html(json.loads(json.dumps(report.to_dict(), default=str)),
                                                         run_dir))):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, render())


def write_report(report: Report, out: Path, json_path: Path | None = None, md_path: Path | None = None,
                 junit_path: Path | None = None) -> Path:
    run = RunDir(out)
    json_path = json_path or run.report_json
    write_outputs(report, json_path, md_path or run.report_md, junit_path or run.junit_xml, run.report_html, out)
    return json_path


def print_summary(report: Report, console: Console) -> None:
    # names and notes come from files (report.json, a target's YAML): shown, never read as rich markup
    table = Table(title=f"edgekd {escape(printable(report.target.get('name')))}: {HEADLINE[report.verdict]}")
    for col in ("budget", "value", "limit", "source", "interval", "result"):
        table.add_column(col)
    colours = {"pass": "[green]pass[/]", "fail": "[red]FAIL[/]", "inconclusive": "[yellow]INCONCLUSIVE[/]",
               "not reached": "[dim]not reached[/]"}
    for b in report.budgets:
        table.add_row(*(escape(printable(v)) for v in (b.name, _fmt(b.value), _fmt(b.limit), b.source, _interval(b))),
                      colours[_outcome(b)])
    console.print(table)
    # A verdict of FAILED with every budget passing must say why: a failed stage or audit.
    for stage in report.stages:
        if stage.status == "failed":
            console.print(f"  [red]{escape(printable(stage.name))} failed[/]: {escape(printable(stage.reason))}",
                          highlight=False)
    for note in report.notes:
        console.print(f"  {printable(note)}", highlight=False, markup=False)
    t, s = report.teacher, report.student
    if _number(t.get("accuracy")) and _number(s.get("accuracy")):  # a redrawn report.json may hold anything
        try:
            speed = f", {speedup_text(Figure.from_dict(s['speedup']))}" if s.get("speedup") else ""
            if s.get("speedup_same_precision"):  # the headline is against the fp32 teacher
                same = s["speedup_same_precision"]
                ran = t.get("execution_precision")
                ran = f" (run by the runtime in {printable(str(ran))})" if ran else ""
                speed += (f" vs the teacher at fp32{ran}; {speedup_text(Figure.from_dict(same))} vs the teacher at "
                          f"{printable(str(same['precision']))}")
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):  # not a speed-up record
            speed = ""
        console.print(f"{report.roles[0]} {t['accuracy']:.4f} -> {report.roles[1]} {s['accuracy']:.4f}{speed}")
    if isinstance(report.extra.get("baseline_scratch"), dict) and "summary" in report.extra["baseline_scratch"]:
        console.print(f"{printable(report.extra['baseline_scratch']['summary'])} (torch, same student and budget)",
                      markup=False,
                      highlight=False)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def speedup_text(speedup: Figure) -> str:
    """'4.20x faster [3.90 .. 4.50] (measured)'; a student slower than its teacher is said to be."""
    iv = speedup.interval
    band = f" [{iv[0]:.2f} .. {iv[1]:.2f}]" if iv else ""
    word = "faster" if speedup.value >= 1 else "as fast: SLOWER than the teacher"
    return f"{speedup.value:.2f}x {word}{band} ({speedup.source})"
