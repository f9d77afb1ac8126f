"""Progress of long stages for people reading a log rather than a terminal.

On a terminal rich draws a live bar. A CI log cannot show one (rich prints its last frame at the end, after
minutes of silence), so there a stage prints plain lines instead: one when it starts, one with an estimate
of the whole once a few steps are timed, then about every 10% or 30 s, and one when it ends.
`--quiet` silences both; `--verbose` prints the lines twice as often.
"""

from __future__ import annotations

import time

from rich.console import Console

QUIET, NORMAL, VERBOSE = 0, 1, 2
_level = NORMAL

# (share of the total, seconds) between two lines, per verbosity
CADENCE = {NORMAL: (0.10, 30.0), VERBOSE: (0.05, 15.0)}
ESTIMATE_AFTER = (3, 10.0)  # units done, or seconds spent with some progress: enough timing to extrapolate


def set_verbosity(level: int) -> None:
    global _level
    _level = level


def verbosity() -> int:
    return _level


def bar_disabled(console: Console) -> bool:
    """Whether a rich bar should stay off: quiet, or not a terminal (the plain lines say it instead)."""
    return _level == QUIET or not console.is_terminal


def plain_progress(console: Console, label: str, total: float, unit: str, detail: str = "",
                   start_at: float = 0.0) -> PlainProgress | None:
    """Plain progress lines where the console is not a terminal; None where a bar shows it (or when quiet).
    `start_at`: units already done (a resumed run), left out of the rate."""
    if _level == QUIET or console.is_terminal or console.quiet or total <= 0:
        return None
    return PlainProgress(console, label, total, unit, detail, start_at)


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class PlainProgress:
    def __init__(self, console: Console, label: str, total: float, unit: str, detail: str = "",
                 start_at: float = 0.0):
        self.console, self.label, self.total, self.unit = console, label, float(total), unit
        self.start = time.monotonic()
        self.estimated = False
        self.start_at = self.done = self.last_share = float(start_at)
        self.last_time = self.start
        self.share_step, self.interval = CADENCE.get(_level, CADENCE[NORMAL])
        resumed = f" ({self._count(start_at)} done before)" if start_at else ""
        self._line(f"started: {self._count(total)} {unit}{resumed}" + (f", {detail}" if detail else "")
                   + "; an estimate follows once the first steps are timed")

    def _line(self, text: str) -> None:
        # soft_wrap: a log line stays one line, whatever width rich guesses for a pipe
        self.console.print(f"{self.label}: {text}", highlight=False, markup=False, soft_wrap=True)

    @staticmethod
    def _count(v: float) -> str:
        return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:.1f}"

    def update(self, done: float, info: str = "") -> None:
        """Cheap enough to call every step: it only prints when a line is due."""
        self.done = done
        now = time.monotonic()
        elapsed = now - self.start
        ran = done - self.start_at
        if ran <= 0 or done >= self.total:
            return
        share = done / self.total
        left = elapsed / ran * (self.total - done)
        tail = f" ({info})" if info else ""
        if not self.estimated:
            if ran >= min(ESTIMATE_AFTER[0], self.total - self.start_at) or elapsed >= ESTIMATE_AFTER[1]:
                self.estimated = True
                self._line(f"estimate {duration(elapsed + left)} in all, from the first {self._count(ran)} "
                           f"{self.unit} in {duration(elapsed)}{tail}")
                self.last_share, self.last_time = share, now
            return
        if share - self.last_share >= self.share_step or now - self.last_time >= self.interval:
            self._line(f"{self._count(done)}/{self._count(self.total)} {self.unit} ({100 * share:.0f}%), "
                       f"{duration(elapsed)} elapsed, about {duration(left)} left{tail}")
            self.last_share, self.last_time = share, now

    def finish(self, info: str = "") -> None:
        self._line(f"done: {self._count(self.done)}/{self._count(self.total)} {self.unit} in "
                   f"{duration(time.monotonic() - self.start)}" + (f" ({info})" if info else ""))
