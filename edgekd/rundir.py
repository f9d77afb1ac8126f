"""The run folder OUT: RunDir names every path in it (docs/architecture.md shows the layout), and runs never mix.

`edgekd build` writes into a staging folder beside OUT and puts it in OUT's place
only when the run ends with a result (passed, or a budget or stage failed: the report says which). A crash or
bad input found mid-run leaves OUT exactly as it was and keeps the partial output apart, named in the error.

    with staged_run(ctx.out, overwrite) as staging:   # refuses an OUT holding another run unless overwrite
        ...write everything under staging...

A user's folder is never replaced: OUT must be new, empty or a run (its MARKER, which every run writes); only a
folder holding a run and nothing else is replaced (--overwrite), never the current folder. Staging folders of a
killed run are removed by the next build on that OUT once their process is gone.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from edgekd.errors import EdgeKDError, InputError

MARKER = ".edgekd-run"  # written by every run (Context.save_config); --overwrite replaces only a folder with it
RUN_MARKERS = (MARKER, "report.json", "config.json")  # the last two: runs made before the marker existed
MARKER_TEXT = "This folder is an edgekd run: `edgekd build --overwrite` may replace it as a whole.\n"
# Files that may name the staging folder's path (stage records, artifact sidecars, reports): rewritten to
# OUT's when the run is moved into place, so a later stage command finds its inputs.
TEXT_SUFFIXES = (".json", ".md", ".html")


@dataclass(frozen=True)
class RunDir:
    """Every path under OUT, in one place: stages, stage commands and the report read and write through it.
    `folder(name)` creates a stage's folder; the other fields only name paths (docs/architecture.md)."""

    root: Path
    marker: Path = field(init=False, repr=False)  # says "an edgekd run": what --overwrite may replace
    config_json: Path = field(init=False, repr=False)  # the BuildConfig; stage commands resume from it
    report_json: Path = field(init=False, repr=False)
    report_md: Path = field(init=False, repr=False)
    junit_xml: Path = field(init=False, repr=False)
    report_html: Path = field(init=False, repr=False)
    search_json: Path = field(init=False, repr=False)
    distill: Path = field(init=False, repr=False)  # student.*, history.*, checkpoints/ (assistant/ for `ta`)
    student_json: Path = field(init=False, repr=False)
    student_weights: Path = field(init=False, repr=False)
    student_folder: Path = field(init=False, repr=False)  # a text student: a Hugging Face folder with its tokenizer
    history_json: Path = field(init=False, repr=False)
    teacher_onnx: Path = field(init=False, repr=False)  # a torch teacher exported once (the search times it first)
    teacher_parity_json: Path = field(init=False, repr=False)
    student_onnx: Path = field(init=False, repr=False)
    export_json: Path = field(init=False, repr=False)
    compile_json: Path = field(init=False, repr=False)

    def __post_init__(self) -> None:
        r, d = self.root, self.root / "distill"
        for name, path in (("marker", r / MARKER), ("config_json", r / "config.json"),
                           ("report_json", r / "report.json"),
                           ("report_md", r / "report.md"), ("junit_xml", r / "junit.xml"),
                           ("report_html", r / "report.html"), ("search_json", r / "search" / "search.json"),
                           ("distill", d), ("student_json", d / "student.json"),
                           ("student_weights", d / "student.safetensors"), ("student_folder", d / "student"),
                           ("history_json", d / "history.json"),
                           ("teacher_onnx", r / "teacher" / "teacher.onnx"),
                           ("teacher_parity_json", r / "teacher" / "teacher.json"),
                           ("student_onnx", r / "export" / "student.onnx"),
                           ("export_json", r / "export" / "export.json"),
                           ("compile_json", r / "compile" / "compile.json")):
            object.__setattr__(self, name, path)  # frozen: set once, here

    def mark(self) -> None:
        self.marker.write_text(MARKER_TEXT)

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


# What a run writes at its top level (RunDir's paths, and the folders its stages make with RunDir.folder).
RUN_NAMES = {MARKER, "config.json", "report.json", "report.md", "junit.xml", "report.html", "search", "distill",
             "teacher", "export", "compile", "check"}


def holds_run(out: Path) -> bool:
    return out.is_dir() and any((out / m).is_file() for m in RUN_MARKERS)


def _listed(names: list[str]) -> str:
    return ", ".join(f"'{n}'" for n in sorted(names)[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def refuse_foreign(out: Path, option: str = "--out") -> None:
    """OUT is new, empty or an edgekd run: a folder of the user's own files is never written into or replaced."""
    if out.is_dir() and not holds_run(out) and any(out.iterdir()):
        found = [p.name for p in out.iterdir()]
        raise InputError(f"{option} '{out}': holds files that are not an edgekd run ({_listed(found)}); "
                         "choose a new or empty folder")


def _refuse_current(out: Path, option: str) -> None:
    """A build puts its run in OUT's place; the folder the user works in (or one above it) cannot be replaced."""
    try:
        here, target = Path.cwd().resolve(), out.resolve()
    except OSError:
        return
    if out.name in ("", "..") or target == here or target in here.parents:
        raise InputError(f"{option} '{out}': is the current folder or holds it, and a build replaces its --out as "
                         "a whole; give a folder for the run, e.g. --out run")


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
    """Before any work: may a build put its run in OUT's place? Not the current folder, not a folder of other
    files, and an earlier run only with overwrite and only when it holds nothing else."""
    if out is None:
        return
    _refuse_current(out, option)
    refuse_foreign(out, option)
    if not holds_run(out):
        return
    if not overwrite:
        found = ", ".join(m for m in RUN_MARKERS if (out / m).is_file())
        raise InputError(f"{option} '{out}': holds an earlier run ({found}); pass --overwrite to replace it, "
                         "or choose another --out")
    others = [p.name for p in out.iterdir() if p.name not in RUN_NAMES]
    if others:
        raise InputError(f"{option} '{out}': holds an earlier run and other files ({_listed(others)}); "
                         "--overwrite replaces only a run folder holding nothing else: move them or choose "
                         "another --out")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def clear_leftovers(out: Path) -> None:
    """The staging and replaced folders beside OUT of builds whose process is gone (killed: SIGKILL, power
    loss), so they never pile up. Their stamp ends in the pid; a live run's folders are left alone."""
    prefix = f".{out.name}."
    for path in out.parent.glob(f"{glob.escape(prefix)}*-*"):
        kind, _, stamp = path.name[len(prefix):].partition("-")
        pid = stamp.rsplit("-", 1)[-1]
        if kind in ("staging", "replaced") and pid.isdigit() and not _alive(int(pid)):
            _remove(path)
            print(f"removed '{path}', left by an edgekd run that was stopped before it ended", file=sys.stderr)


@contextmanager
def staged_run(out: Path, overwrite: bool = False, option: str = "--out") -> Iterator[Path]:
    refuse_earlier_run(out, overwrite, option)
    check_out_path(out, option)
    make_dir(out.parent, option)
    clear_leftovers(out)
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
        _remove(old)
    else:
        staging.rename(out)
