"""What a user installs edgekd for, measured: `edgekd build` with default settings, per data set and target.

    python benchmarks/outcome.py [--sets digits,fonts] [--targets host-cpu,openvino,mobile-cpu,jetson]
        [--repeats 5] [--out DIR]

Each build runs in a fresh process (`edgekd build --target T --data SET`), exactly as a user would type it.
Per build it prints the speed-up over the teacher on the target's runtime with its interval (measured:
timed interleaved in one process; predicted: the cost model, for targets this host cannot stand for), the
accuracy drop, the shipped precision, the seconds the search spent timing candidates on the runtime, and a
second row for the obvious alternative: the teacher alone, compressed (INT8) on the same runtime.
`digits` is the embedded default (its teacher shipped in the package); `jetson` is predicted here (no GPU).
Then the host-cpu build of the first set runs `--repeats` more times, each in a fresh process, and the speed-ups are
printed against their intervals. The search times candidates on a machine that drifts, so repeated builds
may pick different students; `--retime N` therefore also re-times the first host-cpu build's shipped student
against its teacher N times, each in a fresh process, exactly as the build's check stage does: each speed-up
should fall inside every other run's interval.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build(data: str, target: str, out: Path) -> tuple[int, dict, dict, float]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgekd.cli", "build", "--target", target, "--data", data,
                           "--out", str(out)], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1, 3) or not (out / "report.json").is_file():
        raise SystemExit(f"edgekd build --target {target} --data {data} exited {proc.returncode}:\n"
                         f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    search = out / "search" / "search.json"
    return (proc.returncode, json.loads((out / "report.json").read_text()),
            json.loads(search.read_text()) if search.is_file() else {}, seconds)


def _band(value: float, interval) -> str:
    return f"{value:6.2f}x [{interval[0]:.2f} .. {interval[1]:.2f}]" if interval else f"{value:6.2f}x (point)      "


def rows(data: str, target: str, rc: int, report: dict, search: dict, seconds: float) -> list[str]:
    s, t = report["student"], report["teacher"]
    speed = s.get("speedup") or {}
    budgets = {b["name"]: b for b in report["budgets"]}
    drop = budgets["accuracy_drop"]["value"]
    shipped = (s.get("artifact") or {}).get("precision", "-")
    timing = search.get("measurement", {}).get("seconds")
    line = (f"{data:7} {target:10} student  {_band(speed['value'], speed.get('interval')) if speed else '-':28} "
            f"{speed.get('source', '-'):9} drop {drop:5.2f}  {shipped:5} "
            f"search timing {'-' if timing is None else f'{timing:4.0f} s'}  build {seconds:4.0f} s  exit {rc}"
            f"  teacher {t.get('latency_ms', float('nan')):.3g} ms, student {s.get('latency_ms', float('nan')):.3g} ms")
    out = [line]
    for name, alt in (report.get("alternatives") or {}).items():
        out.append(f"{data:7} {target:10} {name:8} {_band(alt['speedup'], alt.get('speedup_interval')):28} "
                   f"{alt.get('latency_source', '-'):9} drop {alt['accuracy_drop']:5.2f}  {alt['precision']:5} "
                   f"{'better than the student' if alt['better_than_student'] else 'not better than the student'}"
                   f"{'' if alt['meets_budgets'] else ', misses a budget'}")
    return out


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
    ap.add_argument("--repeats", type=int, default=5, help="fresh-process host-cpu builds of the first set (0: none)")
    ap.add_argument("--out", type=Path, default=None, help="keep the run folders here")
    ap.add_argument("--retime", type=int, default=5, help="fresh-process re-timings of one build (0: none)")
    ap.add_argument("--retime-one", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--only-retime", type=Path, default=None, help="re-time this earlier build folder and stop")
    args = ap.parse_args()
    if args.retime_one:
        return retime_one(args.retime_one)
    if args.only_retime:
        return retime(args.only_retime, args.retime)
    root = args.out or Path(tempfile.mkdtemp(prefix="edgekd-outcome-"))
    print(f"edgekd build with default settings; run folders in {root}")
    print("set     target     row      speed-up over the teacher    source    drop(pt) prec")
    for data in args.sets.split(","):
        for target in args.targets.split(","):
            result = build(data, target, root / f"{data}-{target}")
            for line in rows(data, target, *result):
                print(line, flush=True)
    first_set = args.sets.split(",")[0]
    first = root / f"{first_set}-host-cpu"
    if args.retime and (first / "report.json").is_file():
        retime(first, args.retime)
    if args.repeats:
        print(f"\nhost-cpu {first_set}, {args.repeats} builds in fresh processes:")
        runs = []
        for i in range(args.repeats):
            rc, report, search, seconds = build(first_set, "host-cpu", root / f"repeat-{i}")
            speed = report["student"].get("speedup", {})
            arch = report["student"].get("arch")
            runs.append((speed.get("value"), speed.get("interval"), json.dumps(arch)))
            print(f"  run {i + 1}: {_band(speed['value'], speed.get('interval'))} exit {rc}  {json.dumps(arch)}",
                  flush=True)
        same = len({a for *_, a in runs}) == 1
        inside = sum(lo <= v <= hi for j, (v, _, _) in enumerate(runs)
                     for k, (_, (lo, hi), _) in enumerate(runs) if j != k)
        pairs = len(runs) * (len(runs) - 1)
        print(f"  {inside} of {pairs} (run, other run's interval) pairs contain the value"
              + ("" if same else "; the runs picked different students, so their speed-ups need not agree"))


if __name__ == "__main__":
    main()
