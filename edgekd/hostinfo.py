"""Detect the `host` profile's numbers on this machine.

Cores, RAM and architecture are read from the OS; compute and bandwidth are *measured* with short
numpy microbenchmarks (achievable, not datasheet, peaks) and cached per machine in the XDG cache.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import psutil


def cache_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = root / "edgekd"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: page faults, BLAS thread start
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _quick_gflops(n: int = 384) -> float:
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    return 2 * n**3 / _best_seconds(lambda: a @ a, 5) / 1e9


def _measure() -> dict[str, float]:
    n = 768
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    matmul_gflops = 2 * n**3 / _best_seconds(lambda: a @ a, 7) / 1e9
    big = np.ones(16 * 2**20, dtype=np.float32)  # 64 MiB, well beyond the caches
    dst = np.empty_like(big)
    copy_gbs = 2 * big.nbytes / _best_seconds(lambda: np.copyto(dst, big), 5) / 1e9  # read + write
    return {"fp32_gflops": matmul_gflops, "copy_gbs": copy_gbs}


def host_measurements() -> dict[str, float]:
    key = f"{cpu_name()}|{usable_cores()}|{platform.machine()}".encode().hex()[:48]
    path = cache_dir() / f"host-{key}.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        # A run disturbed by other work caches too low a peak (once 32 GFLOPS on a machine that does 250), and
        # a cache must not keep it forever: a quick probe that beats the cached figure by half replaces it.
        if _quick_gflops() < 1.5 * cached["fp32_gflops"]:
            return cached
    found = _measure()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(found))
    os.replace(tmp, path)
    return found


def detected_fields(arch: str, description: str, threads: int | None) -> dict:
    """A `detect: true` profile's fields measured on this machine, as plain data (sourced numbers as
    {"value", "source"}); config.load_profile keeps the ones its YAML sets explicitly."""
    measured = host_measurements()
    cores = usable_cores()
    fp32 = measured["fp32_gflops"]
    found = {
        "arch": platform.machine() if platform.machine() in ("x86_64", "aarch64") else arch,
        "description": f"{description} ({cpu_name()}, {cores} cores)",
        "threads": threads or cores,
        "cores": {"value": cores, "source": "os.sched_getaffinity on this host"},
        "ram_mb": {"value": psutil.virtual_memory().total / 2**20, "source": "psutil.virtual_memory on this host"},
        "memory_bandwidth_gbs": {"value": measured["copy_gbs"],
                                 "source": "measured: numpy copy of 64 MiB on this host"},
        "peak_gops": {
            "fp32": {"value": fp32, "source": "measured: numpy float32 768^3 matmul on this host (best of 7)"},
            "fp16": {"value": fp32, "source": "assumed equal to fp32: CPU runtimes compute fp16 models in fp32"},
            "int8": {"value": 2 * fp32, "source": "assumed 2x fp32 (int8 dot products); not measured"},
        },
    }
    return found
