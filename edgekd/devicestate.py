"""The state of the machine a measurement runs on: CPU governor and frequency, Jetson power mode and
clocks, temperatures. Standard library only: the remote runner pipes this file to a device's python3
(`python3 - < devicestate.py`), which may have neither edgekd nor numpy."""

from __future__ import annotations

import glob
import json
import os
import platform
import shutil
import subprocess


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _run(*cmd: str) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (proc.stdout or proc.stderr).strip() or None


def jetson_release() -> dict:
    """L4T release (from /etc/nv_tegra_release) and JetPack version (dpkg), where present."""
    out = {}
    line = (_read("/etc/nv_tegra_release") or "").splitlines()[:1]
    if line:  # "# R36 (release), REVISION: 4.0, GCID: ..., BOARD: ..."
        parts = line[0].replace("#", "").split(",")
        major = parts[0].split()[0].lstrip("R")
        revision = parts[1].split(":")[1].strip() if len(parts) > 1 and ":" in parts[1] else ""
        out["l4t"] = f"{major}.{revision}" if revision else major
    jetpack = _run("dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack")
    if jetpack and "no packages" not in jetpack.lower():
        out["jetpack"] = jetpack
    return out


def device_state() -> dict:
    governors = sorted({g for g in (_read(p) for p in glob.glob(
        "/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")) if g})
    freqs = [int(f) for f in (_read(p) for p in glob.glob(
        "/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq")) if f and f.isdigit()]
    temps = {}
    for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
        kind, milli = _read(f"{zone}/type"), _read(f"{zone}/temp")
        if milli and milli.lstrip("-").isdigit():
            temps[kind or os.path.basename(zone)] = int(milli) / 1000
    state = {"host": platform.node(), "machine": platform.machine(), "kernel": platform.release(),
             "cpus": os.cpu_count(), "load_avg": list(os.getloadavg()),
             "cpu_governor": governors[0] if len(governors) == 1 else governors or None,
             "cpu_mhz_max_current": max(freqs) / 1000 if freqs else None, "temperatures_c": temps}
    state.update(jetson_release())
    nvpmodel = _run("nvpmodel", "-q")
    if nvpmodel:
        state["nvpmodel"] = nvpmodel.splitlines()[0]
    clocks = _run("jetson_clocks", "--show")
    if clocks:
        state["jetson_clocks"] = clocks.splitlines()[:12]
    return state


if __name__ == "__main__":
    print(json.dumps(device_state()))
