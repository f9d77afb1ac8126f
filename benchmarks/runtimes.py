"""Teacher vs distilled students on ONNX Runtime (fp32, int8) and OpenVINO (fp16, int8) on this host:
p50 latency, peak memory, held-out accuracy through each runtime, and each artifact's speedup over the
teacher's float artifact on the same runtime. The teacher's own INT8 rows are "quantize the teacher only",
the alternative a user would try first.

    python benchmarks/runtimes.py [--data digits fonts] [--epochs 20] [--ratio 0.2 0.18 0.16] [--out DIR]

Each student is what `edgekd build --target openvino` makes (search -> distill -> export -> compile with the
precision guard) when the search is asked for students predicted at most RATIO of the teacher's latency
(budgets.min_speedup = 1 / ratio, on predictions); every ratio is its own build, and a ratio the search or the accuracy
budget cannot meet is reported as such. Latency: edgekd.measure in 5 interleaved rounds per artifact (median
of the rounds' p50s), batch 1, one thread per usable core. Memory: peak RSS the model adds in a fresh
process (edgekd.runtimes.memprobe).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from edgekd.figures import Figure
from edgekd.hostinfo import cpu_name, usable_cores
from edgekd.measure import time_calls
from edgekd.parity import Parity
from edgekd.precision import PrecisionCandidate, precision_guard
from edgekd.runtimes import create_backend, evaluate_accuracy
from edgekd.runtimes.memprobe import measure_memory_mb

RUNS = [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp16"), ("openvino", "int8")]
ROUNDS = 5
AIM_SPEEDUP, AIM_DROP = 8.0, 1.0
# Quoted in docs/benchmarks.md (measured on this kind of machine, torchvision resnet18, 48x48, 8 classes, batch 1,
# 2 threads): not measured by this script, printed beside our rows for comparison.
QUOTED_QUANTIZE_ONLY = [("openvino", "NNCF INT8", 3.9, 2.0), ("onnxruntime", "static INT8 QDQ", 0.48, None)]


def build_student(data: str, epochs: int, ratio: float, max_drop: float, out: Path):
    """`edgekd build --target openvino` through the library; returns (context, report)."""
    from edgekd.config import load_build_config
    from edgekd.context import make_context
    from edgekd.pipeline import build

    overrides = {"target": "openvino", "data": data, "out": str(out), "distill.epochs": epochs,
                 "budgets.max_accuracy_drop": max_drop}
    # a latency ratio r to the teacher is a speed-up of 1/r (predictions only: each ratio is its own build)
    cfg = load_build_config(None, overrides, [f"budgets.min_speedup={1 / ratio:g}", "search.measure_rounds=0"])
    ctx = make_context(cfg)
    return ctx, build(ctx)


def artifacts(ctx, out: Path, who: str, label: str) -> dict:
    """(label, runtime, precision) -> Artifact for the build in `out`: the build's own OpenVINO student
    artifacts, the rest compiled here the way the compile stage does (same calibration subset)."""
    from edgekd.runtimes import artifact_from_path

    calib = ctx.data.split("calib")[0]
    found = {}
    for runtime, precision in RUNS:
        built = out / "compile" / f"{who}-{precision}.xml"
        if runtime == "openvino" and who == "student" and built.is_file():
            found[label, runtime, precision] = artifact_from_path(built)
            continue
        found[label, runtime, precision] = create_backend(runtime).compile(
            out / "export" / f"{who}.onnx", out / "bench-artifacts" / who, precision,
            calib if precision == "int8" else None, "x86_64")
    return found


def measure(ctx, arts: dict, threads: int) -> dict:
    x_val, y_val = ctx.data.split("val")
    x1 = np.ascontiguousarray(x_val[:1])
    sessions = {k: create_backend(a.runtime).load(a, threads) for k, a in arts.items()}
    rows = {k: {"accuracy": evaluate_accuracy(s, x_val, y_val)[0], "p50_rounds_ms": []} for k, s in sessions.items()}
    for _ in range(ROUNDS):  # interleaved, so a noisy minute on a shared machine hits every artifact alike
        for k, s in sessions.items():
            stats = time_calls(lambda s=s: s.run(x1), max_seconds=1.5)
            rows[k]["p50_rounds_ms"].append(stats.p50_ms)
    for k, a in arts.items():
        rounds = rows[k]["p50_rounds_ms"]
        rows[k]["p50_ms"] = statistics.median(rounds)
        rows[k]["interval_ms"] = [min(rounds), max(rounds)]  # the spread across rounds: the noise band
        rows[k]["peak_mb"] = measure_memory_mb(a, x1.shape, threads)
        rows[k]["artifact"] = a.to_dict()
    return rows


def within_drop(teacher_accuracy: float):
    """The image track's guard rule at the aim's accuracy drop (edgekd/tracks/image.py)."""
    def within(quality: dict, _float_quality: dict) -> tuple[bool, str]:
        drop = 100 * (teacher_accuracy - quality["accuracy"])
        return drop <= AIM_DROP, f"accuracy drop {drop:.2f} points (budget {AIM_DROP})"
    return within


def report(data: str, ctx, students: dict, rows: dict) -> dict:
    """Print the table; returns per student and runtime what the precision guard ships and its figures."""
    teacher = next(iter(students.values()))["report"].teacher
    print(f"\n== data={data}: {ctx.data.num_classes} classes, input {list(ctx.input_shape)}, "
          f"{len(ctx.data.val_idx)} held-out images; host {cpu_name()}, {usable_cores()} cores, batch 1; "
          f"teacher {teacher.get('source')} ({teacher.get('params')} params)")
    print(f"{'model':24s} {'runtime':12s} {'prec':5s} {'p50_ms':>8s} {'speedup':>8s} {'peak_MB':>8s} "
          f"{'accuracy':>8s} {'drop_pt':>8s}  note")
    summary: dict = {}
    for runtime in ("onnxruntime", "openvino"):
        base = rows["teacher", runtime, create_backend(runtime).float_precision]
        for label in ["teacher", *students]:
            cands = {}
            for precision in (p for rt, p in RUNS if rt == runtime):
                r = rows[label, runtime, precision]
                r["speedup"] = base["p50_ms"] / r["p50_ms"]
                r["drop_points"] = 100 * (base["accuracy"] - r["accuracy"])
                cands[precision] = PrecisionCandidate(
                    precision, {"accuracy": r["accuracy"]}, r["drop_points"], Parity(0.0, 1.0, 0), "", {},
                    Figure(r["p50_ms"], "measured", tuple(r["interval_ms"])))
                note = ""
                if label == "teacher" and precision == "int8":
                    note = "quantize the teacher only"
                elif label == "teacher":
                    note = "baseline: FP32 teacher" + (" (fp16 weights, f32 compute)" if runtime == "openvino" else "")
                print(f"{label:24s} {runtime:12s} {precision:5s} {r['p50_ms']:8.4f} {r['speedup']:7.2f}x "
                      f"{r['peak_mb']:8.2f} {r['accuracy']:8.4f} {r['drop_points']:8.2f}  {note}")
            if label != "teacher":
                # OpenVINO: what the build shipped (its own measurement); ONNX Runtime: the same guard rule on
                # these figures (what the compile stage decides for an int8 onnxruntime target on this host).
                guard = students[label]["report"].student.get("compile", {}).get("precision_guard", {})
                shipped, why = ((guard["shipped"], guard["reason"]) if runtime == "openvino" and guard
                                else precision_guard(cands, within_drop(base["accuracy"])))
                r = rows[label, runtime, shipped]
                summary.setdefault(label, {})[runtime] = {"shipped": shipped, "guard": why, "speedup": r["speedup"],
                                                          "drop_points": r["drop_points"]}
    for label, info in students.items():
        guard = info["report"].student.get("compile", {}).get("precision_guard", {})
        print(f"{label} = {info['arch']} ({info['params']} params; search ratio {info['ratio']:g}): "
              f"edgekd build --target openvino shipped {guard.get('shipped')} ({guard.get('reason')})")
        for runtime, sm in summary[label].items():
            ok = sm["speedup"] >= AIM_SPEEDUP and sm["drop_points"] <= AIM_DROP
            print(f"  on {runtime}, the precision guard ships {sm['shipped']}: {sm['speedup']:.2f}x faster than "
                  f"the FP32 teacher at {sm['drop_points']:.2f} points -> aim (>= {AIM_SPEEDUP:g}x, <= {AIM_DROP:g} "
                  f"point) {'reached' if ok else 'not reached'}")
    for runtime, what, speed, drop in QUOTED_QUANTIZE_ONLY:
        print(f"quoted, not measured here (docs/benchmarks.md, torchvision resnet18 48x48): quantize-only {what} "
              f"on {runtime}: "
              f"{speed}x{f' at {drop} points' if drop is not None else ''}")
    return summary


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(7 * len(results), 5), squeeze=False)
    for ax, (data, rows) in zip(axes[0], results.items(), strict=True):
        for (label, runtime, precision), r in rows.items():
            color = "tab:blue" if runtime == "onnxruntime" else "tab:orange"
            ax.scatter(r["p50_ms"], 100 * r["accuracy"], marker="o" if label == "teacher" else "*", s=90, color=color)
            ax.annotate(f"{label.replace('student ', '')} {precision}", (r["p50_ms"], 100 * r["accuracy"]), fontsize=7,
                        textcoords="offset points", xytext=(4, 3))
        ax.set_xscale("log")
        ax.set(title=f"{data}: blue ONNX Runtime, orange OpenVINO; o teacher, * students",
               xlabel="p50 latency, ms (batch 1, log)", ylabel="held-out top-1 accuracy, %")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["digits", "fonts"])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--ratio", type=float, nargs="+", default=[0.2, 0.18, 0.16],
                    help="student / teacher latency ratios (budgets.min_speedup = 1 / ratio), one build each")
    ap.add_argument("--max-accuracy-drop", type=float, default=AIM_DROP)
    ap.add_argument("--out", type=Path, default=Path("export/bench-runtimes"))
    args = ap.parse_args()
    threads = usable_cores()
    results, out = {}, {}
    for data in args.data:
        students, ctx, arts = {}, None, {}
        for ratio in args.ratio:
            folder = args.out / data / f"ratio-{ratio:g}"
            ctx_r, build_report = build_student(data, args.epochs, ratio, args.max_accuracy_drop, folder)
            if not (folder / "export" / "student.onnx").is_file():
                stopped = next(s for s in build_report.stages if s.status == "failed")
                print(f"{data}, ratio {ratio:g}: no student: {stopped.reason}")
                continue
            arch, params = build_report.student["arch"], build_report.student["params"]
            label = f"student {'-'.join(str(w) for w in arch.get('widths', [])) or arch['family']}"
            if label in students:
                print(f"{data}, ratio {ratio:g}: the search picked {arch} again; measured once")
                continue
            students[label] = {"arch": arch, "params": params, "ratio": ratio, "report": build_report}
            if ctx is None:
                ctx = ctx_r
                arts |= artifacts(ctx, folder, "teacher", "teacher")
            arts |= artifacts(ctx, folder, "student", label)
        if not students:
            continue
        rows = measure(ctx, arts, threads)
        out[data] = {"summary": report(data, ctx, students, rows),
                     "students": {k: {kk: vv for kk, vv in v.items() if kk != "report"} for k, v in students.items()},
                     "rows": {" ".join(k): v for k, v in rows.items()}}
        results[data] = rows
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runtimes.json").write_text(json.dumps(out, indent=2, default=str))
    if results:
        plot(results, args.out / "runtimes.png")
        print(f"\nwrote {args.out / 'runtimes.json'} and {args.out / 'runtimes.png'}")


if __name__ == "__main__":
    main()
