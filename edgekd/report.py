"""report.json (the contract in DESIGN.md), report.md, junit.xml, and the terminal summary."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

from rich.console import Console
from rich.table import Table

SCHEMA = "edgekd.report/1"


@dataclass
class BudgetResult:
    name: str  # latency_ms | memory_mb | accuracy_drop
    limit: float | None
    value: float | None
    source: str  # measured | predicted
    passed: bool
    interval: tuple[float, float] | None = None
    detail: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.interval is None:
            d.pop("interval")
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

    @property
    def passed(self) -> bool:
        """Every stage ran or was skipped with a reason, and every budget was checked and met."""
        stages_ok = all(s.status in ("passed", "skipped") for s in self.stages)
        return bool(self.budgets) and stages_ok and all(b.passed for b in self.budgets)

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "passed": self.passed, "target": self.target, "teacher": self.teacher,
                "student": self.student, "budgets": [b.to_dict() for b in self.budgets],
                "stages": [asdict(s) for s in self.stages], "artifacts": self.artifacts,
                "environment": self.environment, "seed": self.seed, **self.extra}


def environment(versions: dict[str, str]) -> dict:
    import edgekd
    from edgekd.hostinfo import cpu_name, usable_cores

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


def to_markdown(report: Report) -> str:
    d = report.to_dict()
    verdict = "PASSED" if d["passed"] else "FAILED"
    t = d["target"]
    lines = [f"## edgekd: {verdict} on `{t.get('name')}` ({t.get('runtime')}, {t.get('precision')})", "",
             "| budget | value | limit | source | interval | result |", "|---|---|---|---|---|---|"]
    for b in report.budgets:
        iv = f"{b.interval[0]:.4g} .. {b.interval[1]:.4g}" if b.interval else ""
        lines.append(f"| {b.name} | {_fmt(b.value)} | {_fmt(b.limit)} | {b.source} | {iv} | "
                     f"{'pass' if b.passed else '**FAIL**'} |")
    lines += ["", "| | accuracy | latency_ms | params |", "|---|---|---|---|"]
    for who in ("teacher", "student"):
        w = d[who]
        lines.append(f"| {who} | {_fmt(w.get('accuracy'))} | {_fmt(w.get('latency_ms'))} "
                     f"({w.get('latency_source', '-')}) | {_fmt(w.get('params'))} |")
    lines += ["", "| stage | status | seconds | reason |", "|---|---|---|---|"]
    lines += [f"| {s.name} | {s.status} | {s.seconds:.1f} | {s.reason} |" for s in report.stages]
    return "\n".join(lines) + "\n"


def to_junit(report: Report) -> str:
    """One testcase per budget (value, limit, interval in the message) and one per failed stage."""
    failures = sum(not b.passed for b in report.budgets) + sum(s.status == "failed" for s in report.stages)
    suite = ET.Element("testsuite", name=f"edgekd.{report.target.get('name')}",
                       tests=str(len(report.budgets) + sum(s.status == "failed" for s in report.stages)),
                       failures=str(failures))
    for b in report.budgets:
        case = ET.SubElement(suite, "testcase", classname="edgekd.budgets", name=b.name)
        msg = f"{b.name} = {_fmt(b.value)} ({b.source}) limit {_fmt(b.limit)}"
        if b.interval:
            msg += f" interval [{b.interval[0]:.4g}, {b.interval[1]:.4g}]"
        ET.SubElement(case, "system-out").text = msg + (f"; {b.detail}" if b.detail else "")
        if not b.passed:
            ET.SubElement(case, "failure", message=msg)
    for s in report.stages:
        if s.status == "failed":
            case = ET.SubElement(suite, "testcase", classname="edgekd.stages", name=s.name)
            ET.SubElement(case, "failure", message=s.reason)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)


def write_report(report: Report, out: Path, json_path: Path | None = None, md_path: Path | None = None,
                 junit_path: Path | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    json_path = json_path or out / "report.json"
    _atomic_write(json_path, json.dumps(report.to_dict(), indent=2, default=str))
    _atomic_write(md_path or out / "report.md", to_markdown(report))
    _atomic_write(junit_path or out / "junit.xml", to_junit(report))
    return json_path


def print_summary(report: Report, console: Console) -> None:
    table = Table(title=f"edgekd {report.target.get('name')}: {'PASSED' if report.passed else 'FAILED'}")
    for col in ("budget", "value", "limit", "source", "result"):
        table.add_column(col)
    for b in report.budgets:
        table.add_row(b.name, _fmt(b.value), _fmt(b.limit), b.source,
                      "[green]pass[/]" if b.passed else "[red]FAIL[/]")
    console.print(table)
    t, s = report.teacher, report.student
    if t.get("accuracy") is not None and s.get("accuracy") is not None:
        speed = ""
        if t.get("latency_ms") and s.get("latency_ms"):
            speed = f", {t['latency_ms'] / s['latency_ms']:.1f}x faster ({s.get('latency_source')})"
        console.print(f"teacher {t['accuracy']:.4f} -> student {s['accuracy']:.4f}{speed}")
