"""Run folders never mix: `edgekd build` writes into a staging folder beside OUT and puts it in OUT's place
only when the run ends with a result (passed, or a budget or stage failed: the report says which). A crash or
bad input found mid-run leaves OUT exactly as it was and keeps the partial output apart, named in the error.

    with staged_run(ctx.out, overwrite) as staging:   # refuses an OUT holding another run unless overwrite
        ...write everything under staging...
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from edgekd.errors import EdgeKDError, InputError

RUN_MARKERS = ("report.json", "config.json")  # what a folder holding an earlier run has
# Files that may name the staging folder's path (stage records, artifact sidecars, reports): rewritten to
# OUT's when the run is moved into place, so a later stage command finds its inputs.
TEXT_SUFFIXES = (".json", ".md", ".html")


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
            import sys

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
