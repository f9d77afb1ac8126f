"""What each stage hands to the next (and to the report): frozen, typed, and each one saved in the run
folder, so a stage command (`edgekd distill --out D`, `edgekd compile --out D`) loads its predecessor's
result from the RunDir instead of parsing the files itself. docs/architecture.md shows how they chain."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from edgekd.errors import InputError
from edgekd.figures import Figure, Figures
from edgekd.parity import Parity
from edgekd.report import BudgetResult
from edgekd.rundir import RunDir
from edgekd.runtimes import Artifact


def _read_json(run: RunDir, path: Path, then: str) -> dict:
    """A stage's record in the run folder; missing, the bad input names the stage command to `then` run."""
    if not path.is_file():
        raise InputError(f"--out {run.root}: no {path.relative_to(run.root)}; run `edgekd {then}")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not readable JSON ({e}); run the stage that writes it again") from None


@dataclass(frozen=True)
class SearchResult:
    """The pick (OUT/search/search.json holds every candidate). A pick given by hand (`distill --arch`) has
    no index and no teacher latency."""

    pick: dict
    pick_index: int | None = None
    teacher_latency_ms: float | None = None  # predicted, at the runtime's float precision
    skipped: str = ""
    score: str = ""  # the search score that ranked the candidates (--score)
    scores_available: tuple[str, ...] = ()  # what --score could have been (none where the search has no choice)
    considered: tuple[dict, ...] = ()  # the candidates the pick was chosen among: see considered()

    @classmethod
    def from_record(cls, record: dict) -> SearchResult:
        return cls(record["pick"], record.get("pick_index"), teacher_latency(record), score=record.get("score", ""),
                   scores_available=tuple(record.get("scores_available") or ()), considered=considered(record))

    @classmethod
    def load(cls, run: RunDir) -> SearchResult:
        record = _read_json(run, run.search_json, f"search --out {run.root}` or pass --arch")
        if not record.get("pick"):
            raise InputError(f"{run.search_json}: the search picked no student; search again or pass --arch")
        return cls.from_record(record)


CONSIDERED_FIELDS = ("index", "space", "arch", "params", "flops", "score", "scores", "latency_ms")


def considered(record: dict) -> tuple[dict, ...]:
    """The candidates the pick was chosen among, best-ranked first: the top-k by score, then any other one
    timed; each with its scores, its predicted latency and, where timed, its measured speed-up, so a user
    sees why this student was picked (report.json `search`)."""
    candidates = [c for c in record.get("candidates") or [] if isinstance(c, dict)]
    by_index = {c.get("index"): c for c in candidates}
    timed = [c.get("index") for c in candidates if isinstance(c.get("measured"), dict)]
    rows = []
    for i in dict.fromkeys([*(record.get("top_k") or []), *timed]):
        c = by_index.get(i)
        if c is None:  # an edited record: what it does not hold is left out, not invented
            continue
        row = {k: c[k] for k in CONSIDERED_FIELDS if k in c} | {"latency_source": "predicted",
                                                                  "picked": i == record.get("pick_index")}
        if isinstance(c.get("measured"), dict):
            row |= {"measured_speedup": c["measured"].get("speedup"),
                    "measured_speedup_interval": list(c["measured"].get("speedup_interval") or [])}
        rows.append(row)
    return tuple(rows)


def teacher_latency(record: dict) -> float | None:
    """The teacher's predicted latency from a search record (also one the failed search wrote)."""
    limits = record.get("limits") if isinstance(record, dict) else None
    predicted = limits.get("teacher_latency_ms") if isinstance(limits, dict) else None
    value = predicted.get("value") if isinstance(predicted, dict) else None
    return float(value) if value is not None else None


@dataclass(frozen=True)
class ScratchBaseline:
    """The same student trained on labels alone with the same budget (`--baseline-scratch`)."""

    torch_accuracy: float
    gain_points: float  # distilled minus scratch torch accuracy, points


@dataclass(frozen=True)
class DistillResult:
    """The distilled student (OUT/distill/student.json is `info`; the weights lie beside it)."""

    arch: dict
    params: int
    method: str
    epochs: int
    torch_accuracy: float
    batch_size_used: int
    accuracy_drop: float  # points, torch accuracy vs the teacher's
    info: dict = field(repr=False)  # the whole record as written
    scratch: ScratchBaseline | None = None
    skipped: str = ""

    @classmethod
    def from_info(cls, info: dict) -> DistillResult:
        scratch = info.get("scratch")
        return cls(info["arch"], info["params"], info["method"], info["epochs"], info["torch_accuracy"],
                   info["batch_size_used"], info["accuracy_drop"], info,
                   ScratchBaseline(scratch["torch_accuracy"], scratch["gain_points"]) if scratch else None)

    @classmethod
    def load(cls, run: RunDir) -> DistillResult:
        return cls.from_info(_read_json(run, run.student_json, f"distill --out {run.root}` first"))


@dataclass(frozen=True)
class ExportResult:
    """Student and teacher as ONNX (OUT/export/export.json): the teacher's is the one given when it was ONNX."""

    student_onnx: Path
    teacher_onnx: Path
    arch: dict  # the student's, which the check prices where the runtime does not run here
    student_parity: Parity
    teacher_parity: Parity | None = None  # None for an ONNX teacher (nothing was converted)
    skipped: str = ""

    def to_json(self) -> dict:
        d = {"student": str(self.student_onnx), "student_parity": self.student_parity.as_dict(),
             "teacher": str(self.teacher_onnx), "arch": self.arch}
        return d | ({"teacher_parity": self.teacher_parity.as_dict()} if self.teacher_parity else {})

    @classmethod
    def from_json(cls, d: dict) -> ExportResult:
        teacher_parity = d.get("teacher_parity")
        return cls(Path(d["student"]), Path(d["teacher"]), d["arch"], Parity.from_dict(d["student_parity"]),
                   Parity.from_dict(teacher_parity) if teacher_parity else None)

    def save(self, run: RunDir) -> None:
        run.export_json.write_text(json.dumps(self.to_json(), indent=2))

    @classmethod
    def load(cls, run: RunDir) -> ExportResult:
        return cls.from_json(_read_json(run, run.export_json, f"export --out {run.root}` first"))


@dataclass(frozen=True)
class Alternative:
    """The teacher compressed without distillation on the target's runtime (the compile stage builds it and
    measures its accuracy; the check stage adds its latency, memory and speed-up over the fp32 teacher)."""

    artifact: Artifact
    precision: str
    accuracy: float  # through its runtime, held-out split
    accuracy_drop: float  # points below the teacher as supplied
    figures: Figures = field(default_factory=Figures)
    speedup: Figure | None = None  # fp32 teacher / this, timed interleaved beside the student
    quality: dict = field(default_factory=dict)  # a text model's: mean cosine, neighbour agreement (edgekd/text)
    student_speedup: Figure | None = None  # this / the student, timed as a pair (measured here only)

    def as_dict(self) -> dict:
        """Its report record (without the artifact, which the report names by path)."""
        out = {"accuracy": self.accuracy} | self.quality | self.figures.as_dict() | {
            "accuracy_drop": self.accuracy_drop, "precision": self.precision}
        if self.speedup is not None:
            out |= {"speedup": self.speedup.value,
                    "speedup_interval": list(self.speedup.interval) if self.speedup.interval else None}
        if self.student_speedup is not None:
            out["student_speedup_over_it"] = self.student_speedup.as_dict()
        return out


@dataclass(frozen=True)
class CompileResult:
    """The shipped student artifact, the fp32 teacher on the same runtime, and the teacher compressed alone
    (`alternatives`). `record` is OUT/compile/compile.json (lint,
    precision guard, parity). Skipped (runtime not here): the ONNX model is the artifact."""

    student: Artifact
    teacher: Artifact | None
    record: dict
    alternatives: dict[str, Alternative]
    export: ExportResult  # the ONNX models compiled, which the check stage prices and falls back to
    skipped: str = ""


@dataclass(frozen=True)
class CheckedModel:
    """One model as the check stage found it: quality on the held-out split and its figures on the target.
    `as_dict` gives its fields in the report (report.student / report.teacher)."""

    accuracy: float
    figures: Figures
    evaluated_with: str = ""  # runtime and precision the accuracy was measured through
    session: dict = field(default_factory=dict)  # the runtime's session settings, in the runtime's own names
    # A text model's quality (mean cosine, neighbour agreement), sequence length and task; on --remote, the
    # device's state and address.
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        out = {"accuracy": self.accuracy} | ({"evaluated_with": self.evaluated_with} if self.evaluated_with else {})
        out |= self.figures.as_dict() | ({"session": self.session} if self.session else {})
        return out | self.details


@dataclass(frozen=True)
class CheckResult:
    student: CheckedModel  # the shipped artifact
    teacher: CheckedModel  # fp32, on the same runtime
    speedup: Figure  # teacher latency / student latency, measured or predicted
    budgets: list[BudgetResult]
    alternatives: dict[str, Alternative]  # the teacher compressed without distillation, with its figures
    skipped: str = ""
