"""Wall time per stage of `edgekd build` on the embedded default, and student vs teacher figures.

    python benchmarks/e2e.py [--target host-cpu] [--epochs 30]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from typer.testing import CliRunner

from edgekd.cli import app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="host-cpu")
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        start = time.perf_counter()
        result = CliRunner().invoke(app, ["build", "--target", args.target, "--out", str(out),
                                          "--epochs", str(args.epochs)])
        wall = time.perf_counter() - start
        report = json.loads((out / "report.json").read_text())
    print(f"edgekd build --target {args.target} --epochs {args.epochs}: exit {result.exit_code}, "
          f"{wall:.1f} s wall (includes context: data, teacher load/training)")
    print(f"{'stage':10s} {'status':8s} {'seconds':>8s}")
    for s in report["stages"]:
        print(f"{s['name']:10s} {s['status']:8s} {s['seconds']:8.2f}  {s['reason'][:60]}")
    t, st = report["teacher"], report["student"]
    print(f"{'':8s} {'accuracy':>9s} {'latency_ms':>11s} {'source':>10s} {'params':>9s}")
    for who, d in (("teacher", t), ("student", st)):
        print(f"{who:8s} {d['accuracy']:9.4f} {d['latency_ms']:11.4f} {d['latency_source']:>10s} {d['params']:9d}")
    print(f"speedup {t['latency_ms'] / st['latency_ms']:.2f}x, accuracy drop "
          f"{100 * (t['accuracy'] - st['accuracy']):.2f} points, memory {st['memory_mb']:.2f} MB "
          f"({st['memory_source']}); student arch {st['arch']}")


if __name__ == "__main__":
    main()
