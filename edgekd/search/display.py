"""The search's results for people: the Pareto front as a rich table, and as a PNG plot."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from rich.markup import escape
from rich.table import Table

from edgekd.search.evolution import Candidate


def arch_text(arch: dict) -> str:
    """An arch without its family, compactly: widths=16,32,64 blocks=1,2,2."""
    return " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                    for k, v in arch.items() if k not in ("family", "base"))


def front_table(front: list[Candidate], pick: Candidate, top: list[Candidate], score: str, target: str) -> Table:
    """Pareto front of score vs predicted latency (fastest first); the pick and the other top-k are marked."""
    top_ids = {c.index for c in top}
    table = Table(title=f"search: Pareto front, {score} vs predicted latency on {escape(target)}",
                  caption="ms and MB are predicted by the cost model for the target")
    for name in ("#", "space"):
        table.add_column(name, no_wrap=True)
    table.add_column("arch", overflow="fold", min_width=24)
    for name in (score, "ms", "MB", "params", ""):
        table.add_column(name, justify="right", no_wrap=True)
    for c in front:
        mark = "pick" if c.index == pick.index else ("top-k" if c.index in top_ids else "")
        table.add_row(str(c.index), c.space, arch_text(c.arch), f"{c.score:.4g}", f"{c.latency_ms:.3g}",
                      f"{c.memory_mb:.3g}", f"{c.params:,}", mark, style="bold green" if mark == "pick" else None)
    return table


def plot_front(candidates: list[Candidate], front: list[Candidate], pick: Candidate, latency_limit: float | None,
               score: str, path: Path) -> Path:
    """Scored candidates (score vs predicted latency), the front as a step line, the pick, and the latency
    limit (the budget, or the share of the teacher's latency when that is tighter)."""
    scored = [c for c in candidates if c.score is not None]
    fig = Figure(figsize=(7, 4.5), dpi=120)  # a Figure alone (no pyplot): files only, no display needed
    ax = fig.subplots()
    for space in sorted({c.space for c in scored}):
        mine = [c for c in scored if c.space == space]
        ax.scatter([c.latency_ms for c in mine], [c.score for c in mine], s=14, alpha=0.6, label=space)
    ax.step([c.latency_ms for c in front], [c.score for c in front], where="post", color="black", lw=1,
            label="Pareto front")
    ax.scatter([pick.latency_ms], [pick.score], marker="*", s=180, color="red", zorder=5, label="pick")
    if latency_limit is not None:
        ax.axvline(latency_limit, color="grey", ls="--", lw=1, label="latency limit")
    ax.set_xscale("log")
    ax.set_xlabel("predicted latency (ms, cost model)")
    ax.set_ylabel(f"{score} (training-free score)")
    ax.set_title(f"{len(scored)} scored of {len(candidates)} candidates; {len(front)} on the front")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path
