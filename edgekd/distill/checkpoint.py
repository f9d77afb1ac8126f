"""Per-epoch training checkpoints: written atomically, read back safely, a damaged newest one skipped.

A checkpoint is a torch.save'd dict of tensors and plain values (model, adapters, optimizer, scheduler,
scaler, RNG states, epoch, history) read with weights_only=True: resuming never unpickles code.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

FORMAT = "edgekd.checkpoint/1"
REQUIRED = ("format", "epoch", "fingerprint", "model", "optimizer", "scheduler", "rng")


def path_for(folder: Path, epoch: int) -> Path:
    return folder / f"epoch-{epoch:04d}.pt"


def save(folder: Path, epoch: int, state: dict, keep: int) -> Path:
    """Write OUT/.../epoch-NNNN.pt via a temp file + fsync + os.replace (a crash leaves the old file or the new
    one, never half of one), then drop all but the newest `keep`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = path_for(folder, epoch)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT, "epoch": epoch, **state}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(folder, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    except OSError:
        pass
    for old in sorted(folder.glob("epoch-*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load(path: Path) -> dict:
    """Load one checkpoint or raise ValueError saying why it is unusable (truncated, foreign, incomplete)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated zip raises RuntimeError; a foreign pickle UnpicklingError
        raise ValueError(f"{path.name}: unreadable ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path.name}: not an edgekd checkpoint")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise ValueError(f"{path.name}: incomplete (missing {', '.join(missing)})")
    return state


def latest(folder: Path) -> tuple[dict | None, Path | None, list[str]]:
    """The newest loadable checkpoint, its path, and why each newer one was skipped."""
    problems = []
    for path in sorted(folder.glob("epoch-*.pt"), reverse=True):
        try:
            return load(path), path, problems
        except ValueError as e:
            problems.append(str(e))
    return None, None, problems


def clear(folder: Path) -> None:
    """A fresh (not resumed) run starts without an earlier run's checkpoints, so --resume never mixes runs."""
    for old in folder.glob("epoch-*.pt"):
        old.unlink(missing_ok=True)
