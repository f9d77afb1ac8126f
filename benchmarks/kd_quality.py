"""Distillation quality: teacher, the student trained from scratch, and the student distilled by each method, on the
embedded data sets over several seeds; held-out accuracy (mean +- sd) and the share of the teacher-scratch gap
each method closes. A method more than one sd below scratch is flagged.

    python benchmarks/kd_quality.py --data digits fonts shapes [--seeds 0 1 2] [--epochs N] [--jobs K]
        [--methods kd dkd ...] [--sweep | --sweep-also shapes] [--budget-s S] [--deadline-s S] [--out DIR]

gap closed = (acc(method) - acc(scratch)) / (acc(teacher) - acc(scratch)), from the mean accuracy over seeds.
Every run goes through the distill stage (train_student), the same code `edgekd distill` runs, with the config
defaults except what a row's label says; scratch is method `ce` with the same budget and augmentation. The teacher
and the data split are fixed (seed 0); the seeds vary the student's initialization, data order and augmentation.
--sweep replaces the method rows by a grid over the default recipe (temperature, loss weight, augmentation and
mixing, learning rate), the table the defaults were chosen from; --sweep-also adds that grid to the given sets.
--jobs runs trainings in parallel processes (on one GPU they share it); --budget-s stops starting runs after that
many seconds (counted once the sets and teachers are ready), --deadline-s stops waiting, and the table says which
rows are incomplete. Writes kd_quality.json, kd_quality.md and kd_quality.png to --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

# Students small enough to leave a gap to the embedded teachers (fonts, shapes: resnet [32, 64, 128] x 2, about
# 700k parameters; digits' is now the deep, narrow default of docs/architecture.md, 0.969 held out, below this
# digits student's scratch accuracy, so its gap closed is not meaningful until that teacher is retrained).
# shapes' student has 1/9 of its teacher's parameters, near the anchor tables' ResNet8x4 / ResNet32x4 (1/6);
# the 1/35 student it replaced (resnet [8, 16, 32] x 1) is measured beside it in docs/benchmarks.md.
STUDENTS = {
    "digits": {"family": "resnet", "widths": [4, 8, 16], "blocks": [1, 1, 1]},
    "fonts": {"family": "resnet", "widths": [8, 16, 32], "blocks": [1, 1, 1]},
    "shapes": {"family": "resnet", "widths": [16, 32, 64], "blocks": [1, 1, 1]},
}
# ta+kd's assistant, between each student and the teacher
ASSISTANTS = {"digits": {"family": "resnet", "widths": [16, 32, 64], "blocks": [1, 1, 1]},
              "fonts": {"family": "resnet", "widths": [16, 32, 64], "blocks": [1, 1, 1]},
              "shapes": {"family": "resnet", "widths": [32, 64, 128], "blocks": [1, 1, 1]}}
EPOCHS = {"digits": 40, "fonts": 20, "shapes": 30}  # the patient schedule; --epochs overrides
# Seeds per set (--seeds overrides for all). digits has 360 held-out images, so one image is 0.28 points, about
# the sd of its runs: 3 seeds cannot tell a method 2 images under scratch from noise (seeds 0-2 flagged `feature`
# there, which 10 seeds put level with scratch; docs/benchmarks.md). Its runs take seconds, so it gets 10.
SEEDS = {"digits": list(range(10)), "fonts": [0, 1, 2], "shapes": [0, 1, 2]}
METHODS = ["kd", "dkd", "normkd", "decomp", "feature", "at", "rkd", "ta+kd"]
# the sweep: one factor at a time around the default recipe (label -> method, distill overrides)
SWEEP = {
    "kd T=1": ("kd", {"temperature": 1.0}),
    "kd T=2": ("kd", {"temperature": 2.0}),
    "kd T=4": ("kd", {"temperature": 4.0}),
    "kd T=8": ("kd", {"temperature": 8.0}),
    "kd weight 0.5": ("kd", {"kd_weight": 0.5}),
    "kd weight 0.9": ("kd", {"kd_weight": 0.9}),
    "kd weight 1.0 (function matching)": ("kd", {"kd_weight": 1.0}),
    "kd no augmentation": ("kd", {"augment": "none", "mix": "none"}),
    "kd shift only": ("kd", {"augment": "shift", "mix": "none"}),
    "kd shift+mixup": ("kd", {"augment": "shift", "mix": "mixup"}),
    "kd shift+cutmix": ("kd", {"augment": "shift", "mix": "cutmix"}),
    "kd shift+mixup/cutmix": ("kd", {"augment": "shift", "mix": "mixup_cutmix"}),
    "kd lr 0.02": ("kd", {"lr": 0.02}),
    "kd lr 0.1": ("kd", {"lr": 0.1}),
    "scratch no augmentation": ("ce", {"augment": "none", "mix": "none"}),
    "dkd beta 1": ("dkd", {"dkd_beta": 1.0}),
    "dkd beta 2": ("dkd", {"dkd_beta": 2.0}),
    "dkd beta 8 (the paper's)": ("dkd", {"dkd_beta": 8.0}),
    "normkd T_norm 0.5": ("normkd", {"normkd_temperature_scale": 0.5}),
    "normkd T_norm 0.75": ("normkd", {"normkd_temperature_scale": 0.75}),
    "normkd T_norm 1.5": ("normkd", {"normkd_temperature_scale": 1.5}),
    "feature (auto's choice)": ("feature", {}),
    "kd+feature": ("kd+feature", {}),
}
SCRATCH = "ce (scratch)"


@dataclasses.dataclass(frozen=True)
class Job:
    data: str
    label: str
    method: str
    overrides: dict
    seed: int
    epochs: int
    device: str
    threads: int
    student: dict


_CONTEXTS: dict = {}  # per process: data name -> context (data and teacher loaded once)


def _context(data: str, device: str):
    if data not in _CONTEXTS:
        from rich.console import Console

        from edgekd.config import BuildConfig
        from edgekd.context import make_context

        _CONTEXTS[data] = make_context(BuildConfig(data=data, seed=0, device=device), Console(file=io.StringIO()))
    return _CONTEXTS[data]


def run(job: Job) -> tuple[Job, float, float]:
    """One distill stage in a scratch folder: (job, held-out torch accuracy, wall seconds)."""
    import torch
    from rich.console import Console

    from edgekd.distill.method import parse_method
    from edgekd.distill.stage import train_student

    torch.set_num_threads(job.threads)
    base = _context(job.data, job.device)
    distill = base.cfg.distill.model_copy(update={"method": job.method, "epochs": job.epochs, **job.overrides})
    if parse_method(job.method, distill).assistant:
        distill = distill.model_copy(update={"assistant_arch": ASSISTANTS[job.data]})
    with tempfile.TemporaryDirectory() as tmp:
        cfg = base.cfg.model_copy(update={"seed": job.seed, "distill": distill, "out": Path(tmp)})
        ctx = dataclasses.replace(base, cfg=cfg, out=Path(tmp), console=Console(file=io.StringIO()))
        start = time.perf_counter()
        info = train_student(ctx, job.student, parse_method(job.method, distill), resume=False)
        return job, info["torch_accuracy"], time.perf_counter() - start


def summarize(data: str, teacher: float, accs: dict[str, list[float]], secs: dict[str, list[float]],
              seeds: int) -> list[dict]:
    rows = []
    scratch = accs.get(SCRATCH, [])
    s_mean = statistics.fmean(scratch) if scratch else float("nan")
    s_sd = statistics.stdev(scratch) if len(scratch) > 1 else 0.0
    gap = teacher - s_mean
    for label, values in accs.items():
        mean = statistics.fmean(values)
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        closed = (mean - s_mean) / gap if gap > 0 else float("nan")
        # one sd needs two runs on each side: a single seed is never flagged
        below = label != SCRATCH and len(values) > 1 and len(scratch) > 1 and mean < s_mean - max(sd, s_sd)
        rows.append({"data": data, "row": label, "mean": mean, "sd": sd, "n": len(values), "complete": len(values)
                     == seeds, "gap_closed": closed, "below_scratch": below, "seconds": statistics.fmean(secs[label]),
                     "accuracies": values})
    return rows


def markdown(results: dict) -> str:
    lines = []
    for data, r in results.items():
        lines += [f"### {data}: teacher {r['teacher']:.4f}, student {r['student']} ({r['student_params']} params), "
                  f"{r['epochs']} epochs, seeds {r['seeds']}, {r['device']}", "",
                  "| row | accuracy (mean ± sd) | gap closed | s/run | flag |", "| --- | --- | --- | --- | --- |"]
        for row in r["rows"]:
            n = "" if row["complete"] else f" (n={row['n']})"
            flag = "BELOW SCRATCH" if row["below_scratch"] else ""
            lines.append(f"| {row['row']} | {row['mean']:.4f} ± {row['sd']:.4f}{n} | {100 * row['gap_closed']:.1f}% | "
                         f"{row['seconds']:.1f} | {flag} |")
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    """Accuracy (mean +- sd over seeds) per row, against the teacher (dashed) and scratch's mean +- sd (band).

    Accuracy rather than the share of the gap closed: on a set whose teacher is barely above scratch (fonts,
    digits) a share of a half-point gap reads as a disaster where the runs differ by a few images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widths = [max(4.0, 0.4 * len(r["rows"])) for r in results.values()]
    fig, axes = plt.subplots(1, len(results), figsize=(sum(widths), 4.5), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    for ax, (data, r) in zip(axes[0], results.items(), strict=True):
        rows, teacher = r["rows"], r["teacher"]
        colors = ["gray" if x["row"] == SCRATCH else "tab:red" if x["below_scratch"] else "tab:blue" for x in rows]
        ax.bar(range(len(rows)), [x["mean"] for x in rows], yerr=[x["sd"] for x in rows], color=colors, capsize=3)
        scratch = next((x for x in rows if x["row"] == SCRATCH), None)
        if scratch is not None:
            ax.axhspan(scratch["mean"] - scratch["sd"], scratch["mean"] + scratch["sd"], color="gray", alpha=0.2)
        ax.axhline(teacher, color="black", linestyle="--", linewidth=1, label=f"teacher {teacher:.3f}")
        low = min([x["mean"] - x["sd"] for x in rows] + [teacher])
        high = max([x["mean"] + x["sd"] for x in rows] + [teacher])
        ax.set_ylim(max(0.0, low - 0.5 * (teacher - low) - 0.01), min(1.0, high + 0.01))
        ax.set_xticks(range(len(rows)), [x["row"] for x in rows], rotation=60, ha="right", fontsize=7)
        ax.set(ylabel="held-out accuracy (mean ± sd over seeds)",
               title=f"{data}: gap {100 * (teacher - r['scratch']):.1f} points")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", nargs="+", default=["digits", "fonts", "shapes"], choices=sorted(STUDENTS))
    ap.add_argument("--epochs", type=int, default=None, help="default: " + ", ".join(f"{k} {v}"
                                                                                     for k, v in EPOCHS.items()))
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="seeds for every set; default: " + ", ".join(f"{k} {len(v)}" for k, v in SEEDS.items()))
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--sweep", action="store_true", help="rows of the recipe grid instead of the methods")
    ap.add_argument("--sweep-also", nargs="*", default=[], metavar="DATA",
                    help="sets that get the recipe grid's rows after the method rows, on the first seed only "
                         "(one pool, one budget)")
    ap.add_argument("--set", dest="sets", nargs="*", default=[], metavar="KEY=JSON",
                    help="distill config overrides for every row, values as JSON: lr=0.1 mix='\"none\"'")
    ap.add_argument("--student", type=json.loads, default=None, metavar="JSON",
                    help="the student for every set instead of the default one per set, as JSON: "
                         "'{\"family\": \"resnet\", \"widths\": [16, 32, 64], \"blocks\": [1, 1, 1]}'")
    ap.add_argument("--jobs", type=int, default=1, help="trainings in parallel processes")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--epoch-scale", type=float, default=1.0, help="multiply the per-set default epochs")
    ap.add_argument("--budget-s", type=float, default=None, help="start no run after this many seconds")
    ap.add_argument("--deadline-s", type=float, default=None,
                    help="stop waiting after this many seconds: runs still going are dropped (and counted)")
    ap.add_argument("--prepare-only", action="store_true",
                    help="generate the sets and train the embedded teachers (cached), then exit")
    ap.add_argument("--out", type=Path, default=Path("kd_quality_out"))
    args = ap.parse_args()
    import torch

    from edgekd.models.families import count_params, create_model

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else \
        ("cpu" if args.device == "auto" else args.device)
    common = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.sets)}
    start = time.perf_counter()
    methods = [(m, m, {}) for m in args.methods]
    sweep = [(k, *SWEEP[k]) for k in SWEEP]
    rows = [(SCRATCH, "ce", {})] + (sweep if args.sweep else methods)
    threads = max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    torch.set_num_threads(threads)  # the teachers trained here first use no more cores than a run does
    results, jobs = {}, []
    for data in list(args.data):
        try:
            base = _context(data, device)  # trains the embedded teacher here, once, before any parallel run
        except ImportError as e:  # e.g. scikit-learn (digits) missing on a bare GPU box: the other sets still run
            print(f"[kd_quality] {data}: skipped, cannot load it ({e})", flush=True)
            args.data.remove(data)
            continue
        p = base.data.preprocessing
        epochs = args.epochs or max(1, round(args.epoch_scale * EPOCHS[data]))
        arch = args.student or STUDENTS[data]
        d = base.cfg.distill
        seeds = args.seeds or SEEDS[data]
        results[data] = {"teacher": base.teacher_accuracy, "student": arch, "epochs": epochs, "seeds": seeds,
                         "device": device, "student_params": count_params(create_model(arch, p.channels,
                                                                                       base.data.num_classes,
                                                                                       p.input_size)),
                         "recipe": {**d.model_dump(mode="json"), **common}}
        print(f"[kd_quality] {data}: {base.data.num_classes} classes, {len(base.data.train_idx)} train / "
              f"{len(base.data.val_idx)} held-out at {p.input_size[0]}x{p.input_size[1]}x{p.channels}; teacher "
              f"{base.teacher.params} params {base.teacher_accuracy:.4f}; student {results[data]['student_params']} "
              f"params; {epochs} epochs, batch {d.batch_size}, lr {d.lr}, T {d.temperature}, kd_weight "
              f"{d.kd_weight}, augment {common.get('augment', d.augment)}, mix {common.get('mix', d.mix)}; "
              f"{device}", flush=True)
        for i, seed in enumerate(seeds):  # the grid of --sweep-also on the first seed only
            extra = sweep if data in args.sweep_also and not args.sweep and i == 0 else []
            jobs += [Job(data, label, method, {**common, **over}, seed, epochs, device, threads, arch)
                     for label, method, over in rows + extra]
    # seed-major over all sets, the grid after the methods: with --budget-s every set and method gets its first
    # seeds before any gets its last
    jobs.sort(key=lambda j: (results[j.data]["seeds"].index(j.seed), j.label in SWEEP))
    if args.prepare_only:
        print(f"[kd_quality] prepared {', '.join(args.data)} in {time.perf_counter() - start:.0f} s")
        return
    start = time.perf_counter()  # --budget-s and --deadline-s count from here: sets and teachers are ready
    accs: dict = {d: {} for d in args.data}
    secs: dict = {d: {} for d in args.data}
    skipped = dropped = 0
    pool = ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        pending, queue = set(), list(jobs)
        while queue or pending:
            while queue and len(pending) < args.jobs:
                if args.budget_s is not None and time.perf_counter() - start > args.budget_s:
                    skipped += len(queue)
                    queue.clear()
                    break
                pending.add(pool.submit(run, queue.pop(0)))
            if not pending:
                break
            left = None if args.deadline_s is None else args.deadline_s - (time.perf_counter() - start)
            if left is not None and left <= 0:
                dropped = len(pending)
                print(f"[kd_quality] deadline: {dropped} runs still going are dropped", flush=True)
                break
            done, pending = wait(pending, timeout=left, return_when=FIRST_COMPLETED)
            for f in done:
                job, acc, sec = f.result()
                accs[job.data].setdefault(job.label, []).append(acc)
                secs[job.data].setdefault(job.label, []).append(sec)
                print(f"[kd_quality] {time.perf_counter() - start:6.0f} s  {job.data:6s} {job.label:34s} seed "
                      f"{job.seed}: {acc:.4f} ({sec:.0f} s)", flush=True)
        skipped += len(queue)  # left in the queue at the deadline
    finally:
        for proc in list(getattr(pool, "_processes", {}).values()):  # runs past the deadline: stop them now
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
    for data in args.data:
        order = [r[0] for r in rows + sweep if r[0] in accs[data]]
        results[data]["rows"] = summarize(data, results[data]["teacher"], {k: accs[data][k] for k in order},
                                          secs[data], len(results[data]["seeds"]))
        results[data]["scratch"] = statistics.fmean(accs[data][SCRATCH]) if SCRATCH in accs[data] else float("nan")
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"wall_s": time.perf_counter() - start, "jobs": args.jobs, "skipped_runs": skipped, "dropped_runs": dropped,
            "torch": torch.__version__, "command": " ".join(sys.argv)}
    (args.out / "kd_quality.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    text = markdown(results)
    (args.out / "kd_quality.md").write_text(text)
    try:
        plot(results, args.out / "kd_quality.png")
    except ImportError:
        print("[kd_quality] matplotlib is not installed: no plot")
    print(text)
    flagged = [f"{r['data']}/{r['row']}" for res in results.values() for r in res["rows"] if r["below_scratch"]]
    print(f"[kd_quality] done in {meta['wall_s']:.0f} s; {skipped} runs not started (--budget-s or "
          f"--deadline-s), {dropped} dropped "
          f"(--deadline-s); below scratch "
          f"by more than one sd: {', '.join(flagged) or 'none'}; wrote {args.out}/kd_quality.{{json,md,png}}")


if __name__ == "__main__":
    main()
