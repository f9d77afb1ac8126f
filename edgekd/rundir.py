"""The run folder OUT: RunDir names every path in it (docs/architecture.md shows the layout), and runs never mix.

`edgekd build` writes into a staging folder beside OUT and puts it in OUT's place
only when the run ends with a result (passed, or a budget or stage failed: the report says which). A crash or
bad input found mid-run leaves OUT exactly as it was and keeps the partial output apart, named in the error.

    with staged_run(ctx.out, overwrite) as staging:   # refuses an OUT holding another run unless overwrite
        ...write everything under staging...
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from edgekd.errors import EdgeKDError, InputError

RUN_MARKERS = ("report.json", "config.json")  # what a folder holding an earlier run has
# Files that may name the staging folder's path (stage records, artifact sidecars, reports): rewritten to
# OUT's when the run is moved into place, so a later stage command finds its inputs.
TEXT_SUFFIXES = (".json", ".md", ".html")


@dataclass(frozen=True)
class RunDir:
    """Every path under OUT, in one place: stages, stage commands and the report read and write through it.
    `folder(name)` creates a stage's folder; the other fields only name paths (docs/architecture.md)."""

    root: Path
    config_json: Path = field(init=False, repr=False)  # the BuildConfig; stage commands resume from it
    report_json: Path = field(init=False, repr=False)
    report_md: Path = field(init=False, repr=False)
    junit_xml: Path = field(init=False, repr=False)
    report_html: Path = field(init=False, repr=False)
    search_json: Path = field(init=False, repr=False)
    distill: Path = field(init=False, repr=False)  # student.*, history.*, checkpoints/ (assistant/ for `ta`)
    student_json: Path = field(init=False, repr=False)
    student_weights: Path = field(init=False, repr=False)
    history_json: Path = field(init=False, repr=False)
    teacher_onnx: Path = field(init=False, repr=False)  # a torch teacher exported once (the search times it first)
    teacher_parity_json: Path = field(init=False, repr=False)
    student_onnx: Path = field(init=False, repr=False)
    export_json: Path = field(init=False, repr=False)
    compile_json: Path = field(init=False, repr=False)

    def __post_init__(self) -> None:
        r, d = self.root, self.root / "distill"
        for name, path in (("config_json", r / "config.json"), ("report_json", r / "report.json"),
                           ("report_md", r / "report.md"), ("junit_xml", r / "junit.xml"),
                           ("report_html", r / "report.html"), ("search_json", r / "search" / "search.json"),
                           ("distill", d), ("student_json", d / "student.json"),
                           ("student_weights", d / "student.safetensors"), ("history_json", d / "history.json"),
                           ("teacher_onnx", r / "teacher" / "teacher.onnx"),
                           ("teacher_parity_json", r / "teacher" / "teacher.json"),
                           ("student_onnx", r / "export" / "student.onnx"),
                           ("export_json", r / "export" / "export.json"),
                           ("compile_json", r / "compile" / "compile.json")):
            object.__setattr__(self, name, path)  # frozen: set once, here

    def folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def relative(self, path: Path | str) -> str:
        """`path` as the report names it: relative to OUT when inside it."""
        try:
            return str(Path(path).resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)


def holds_run(out: Path) -> bool:
    return out.is_dir() and any((out / m).is_file() for m in RUN_MARKERS)


def check_out_path(out: Path, option: str = "--out") -> None:
    """Without writing anything: OUT is a folder or can become one (no regular file on its path)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{option} '{out}': exists and is not a folder; choose another path")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{option} '{out}': '{parent}' is a file, so the folder cannot be created; "
                                 "choose another path")
            return


def check_output_file(path: Path, option: str) -> None:
    """Before the work: the file can be written where `option` says (its folder is created now), so a run
    does not end in an OSError after minutes of timing (`--logits`, `--json` under /proc)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{option} '{path}': is a folder; give a file name")
    check_out_path(path.parent, option)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{option} '{path}': its folder cannot be created ({e.strerror or e}); "
                         "choose a writable path") from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"{option} '{path}': cannot be written here (no permission); choose another path")


def make_dir(path: Path, option: str = "--out") -> Path:
    check_out_path(path, option)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{option} '{path}': cannot create the folder ({e.strerror or e}); "
                         "choose a writable path") from None
    return path


def _rewrite_paths(folder: Path, old: str, new: str) -> None:
    for path in folder.rglob("*"):
        if path.suffix in TEXT_SUFFIXES and path.is_file() and path.stat().st_size < 50_000_000:
            text = path.read_text(errors="surrogateescape")
            if old in text:
                path.write_text(text.replace(old, new), errors="surrogateescape")


def refuse_earlier_run(out: Path | None, overwrite: bool, option: str = "--out") -> None:
    if out is None or overwrite or not holds_run(out):
        return
    found = ", ".join(m for m in RUN_MARKERS if (out / m).is_file())
    raise InputError(f"{option} '{out}': holds an earlier run ({found}); pass --overwrite to replace it, "
                     "or choose another --out")


@contextmanager
def staged_run(out: Path, overwrite: bool = False, option: str = "--out") -> Iterator[Path]:
    refuse_earlier_run(out, overwrite, option)
    check_out_path(out, option)
    make_dir(out.parent, option)
    stamp = f"{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    staging = make_dir(out.parent / f".{out.name}.staging-{stamp}", option)
    try:
        yield staging
    except BaseException as e:
        if not any(staging.iterdir()):
            staging.rmdir()
            raise
        failed = out.parent / f"{out.name}.failed-{stamp}"
        staging.rename(failed)
        _rewrite_paths(failed, str(staging), str(failed))
        note = f"{option} '{out}' is unchanged; this run's partial output is in '{failed}'"
        if isinstance(e, EdgeKDError) and e.args:
            e.args = (f"{e.args[0]} ({note})", *e.args[1:])  # still one line
        else:
            print(note, file=sys.stderr)
        raise
    _rewrite_paths(staging, str(staging), str(out))
    if out.exists():
        # Two renames on one file system; the earlier run is deleted only once the new one is in place.
        old = out.parent / f".{out.name}.replaced-{stamp}"
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)
