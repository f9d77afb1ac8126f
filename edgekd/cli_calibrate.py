"""`edgekd calibrate`: fit the cost model of a profile + runtime from timings on the device.

Registered on the app by cli.py (wrapped in its error handler), kept here beside the cost model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console()


def calibrate(
    profile: Annotated[str, typer.Option("--profile", "-p", help="Profile to calibrate (see `edgekd profiles`).")],
    runtime: Annotated[str, typer.Option("--runtime", "-r", help="onnxruntime | openvino | tensorrt.")],
    remote: Annotated[str | None, typer.Option("--remote", help="Time on a device: ssh://user@host.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Calibration file to write. Default: "
                                             "profiles/calibration/<profile>-<runtime>.json.")] = None,
    kernels: Annotated[int, typer.Option("--kernels", min=10, help="Kernels in the first timing round.")] = 240,
    rounds: Annotated[int, typer.Option("--rounds", min=0, help="Adaptive kernel rounds after it.")] = 2,
    networks: Annotated[int, typer.Option("--networks", min=4, help="Calibration networks.")] = 100,
    refine: Annotated[int, typer.Option("--refine", min=0, help="Neighbours of the worst networks.")] = 20,
    memory_networks: Annotated[int, typer.Option("--memory-networks", min=2,
                                                 help="Networks whose peak memory is probed.")] = 40,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    lock: Annotated[Path | None, typer.Option("--lock", help="Hold an flock on this file while timing (default: "
                                              "$EDGEKD_TIMING_LOCK).")] = None,
):
    """Time kernels and small networks through the runtime; write the fitted calibration file."""
    import os

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edgekd.config import load_profile
    from edgekd.cost.calibrate import SampleCounts
    from edgekd.cost.calibrate import calibrate as run_calibration
    from edgekd.cost.calibration import calibration_path, save_calibration

    if lock is not None:
        os.environ["EDGEKD_TIMING_LOCK"] = str(lock)
    p = load_profile(profile)
    budget = SampleCounts(kernels, rounds, networks, refine, min(memory_networks, networks), seed)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        cal = run_calibration(p, runtime, budget, progress, remote)
    path = save_calibration(cal, out or calibration_path(p.name, runtime))
    n, m = cal.network, cal.memory
    console.print(f"wrote {escape(str(path))}: "
                  f"{sum(k.samples for k in cal.kernels.values())} kernels, {n.networks} networks; "
                  f"held-out networks within +-10%: {n.within_10pct:.0%}, band x{n.ratio_interval[0]:.2f}.."
                  f"x{n.ratio_interval[1]:.2f}; memory band x{m.ratio_interval[0]:.2f}..x{m.ratio_interval[1]:.2f}")
