"""Stability of the `edgekd check` gate: an unchanged model must not flip verdicts by noise.

    python benchmarks/gate_stability.py [--targets host-cpu,openvino] [--repeats 5]
        [--margin 0.3] [--plot gate_stability.png]

A model edgekd did not build (torchvision resnet18 with random weights, exported by plain torch.onnx at
1x3x64x64) is gated once with no effective latency budget to learn its p50; then `edgekd check` runs
`repeats` times with a latency budget of (1 + margin) x p50, which must pass every time, and `repeats`
times with (1 - margin) x p50, which must fail. Inconclusive (exit 3) is an honest answer near a budget; a
pass below the p50 or a fail above it is wrong. Each run's verdict, exit code, 95% interval and run count
are printed; the script exits 1 when any verdict is wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torchvision
from typer.testing import CliRunner

from edgekd.cli import app


def export_outside_model(path: Path) -> Path:
    """resnet18 through torch.onnx directly: no edgekd exporter, no metadata, fixed batch 1."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress chatter
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, 64, 64),), str(path), dynamo=True, external_data=False)
    return path


def gate(model: Path, target: str, latency_ms: float, out: Path) -> dict:
    result = CliRunner().invoke(app, ["check", str(model), "--target", target, "--latency-ms", f"{latency_ms:.6f}",
                                      "--memory-mb", "100000", "--json", str(out)])
    if result.exit_code not in (0, 1, 3):
        raise SystemExit(f"edgekd check exited {result.exit_code}: {result.output}{result.stderr}")
    report = json.loads(out.read_text())
    budget = next(b for b in report["budgets"] if b["name"] == "latency_ms")
    stats = report["student"]["latency_stats"]
    return {"exit": result.exit_code, "verdict": budget["verdict"], "value": budget["value"],
            "interval": budget["interval"], "runs": stats["runs"], "converged": stats["decided"],
            "limit": budget["limit"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", default="host-cpu,openvino")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--margin", type=float, default=0.3)
    ap.add_argument("--plot", type=Path, default=None, help="save the intervals and budgets as a PNG here")
    args = ap.parse_args()
    rows, ok = [], True
    with tempfile.TemporaryDirectory() as tmp:
        model = export_outside_model(Path(tmp) / "resnet18-64.onnx")
        print(f"model: torchvision resnet18 (random weights), torch.onnx.export, input 1x3x64x64, "
              f"{model.stat().st_size / 2**20:.1f} MB")
        for target in args.targets.split(","):
            start = time.perf_counter()
            probe = gate(model, target, 1e6, Path(tmp) / "probe.json")
            p50 = probe["value"]
            print(f"\n[{target}] measured p50 {p50:.4f} ms, interval [{probe['interval'][0]:.4f}, "
                  f"{probe['interval'][1]:.4f}] over {probe['runs']} runs")
            print(f"{'budget':>7s} {'limit_ms':>9s} {'run':>3s} {'verdict':>12s} {'exit':>4s} {'p50_ms':>8s} "
                  f"{'interval_ms':>21s} {'width':>6s} {'runs':>5s} decided")
            tally = {}
            up, down = f"+{100 * args.margin:g}%", f"-{100 * args.margin:g}%"
            for kind, factor, expected in ((up, 1 + args.margin, "pass"), (down, 1 - args.margin, "fail")):
                hits = wrong = 0
                for i in range(args.repeats):
                    r = gate(model, target, factor * p50, Path(tmp) / f"{target}-{kind}-{i}.json")
                    lo, hi = r["interval"]
                    hits += r["verdict"] == expected
                    wrong += r["verdict"] not in (expected, "inconclusive")  # inconclusive is honest, not wrong
                    rows.append((target, kind, i, r))
                    print(f"{kind:>7s} {r['limit']:9.4f} {i + 1:3d} {r['verdict']:>12s} {r['exit']:4d} "
                          f"{r['value']:8.4f} [{lo:9.4f}, {hi:9.4f}] {100 * (hi - lo) / r['value']:5.1f}% "
                          f"{r['runs']:5d} {r['converged']}")
                tally[kind] = (hits, wrong)
                ok &= wrong == 0
            mine = [r for t, _, _, r in rows if t == target]
            p50s = [r["value"] for r in mine]
            widths = [(r["interval"][1] - r["interval"][0]) / r["value"] for r in mine]
            print(f"[{target}] budget {up}: {tally[up][0]}/{args.repeats} pass, {tally[up][1]} wrong; "
                  f"budget {down}: {tally[down][0]}/{args.repeats} fail, {tally[down][1]} wrong "
                  f"({time.perf_counter() - start:.0f} s)")
            print(f"[{target}] p50 across the {len(mine)} gate runs: {min(p50s):.4f} .. {max(p50s):.4f} ms "
                  f"(max/min {max(p50s) / min(p50s):.3f}); within-run interval width median "
                  f"{100 * sorted(widths)[len(widths) // 2]:.1f}%; runs per gate {min(r['runs'] for r in mine)}"
                  f"..{max(r['runs'] for r in mine)}")
    if args.plot:
        plot(rows, args.plot)
        print(f"plot: {args.plot}")
    print("\nSTABLE: every verdict right or inconclusive" if ok else "\nUNSTABLE: some verdict was wrong")
    sys.exit(0 if ok else 1)


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = sorted({r[0] for r in rows})
    fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 3.5), squeeze=False)
    for ax, target in zip(axes[0], targets, strict=True):
        mine = [r for r in rows if r[0] == target]
        for x, (_, kind, _, r) in enumerate(mine):
            lo, hi = r["interval"]
            colour = "tab:green" if r["verdict"] == "pass" else "tab:red" if r["verdict"] == "fail" else "tab:orange"
            ax.errorbar(x, r["value"], yerr=[[r["value"] - lo], [hi - r["value"]]], fmt="o", color=colour)
            ax.hlines(r["limit"], x - 0.4, x + 0.4, colors="k", linestyles="--" if kind.startswith("+") else ":")
        ax.set_title(f"{target}: p50 and 95% interval vs budget")
        ax.set_xlabel("gate run (first the budgets above the p50, then those below)")
        ax.set_ylabel("latency ms")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
