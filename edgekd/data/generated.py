"""What the generated benchmark sets (fonts, shapes) share: a cached .npz in the XDG cache and the
`python -m edgekd.data.<name> OUT.npz` command that reproduces the file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgekd.hostinfo import cache_dir


def cached_npz(name: str, version: int, seed: int, generate: Callable[[int], dict]) -> Path:
    """The generated set in the XDG cache, written atomically on first use."""
    path = cache_dir() / f"{name}-v{version}-seed{seed}.npz"
    if not path.is_file():
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, **generate(seed))
        os.replace(tmp, path)
    return path


def write(argv: list[str], name: str, generate: Callable[[], dict], held_out: str = "") -> None:
    out = Path(argv[1] if len(argv) > 1 else f"{name}.npz")
    data = generate()
    np.savez_compressed(out, **data)
    print(f"wrote {out}: {len(data['y'])} images, {len(data['classes'])} classes, "
          f"{int((~data['val_mask']).sum())} train / {int(data['val_mask'].sum())} held-out{held_out}")
