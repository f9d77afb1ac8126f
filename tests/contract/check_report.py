#!/usr/bin/env python3
"""Check an edgekd report.json against its contract (docs/report-contract.md). Usage:
check_report.py REPORT [--latency-source measured|predicted] [--faster] [--min-speedup X] [--skipped-stage]
                       [--method NAME] [--teacher-acc X]
Prints one figure line; exits 1 with the reason on the first shortfall.

The repository's copy of the contract checker the project's reviewers run, with the same rules; keep it and
docs/report-contract.md in step (a change to report.json's fields changes both)."""

from __future__ import annotations

import json
import sys


class Shortfall(Exception):
    pass


def _opt(args: list[str], name: str, default=None):
    return args[args.index(name) + 1] if name in args else default


def _number(x) -> bool:
    return isinstance(x, (int, float))


def _latencies(t: dict, s: dict) -> tuple[float, float]:
    tl, sl = t.get("latency_ms"), s.get("latency_ms")
    if not (_number(tl) and _number(sl) and sl > 0):
        raise Shortfall(f"latencies missing: teacher {tl} student {sl}")
    return tl, sl


def check(r: dict, args: list[str]) -> str:
    """The figure line for a report that meets the contract; Shortfall naming the first gap otherwise."""
    for k in ("passed", "target", "teacher", "student", "budgets", "stages", "artifacts", "environment"):
        if k not in r:
            raise Shortfall(f"report.json lacks '{k}'")
    b = {x.get("name"): x for x in r["budgets"]}
    for k in ("latency_ms", "memory_mb", "accuracy_drop"):
        if k not in b:
            raise Shortfall(f"no budget '{k}' (has {sorted(b)})")
        for f in ("limit", "value", "source", "passed"):
            if f not in b[k]:
                raise Shortfall(f"budget {k} lacks '{f}'")
        if b[k]["source"] not in ("measured", "predicted"):
            raise Shortfall(f"budget {k} source={b[k]['source']!r}")
    src = _opt(args, "--latency-source")
    if src and b["latency_ms"]["source"] != src:
        raise Shortfall(f"latency source {b['latency_ms']['source']} != {src}")
    if b["latency_ms"]["source"] == "predicted":
        iv = b["latency_ms"].get("interval")
        if not (iv and len(iv) == 2 and iv[0] <= b["latency_ms"]["value"] <= iv[1]):
            raise Shortfall(f"predicted latency without a band around it: {iv}")
    t, s = r["teacher"], r["student"]
    for who, d in (("teacher", t), ("student", s)):
        a = d.get("accuracy")
        if not _number(a) or not 0 <= a <= 1:
            raise Shortfall(f"{who} accuracy {a!r} not in [0,1]")
    drop = 100 * (t["accuracy"] - s["accuracy"])
    if abs(drop - b["accuracy_drop"]["value"]) > 0.51:
        raise Shortfall(f"accuracy_drop {b['accuracy_drop']['value']} != 100*(teacher-student) {drop:.2f}")
    speed = None
    if "--faster" in args:
        tl, sl = _latencies(t, s)
        if not sl < tl:
            raise Shortfall(f"student not faster: {sl} ms vs teacher {tl} ms")
        speed = tl / sl
    ms = _opt(args, "--min-speedup")
    if ms:
        tl, sl = _latencies(t, s)
        speed = tl / sl
        if speed < float(ms):
            raise Shortfall(f"speed-up {speed:.2f}x < {ms}x (student {sl:.4g} ms, teacher {tl:.4g} ms)")
        if "speedup" not in json.dumps(r).lower().replace("_", "").replace("-", ""):
            raise Shortfall("report has no speed-up figure or budget")
    if "--skipped-stage" in args:
        sk = [x for x in r["stages"] if x.get("status") == "skipped"]
        if not sk or not all(x.get("reason") for x in sk):
            raise Shortfall("no skipped stage with a reason")
    m = _opt(args, "--method")
    if m and m not in json.dumps(r):
        raise Shortfall(f"method {m} not recorded in report")
    ta = _opt(args, "--teacher-acc")
    if ta and abs(float(ta) - t["accuracy"]) > 0.02:
        raise Shortfall(f"teacher accuracy {t['accuracy']:.4f}, expected about {ta} (preprocessing or evaluation "
                        "wrong?)")
    return (f"passed={r['passed']} teacher={t['accuracy']:.3f} student={s['accuracy']:.3f} drop={drop:.2f}pt "
            f"lat={b['latency_ms']['value']:.3g}ms({b['latency_ms']['source']})"
            + (f" speedup={speed:.2f}x" if speed else ""))


def main(argv: list[str]) -> int:
    path, args = argv[0], argv[1:]
    try:
        with open(path) as f:
            report = json.load(f)
    except Exception as e:
        print(f"report.json unreadable: {e}")
        return 1
    try:
        print(check(report, args))
    except Shortfall as e:
        print(e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
