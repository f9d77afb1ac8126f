"""Distillation quality: teacher, the student trained from scratch, and the student distilled by each method,
on the embedded data sets; held-out accuracy and the share of the teacher-student gap each method closes.

    python benchmarks/kd_quality.py --data fonts [--epochs 10] [--seeds 0 1]
        [--methods kd dkd ...] [--student '{"family": "resnet", ...}'] [--plot kd_quality_fonts.png]

gap closed = (acc(method) - acc(scratch)) / (acc(teacher) - acc(scratch)), from the mean accuracy over seeds.
Every run goes through the distill stage (train_student), the same code `edgekd distill` runs, with the
config defaults except what a row's label says. The teacher and the data split are fixed (seed 0); the seeds vary
the student's initialization, data order and augmentation draws. Rows after the methods measure training options:
augmentation, and teacher-logit caching with a fixed set of views per image (FKD style), with its time.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from edgekd.config import BuildConfig
from edgekd.context import make_context
from edgekd.distill.catalog import DEFAULT_METHOD
from edgekd.distill.method import parse_method
from edgekd.distill.stage import train_student
from edgekd.models.embedded_teacher import RECIPES
from edgekd.models.families import count_params, create_model

STUDENTS = {  # small enough to leave a gap to the embedded teachers (resnet [32, 64, 128] x 2)
    "digits": {"family": "resnet", "widths": [4, 8, 16], "blocks": [1, 1, 1]},
    "fonts": {"family": "resnet", "widths": [8, 16, 32], "blocks": [1, 1, 1]},
}
ASSISTANTS = {  # for ta+kd: between student and teacher in width
    "digits": {"family": "resnet", "widths": [16, 32, 64], "blocks": [1, 1, 1]},
    "fonts": {"family": "resnet", "widths": [16, 32, 64], "blocks": [1, 1, 1]},
}
EPOCHS = {"digits": 20, "fonts": 10}
METHODS = ["kd", "dkd", "normkd", "decomp", "feature", "at", "rkd", "dkd+feature", "ta+kd"]
OPTIONS = {  # label -> (method, distill overrides): training options rather than methods
    "decomp weak x4": ("decomp", {"decomp_weak_weight": 4.0}),
    "kd +shift": ("kd", {"augment": "shift"}),
    "kd +shift 4 views cached": ("kd", {"augment": "shift", "augment_views": 4, "cache_teacher": True}),
    "kd cached (no aug)": ("kd", {"cache_teacher": True}),
}


def run(base, arch: dict, method: str, overrides: dict, seed: int, assistant: dict,
        cache: bool = False) -> tuple[float, float]:
    """One distill stage in a scratch folder; (held-out torch accuracy, wall seconds).

    cache: reuse teacher logits where that changes nothing (a logit-only method, no augmentation: every epoch
    feeds the teacher the same inputs), to spend CPU time on students rather than on repeated teacher passes."""
    distill = base.cfg.distill.model_copy(update={"method": method, **overrides})
    plan = parse_method(method, distill)
    if plan.assistant:
        distill = distill.model_copy(update={"assistant_arch": assistant})
    if cache and plan.needs_teacher and not plan.needs_features and distill.augment == "none":
        distill = distill.model_copy(update={"cache_teacher": True})
    with tempfile.TemporaryDirectory() as tmp:
        cfg = base.cfg.model_copy(update={"seed": seed, "distill": distill, "out": Path(tmp)})
        ctx = dataclasses.replace(base, cfg=cfg, out=Path(tmp), console=Console(file=io.StringIO()))
        start = time.perf_counter()
        info = train_student(ctx, arch, parse_method(method, distill), resume=False)
        return info["torch_accuracy"], time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="digits", choices=sorted(RECIPES))
    ap.add_argument("--epochs", type=int, default=None, help="default: 20 on digits, 10 on fonts")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--options", nargs="*", default=list(OPTIONS), help="rows from: " + ", ".join(OPTIONS))
    ap.add_argument("--student", type=json.loads, default=None, help="student arch JSON")
    ap.add_argument("--plot", type=Path, default=None, help="bar chart of the gap closed (PNG)")
    ap.add_argument("--cache-teacher", action="store_true",
                    help="cache teacher logits in logit-only rows without augmentation (same result, less CPU)")
    args = ap.parse_args()
    epochs = args.epochs or EPOCHS[args.data]
    arch = args.student or STUDENTS[args.data]
    base = make_context(BuildConfig(data=args.data, seed=0, distill={"epochs": epochs}),
                        Console(file=io.StringIO()))
    t_acc = base.teacher_accuracy
    p = base.data.preprocessing
    s_params = count_params(create_model(arch, p.channels, base.data.num_classes, p.input_size))
    d = base.cfg.distill
    print(f"kd_quality --data {args.data}: {base.data.num_classes} classes, {len(base.data.train_idx)} train / "
          f"{len(base.data.val_idx)} held-out images at {p.input_size[0]}x{p.input_size[1]}")
    print(f"  teacher {base.teacher.source} ({base.teacher.params} params) held-out accuracy {t_acc:.4f}")
    print(f"  student {arch} ({s_params} params); assistant for ta: {ASSISTANTS[args.data]}")
    print(f"  {epochs} epochs, batch {d.batch_size}, {d.optimizer} lr {d.lr} {d.schedule}, T {d.temperature}, "
          f"seeds {args.seeds}, {base.device.type} ({torch.get_num_threads()} threads); default method now: "
          f"{DEFAULT_METHOD}; teacher logits cached where exact: {args.cache_teacher}")
    rows = [("ce (scratch)", "ce", {})] + [(m, m, {}) for m in args.methods] + [(k, *OPTIONS[k]) for k in args.options]
    results = {}
    print(f"{'row':28s} {'accuracy':>16s} {'gap closed':>11s} {'s/run':>7s}")
    print(f"{'teacher':28s} {t_acc:16.4f} {'':>11s} {'':>7s}")
    for label, method, overrides in rows:
        accs, secs = zip(*(run(base, arch, method, overrides, s, ASSISTANTS[args.data], args.cache_teacher)
                           for s in args.seeds), strict=True)
        mean = statistics.fmean(accs)
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        results[label] = mean
        scratch = results["ce (scratch)"]
        gap = (mean - scratch) / (t_acc - scratch) if t_acc > scratch else float("nan")
        print(f"{label:28s} {mean:9.4f} ± {sd:.4f} {100 * gap:10.1f}% {statistics.fmean(secs):7.1f}", flush=True)
    if args.plot:
        plot(results, t_acc, args)


def plot(results: dict, t_acc: float, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scratch = results["ce (scratch)"]
    labels = [k for k in results if k != "ce (scratch)"]
    gaps = [100 * (results[k] - scratch) / (t_acc - scratch) for k in labels]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar(labels, gaps)
    ax.axhline(100, color="gray", linestyle="--", linewidth=1)
    ax.set(ylabel="teacher-student gap closed (%)", title=f"kd_quality --data {args.data}")
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=100)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
