"""What a user installs edgekd for, measured: `edgekd build` with default settings, per data set and target,
several times, as new users on this machine would run it.

    python benchmarks/outcome.py [--sets digits,fonts] [--targets host-cpu,openvino,mobile-cpu,jetson]
        [--builds 3] [--out DIR] [--retime N]

Each build runs in a fresh process, exactly as a user would type it (`edgekd build --target T --data SET`), all
of them on one cache that starts empty (`XDG_CACHE_HOME`), as on a fresh install: the first build measures the
host's peaks and remembers the search's scales, the next ones find them (edgekd/search/measured.py). Per build it
prints the exit code, the student's arch, the speed-up over the teacher on the target's runtime with its
interval (measured: timed interleaved in one process; predicted: the cost model, for targets this host cannot
stand for), the ratio against the teacher at the shipped precision, the accuracy drop, the shipped precision,
and a row for the obvious alternative: the teacher alone, compressed on the same runtime. Per target it then
says whether the builds picked the same student and whether their intervals overlap. `digits` is the
embedded default (its teacher shipped in the package); `jetson` and `mobile-cpu` are predicted here.
`--retime N` re-times the first host-cpu build's shipped student against its teacher N times, each in a fresh
process, as the build's check stage does: each speed-up should fall inside every other run's interval.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build(data: str, target: str, out: Path, cache: Path) -> tuple[int, dict, dict, float]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgekd.cli", "build", "--target", target, "--data", data,
                           "--out", str(out)], capture_output=True, text=True,
                          env={**os.environ, "XDG_CACHE_HOME": str(cache)})
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1, 3) or not (out / "report.json").is_file():
        raise SystemExit(f"edgekd build --target {target} --data {data} exited {proc.returncode}:\n"
                         f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    search = out / "search" / "search.json"
    return (proc.returncode, json.loads((out / "report.json").read_text()),
            json.loads(search.read_text()) if search.is_file() else {}, seconds)


def _band(value: float, interval) -> str:
    return f"{value:6.2f}x [{interval[0]:.2f} .. {interval[1]:.2f}]" if interval else f"{value:6.2f}x (point)      "


def _arch(arch: dict | None) -> str:
    """An arch in one short cell: family, widths and blocks (or layers and width for an encoder)."""
    if not arch:
        return "-"
    return " ".join(f"{v}" if k == "family" else f"{k[0]}{v}".replace(" ", "") for k, v in arch.items())


def rows(data: str, target: str, rc: int, report: dict, search: dict, seconds: float) -> list[str]:
    s = report["student"]
    speed = s.get("speedup") or {}
    same = s.get("speedup_same_precision") or {}
    budgets = {b["name"]: b for b in report["budgets"]}
    drop = budgets["accuracy_drop"]["value"]
    shipped = (s.get("artifact") or {}).get("precision", "-")
    band = _band(speed["value"], speed.get("interval")) if speed else "-"
    line = (f"{data:7} {target:10} exit {rc} student  {band:28} {speed.get('source', '-'):9} "
            + (f"{_band(same['value'], same.get('interval'))} vs teacher {same['precision']:5}" if same
               else f"{'-':40}")
            + f"  drop {drop:5.2f}  {shipped:5} build {seconds:4.0f} s  {_arch(s.get('arch'))}")
    out = [line]
    for name, alt in (report.get("alternatives") or {}).items():
        out.append(f"{data:7} {target:10}        {name:8} {_band(alt['speedup'], alt.get('speedup_interval')):28} "
                   f"{alt.get('latency_source', '-'):9} drop {alt['accuracy_drop']:5.2f}  {alt['precision']:5} "
                   f"{'better than the student' if alt['better_than_student'] else 'not better than the student'}"
                   f"{'' if alt['meets_budgets'] else ', misses a budget'}")
    return out


def agreement(runs: list[tuple[int, dict]]) -> str:
    """Whether the builds of one target picked one student and their speed-up intervals overlap."""
    archs = [json.dumps(r["student"].get("arch"), sort_keys=True) for _, r in runs]
    speeds = [r["student"].get("speedup") or {} for _, r in runs]
    intervals = [s["interval"] for s in speeds if s.get("interval")]
    passed = sum(rc == 0 for rc, _ in runs)
    text = f"exit 0 in {passed}/{len(runs)}; the same student in {max(archs.count(a) for a in archs)}/{len(runs)}"
    if len(intervals) == len(runs):
        overlap = max(lo for lo, _ in intervals) <= min(hi for _, hi in intervals)
        text += "; the intervals " + ("overlap" if overlap else "do not all overlap")
    return text


def retime_one(run: Path) -> None:
    """One fresh process: the build's check-stage timing of its shipped student against its teacher."""
    import numpy as np

    from edgekd.config import load_profile, load_target
    from edgekd.interleave import load_replicas, time_sessions
    from edgekd.measurable import CHECK_SECONDS_PER_MODEL, local_threads
    from edgekd.runtimes import artifact_from_path

    report = json.loads((run / "report.json").read_text())
    target = load_target(report["target"]["name"])
    threads = local_threads(load_profile(target.profile))
    student = artifact_from_path(run / report["artifacts"]["compiled"])
    teacher = artifact_from_path(run / "compile" / "teacher-fp32.onnx")
    pre = report["preprocessing"]
    x = np.random.default_rng(0).standard_normal((target.batch_size, pre["channels"], *pre["input_size"]))
    timed = time_sessions({"teacher": load_replicas(teacher, threads), "student": load_replicas(student, threads)},
                          x.astype(np.float32), 2 * CHECK_SECONDS_PER_MODEL)
    r = timed.speedup("teacher", "student")
    print(json.dumps({"value": r.value, "interval": list(r.interval)}))


def retime(run: Path, n: int) -> None:
    print(f"\n{run.name}: its shipped student re-timed against its teacher in {n} fresh processes:")
    runs = []
    for i in range(n):
        proc = subprocess.run([sys.executable, __file__, "--retime-one", str(run)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-2000:])
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        runs.append((r["value"], r["interval"]))
        print(f"  process {i + 1}: {_band(r['value'], r['interval'])}", flush=True)
    inside = sum(lo <= v <= hi for j, (v, _) in enumerate(runs) for k, (_, (lo, hi)) in enumerate(runs) if j != k)
    print(f"  {inside} of {len(runs) * (len(runs) - 1)} (value, other process's interval) pairs contain the value")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default="digits", help="digits: the embedded default; fonts, shapes: harder sets")
    ap.add_argument("--targets", default="host-cpu,openvino,mobile-cpu,jetson")
    ap.add_argument("--builds", type=int, default=3, help="fresh-process builds per set and target")
    ap.add_argument("--out", type=Path, default=None, help="keep the run folders here")
    ap.add_argument("--retime", type=int, default=0, help="fresh-process re-timings of one build (0: none)")
    ap.add_argument("--retime-one", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--only-retime", type=Path, default=None, help="re-time this earlier build folder and stop")
    args = ap.parse_args()
    if args.retime_one:
        return retime_one(args.retime_one)
    if args.only_retime:
        return retime(args.only_retime, args.retime)
    root = args.out or Path(tempfile.mkdtemp(prefix="edgekd-outcome-"))
    cache = Path(tempfile.mkdtemp(prefix="edgekd-cache-"))  # a fresh install's: empty
    print(f"edgekd build with default settings, {args.builds} fresh processes each, on a cache that starts empty; "
          f"run folders in {root}")
    print("set     target     exit   row      speed-up over the teacher    source    same-precision ratio")
    summary = []
    for data in args.sets.split(","):
        for target in args.targets.split(","):
            runs = []
            for i in range(args.builds):
                rc, report, search, seconds = build(data, target, root / f"{data}-{target}-{i}", cache)
                runs.append((rc, report))
                for line in rows(data, target, rc, report, search, seconds):
                    print(line, flush=True)
            summary.append(f"{data:7} {target:10} {agreement(runs)}")
    print("\n" + "\n".join(summary))
    first = root / f"{args.sets.split(',')[0]}-host-cpu-0"
    if args.retime and (first / "report.json").is_file():
        retime(first, args.retime)


if __name__ == "__main__":
    main()
