"""The shared CPU lock (TEAM.md): heavy steps of long benchmarks take it one step at a time, so they
interleave with other people's jobs instead of holding the machine for the whole run."""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path

LOCK = Path("/tmp/edgekd-cpu.lock")


@contextmanager
def cpu_lock():
    with open(LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
