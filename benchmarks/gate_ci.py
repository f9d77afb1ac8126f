"""`edgekd check` as a CI job runs it: does a 5% regression gate tell an unchanged model from a slower one?

    python benchmarks/gate_ci.py [--n 10] [--targets host-cpu,openvino] [--modes ab,stored] [--true-seconds 30]

A model (an edgekd ResNet on 1x8x8 inputs, 0.05-0.1 ms, the size of the README's digits student) and
variants of it made slower by extra convolutions on the input whose result is multiplied by zero and added
to the logits (the outputs stay the same, the work does not). Each variant timed against it as a pair picks the
variants nearest 10% and 25% slower and prints their true ratios. Then each of the unchanged model (a copy of
the file), the 10% and the 25% variant is gated at `--max-regression 5%` in `--n` fresh processes:

* `ab`: `edgekd check VARIANT --baseline base.onnx` (both timed interleaved in the one process);
* `stored`: `edgekd check VARIANT --baseline base.json`, a report stored by one earlier process.

Per row: pass / fail / inconclusive counts, the median ratio (A/B: the measured ratio; stored: the latency
over the stored figure), the median relative interval width, seconds per gate (wall, the whole process), and
the spread of the ratio between the processes (what AB_RATIO_FLOOR and STORED_SPREAD in edgekd/interleave.py
stand for). Aim: unchanged 0 FAIL; 10% slower 0 PASS; 25% slower all FAIL.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

TARGET_PROFILE = {"host-cpu": ("host", "onnxruntime"), "openvino": ("intel-x86-cpu", "openvino")}
EXTRA_CONVS = (1, 2, 3, 4, 5, 6)  # candidates for the 10% and 25% variants


def base_model(path: Path) -> Path:
    import torch

    from edgekd.models.families import create_model
    from edgekd.onnx_export import export_onnx

    torch.manual_seed(0)
    model = create_model({"family": "resnet", "widths": [16, 32, 64], "blocks": [1, 1, 1]}, 1, 10, (8, 8)).eval()
    return export_onnx(model, (1, 8, 8), path, {})


def slower(base: Path, out: Path, convs: int, width: int = 16) -> Path:
    """`base` plus `convs` 3x3 convolutions on its input, their mean times zero added to the output: the same
    outputs, more work (no runtime folds x * 0 for a computed x)."""
    m = onnx.load(str(base))
    g = m.graph
    x, y = g.input[0].name, g.output[0].name
    for node in g.node:
        node.output[:] = [f"{y}_orig" if o == y else o for o in node.output]
    rng = np.random.default_rng(0)
    prev, channels = x, g.input[0].type.tensor_type.shape.dim[1].dim_value
    for k in range(convs):
        w = numpy_helper.from_array((rng.standard_normal((width, channels, 3, 3)) * 0.1).astype(np.float32),
                                    f"extra_w{k}")
        g.initializer.append(w)
        g.node.append(helper.make_node("Conv", [prev, w.name], [f"extra_h{k}"], pads=[1, 1, 1, 1]))
        prev, channels = f"extra_h{k}", width
    g.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), "extra_zero"))
    g.node.append(helper.make_node("ReduceMean", [prev], ["extra_mean"], keepdims=0))
    g.node.append(helper.make_node("Mul", ["extra_mean", "extra_zero"], ["extra_nil"]))
    g.node.append(helper.make_node("Add", [f"{y}_orig", "extra_nil"], [y]))
    onnx.checker.check_model(m)
    onnx.save(m, str(out))
    return out


def true_ratios(runtime: str, models: dict[str, Path], seconds: float) -> dict[str, tuple]:
    """Every model against the base, each as its own interleaved pair (as the gate times them), `seconds` in
    all: (ratio, interval without a floor, the base's latency)."""
    from edgekd.hostinfo import usable_cores
    from edgekd.interleave import load_replicas, time_sessions
    from edgekd.runtimes import Artifact

    x = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)
    threads = min(2, usable_cores())
    base = load_replicas(Artifact(models["base"], runtime, "fp32"), threads)
    out = {}
    for n, p in models.items():
        if n == "base":
            continue
        timed = time_sessions({n: load_replicas(Artifact(p, runtime, "fp32"), threads), "base": base}, x,
                              seconds / (len(models) - 1))
        r = timed.speedup(n, "base", 0.0)
        out[n] = (r.value, r.interval, timed.latency_ms("base"))
    return out


def check(model: Path, target: Path, baseline: Path, out: Path, extra=()) -> tuple[int, dict, float]:
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "edgekd", "check", str(model), "--target", str(target),
                        "--baseline", str(baseline), "--max-regression", "5%", "--json", str(out), *extra],
                       capture_output=True, text=True, env=os.environ | {"GITHUB_STEP_SUMMARY": ""})
    seconds = time.perf_counter() - start
    if r.returncode not in (0, 1, 3):
        raise SystemExit(f"edgekd check exited {r.returncode}: {r.stderr[-2000:]}")
    return r.returncode, json.loads(out.read_text()), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10, help="fresh processes per row")
    ap.add_argument("--targets", default="host-cpu,openvino")
    ap.add_argument("--modes", default="ab,stored")
    ap.add_argument("--true-seconds", type=float, default=30.0, help="the long interleaved run per runtime")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gate-ci-"))
    try:
        base = base_model(tmp / "base.onnx")
        shutil.copy(base, tmp / "unchanged.onnx")
        extra = {k: slower(base, tmp / f"extra{k}.onnx", k) for k in EXTRA_CONVS}
        for name in args.targets.split(","):
            profile, runtime = TARGET_PROFILE[name]
            target = tmp / f"{name}-gate.yaml"  # the target's runtime, no budgets: only the regression is gated
            target.write_text(f"name: {name}-gate\ndescription: regression only\nprofile: {profile}\n"
                              f"runtime: {runtime}\nprecision: fp32\nbatch_size: 1\nbudgets: {{}}\n")
            ratios = true_ratios(runtime, {"base": base, "unchanged": tmp / "unchanged.onnx"}
                                 | {f"extra{k}": p for k, p in extra.items()}, args.true_seconds)
            pick = {"unchanged": tmp / "unchanged.onnx"}
            for label, want in (("+10%", 1.10), ("+25%", 1.25)):
                k = min(EXTRA_CONVS, key=lambda k: abs(ratios[f"extra{k}"][0] - want))
                pick[label] = extra[k]
            base_ms = ratios["unchanged"][2]
            print(f"\n[{name}] base p50 {base_ms:.4f} ms; true ratios, each variant timed against the base as a pair "
                  f"({args.true_seconds:g} s in all; bootstrap 95%, no floor): " + ", ".join(
                      f"{label} = {p.stem} {ratios[p.stem][0]:.3f} [{ratios[p.stem][1][0]:.3f}, "
                      f"{ratios[p.stem][1][1]:.3f}]" for label, p in pick.items()), flush=True)
            stored = tmp / f"{name}-base.json"
            r = subprocess.run([sys.executable, "-m", "edgekd", "check", str(base), "--target", str(target),
                                "--latency-ms", "1e6", "--json", str(stored)], capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"storing the baseline failed: {r.stderr[-2000:]}")
            stored_ms = json.loads(stored.read_text())["student"]["latency_ms"]
            print(f"[{name}] stored baseline (one process): {stored_ms:.4f} ms")
            print(f"{'mode':>6s} {'model':>9s} {'pass':>4s} {'fail':>4s} {'inc':>4s} {'ratio':>6s} "
                  f"{'spread':>15s} {'width':>6s} {'rounds':>6s} {'s/gate':>6s}", flush=True)
            for mode in args.modes.split(","):
                for label, model in pick.items():
                    verdicts, values, widths, rounds, secs = [], [], [], [], []
                    for i in range(args.n):
                        _, rep, s = check(model, target, base if mode == "ab" else stored,
                                          tmp / f"{name}-{mode}-{i}.json")
                        name_ = "latency_regression" if mode == "ab" else "latency_ms_regression"
                        b = next(b for b in rep["budgets"] if b["name"] == name_)
                        scale = 1.0 if mode == "ab" else stored_ms
                        verdicts.append(b["verdict"])
                        values.append(b["value"] / scale)
                        widths.append((b["interval"][1] - b["interval"][0]) / b["value"])
                        rounds.append(rep["student"]["latency_timing"]["rounds"])
                        secs.append(s)
                    print(f"{mode:>6s} {label:>9s} {verdicts.count('pass'):4d} {verdicts.count('fail'):4d} "
                          f"{verdicts.count('inconclusive'):4d} {np.median(values):6.3f} "
                          f"{min(values):6.3f}..{max(values):6.3f} {100 * np.median(widths):5.1f}% "
                          f"{int(np.median(rounds)):6d} {np.median(secs):6.1f}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
