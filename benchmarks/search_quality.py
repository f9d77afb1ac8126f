"""How well do the training-free scores rank students by what they reach after distillation, and does the
search's pick beat a hand-picked student of the same measured latency?

    python benchmarks/search_quality.py --data shapes fonts --candidates 40 --seeds 0 1 2 --jobs 2 --out DIR
    python benchmarks/search_quality.py ... --merge-cache OTHER.json   # accuracies another machine measured
    python benchmarks/search_quality.py --render DIR/search_quality.json --out DIR2   # tables and plot only
    # the product's own question at 2-core scale: only candidates the search would accept for 3x, one band
    python benchmarks/search_quality.py --data fonts digits --accepted 3 --candidates 20 --epochs 3 --seeds 0 \
        --noise 4 --full 4 --full-epochs 10 --jobs 2 --out DIR

Per data set: draws candidates from every search space (resnet, mobilenetv2, mobilenetv3 and the teacher's
own family shrunk, equally many each, seeded) with fewer FLOPs than the teacher (machine independent, so
two machines draw the same pool); scores each with every registered score, timing each; distils each with
the distill config's defaults at run time (benchmarks/kd_pool.py; --epochs alone overrides) for every seed,
in --jobs processes; then Kendall tau and Spearman rho of every score against the mean post-KD accuracy over
seeds, with bootstrap intervals over candidates and the paired difference to `flops`. Then, within latency
bands (tertiles of the candidates' latency: ONNX Runtime on this host, one thread, timed interleaved; or
--latency predicted: the cost model, labelled so), the best-scoring candidate of the band against
mobilenet_v3_small's layout scaled into the band (the hand-picked student) and against the teacher's layout
with all widths scaled by one factor (the shrunk teacher). Every member of those two ladders is distilled
too, so any machine's latencies find their accuracies in the cache.

With --accepted SPEEDUP the pool is the question the search actually faces: candidates whose speed-up over the
teacher, measured here before any training, lies in one band from SPEEDUP up (draw_accepted); the tables then
add, per score, the accuracy of its top-1 and top-3 against the best of the pool, the noise floor over seeds
(--noise) and whether the short schedule ranks as a longer one does (--full), and say which score the default
should be by the rule docs/benchmarks.md states.

Writes search_quality.md, search_quality.json and search_quality.png under --out; the accuracy cache
(--cache, default OUT/search_quality_accuracies.json) is keyed by (arch, recipe hash, data, seed).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kd_pool import AccuracyCache, Pool, base_context, cache_key, recipe_hash  # noqa: E402

from edgekd.models.embedded_teacher import RECIPES  # noqa: E402
from edgekd.models.families import count_params, create_model, round8, torchvision_arch  # noqa: E402
from edgekd.progress import PlainProgress  # noqa: E402
from edgekd.search import make_probe  # noqa: E402
from edgekd.search.scores import list_scores, measure, members, pool_scores  # noqa: E402
from edgekd.search.spaces import WIDTH_MULTS, arch_key, create_space, shrunk_of  # noqa: E402

BOOTSTRAP = 1000
BANDS = 3
ACCEPTED_BAND = 1.5  # --accepted: measured speed-ups from the bar to 1.5x the bar count as one latency band
ACCEPTED_DRAWS = 12  # --accepted: candidates drawn (and priced by the cost model) per candidate kept
ACCEPTED_TIMED = 2  # --accepted: of those, candidates exported and timed per candidate kept
NOISE_SEEDS = 3  # --noise N: the first N candidates are distilled with this many seeds
CONSOLE = Console(highlight=False, soft_wrap=True)


def say(text: str) -> None:
    CONSOLE.print(text, markup=False)


def teacher_arch(ctx) -> dict:
    source = ctx.teacher.source
    if source.startswith("embedded:"):
        return RECIPES[ctx.cfg.data][0]
    full = torchvision_arch(source.removeprefix("torchvision:"))
    if full is None:
        raise SystemExit(f"search_quality: teacher {source} is of no known family; use an embedded data set")
    return full


def flops_of(ctx, arch: dict) -> float:
    from edgekd.cost.ops import kernels_from_torch

    model = create_model(arch, ctx.data.preprocessing.channels, ctx.data.num_classes, ctx.input_shape[1:])
    return float(sum(k.flops for k in kernels_from_torch(model, (1, *ctx.input_shape))[0]))


def draw(ctx, n: int, seed: int, flops_share: tuple[float, float] = (0.0, 1.0)) -> list[dict]:
    """n distinct archs, equally many per space, each with FLOPs within `flops_share` of the teacher's
    (default: fewer than the teacher); space order fixed."""
    t_flops = flops_of(ctx, teacher_arch(ctx))
    low, high = flops_share[0] * t_flops, flops_share[1] * t_flops
    pool = [create_space(s, None) for s in ("resnet", "mobilenetv2", "mobilenetv3")]
    pool.append(shrunk_of(teacher_arch(ctx)))
    rng = np.random.default_rng(seed)
    quota = [n // len(pool) + (i < n % len(pool)) for i in range(len(pool))]
    out, seen = [], set()
    for space, k in zip(pool, quota, strict=True):
        got = tries = 0
        while got < k and tries < 50 * k:
            tries += 1
            arch = space.sample(rng)
            if arch_key(arch) in seen or not low <= flops_of(ctx, arch) < high:
                continue
            seen.add(arch_key(arch))
            out.append({"space": space.name, "arch": arch})
            got += 1
    return out


def draw_accepted(ctx, args, pool: Pool, folder: Path) -> tuple[list[dict], dict[str, float], str]:
    """The candidates the search would accept for `--accepted` x on this host, in one band of similar latency:
    draws ACCEPTED_DRAWS x --candidates under the teacher's FLOPs over the bar; times the ACCEPTED_TIMED x
    --candidates whose predicted speed-up lies nearest the band's middle with the teacher (ONNX Runtime CPU,
    1 thread, interleaved in one process, before any distillation starts); keeps the first --candidates (the
    spaces taking turns) whose measured speed-up lies in [bar, bar x ACCEPTED_BAND]."""
    need = args.accepted
    drawn = draw(ctx, ACCEPTED_DRAWS * args.candidates, args.draw_seed, (1 / (need * 8), 1 / need))
    teacher = teacher_arch(ctx)
    predicted = _predicted(ctx, {arch_key(a): a for a in [teacher] + [c["arch"] for c in drawn]})
    middle = math.log(need * math.sqrt(ACCEPTED_BAND))

    def distance(c: dict) -> float:
        return abs(math.log(predicted[arch_key(teacher)] / predicted[arch_key(c["arch"])]) - middle)

    # as many timed from each space (the spaces' predictions err differently), then taken in turns, space
    # by space, so the kept candidates mix the spaces
    spaces = list(dict.fromkeys(c["space"] for c in drawn))
    quota = math.ceil(ACCEPTED_TIMED * args.candidates / len(spaces))
    by_space = [sorted((c for c in drawn if c["space"] == s), key=distance)[:quota] for s in spaces]
    drawn = [c for turn in itertools.zip_longest(*by_space) for c in turn if c is not None]
    lat = latencies(ctx, [teacher] + [c["arch"] for c in drawn], "measured", pool, folder)()
    teacher_ms = lat[arch_key(teacher)]
    for c in drawn:
        c["speedup"] = teacher_ms / lat[arch_key(c["arch"])]
    inside = [c for c in drawn if need <= c["speedup"] <= need * ACCEPTED_BAND][:args.candidates]
    say(f"timed {len(drawn)} drawn candidates with the teacher ({teacher_ms:.3g} ms): speed-ups "
        f"{min(c['speedup'] for c in drawn):.2f}..{max(c['speedup'] for c in drawn):.2f}x; {len(inside)} kept "
        f"in [{need:g}, {need * ACCEPTED_BAND:g}]x" + ("" if len(inside) == args.candidates else
                                                       f" (fewer than --candidates {args.candidates})"))
    label = (f"measured: ONNX Runtime CPU, 1 thread, interleaved with the teacher ({teacher_ms:.3g} ms); "
             f"speed-up {need:g}..{need * ACCEPTED_BAND:g}x")
    return inside, lat, label


def score_all(ctx, pool: list[dict], names: list[str]) -> dict[str, float]:
    """Every per-candidate score of every candidate (into pool[i]["scores"]); seconds per candidate per score."""
    probe = make_probe(ctx)
    probe = type(probe)(probe.x.to(ctx.device), probe.y.to(ctx.device), probe.classes,
                        type(probe.teacher)(*(t.to(ctx.device) if t is not None else None
                                              for t in (probe.teacher.logits, probe.teacher.feature,
                                                        probe.teacher.cams)), probe.teacher.source))
    base = sorted({m for n in names for m in members(n)})
    seconds = dict.fromkeys(base, 0.0)
    for c in pool:
        model = ctx.new_student(c["arch"]).to(ctx.device)
        c["params"] = count_params(model)
        c["scores"] = {}
        for m in base:
            if ctx.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            c["scores"] |= measure([m], model, probe)
            if ctx.device.type == "cuda":
                torch.cuda.synchronize()
            seconds[m] += time.perf_counter() - start
    return {m: s / len(pool) for m, s in seconds.items()}


def ladders(ctx) -> dict[str, list[dict]]:
    """The hand-picked student's layouts (mobilenet_v3_small, widest and deepest first) and the teacher's
    layout with every width scaled by one factor (the shrunk teacher), from largest to smallest."""
    hand = [{"family": "mobilenetv3", "base": "small", "width": w, "depth": d}
            for d in ([1, 2, 3, 2, 3], [1, 1, 1, 1, 1]) for w in reversed(WIDTH_MULTS)]
    full, shrunk = teacher_arch(ctx), []
    for f in (1 / 2, 3 / 8, 1 / 4, 3 / 16, 1 / 8):
        arch = dict(full)
        if full["family"] == "resnet":
            arch["widths"] = [round8(w * f) for w in full["widths"]]
            if "stem" in full:
                arch["stem"] = round8(full["stem"] * f)
        else:
            arch["width"] = f
        if arch_key(arch) not in {arch_key(a) for a in shrunk}:
            shrunk.append(arch)
    return {"hand-picked mobilenet_v3_small": hand, "shrunk teacher": shrunk}


def latencies(ctx, archs: list[dict], how: str, pool: Pool, folder: Path):
    """Starts what latency needs; returns a function that finishes it: () -> {arch_key: ms}, measured (ONNX
    Runtime CPU, 1 thread, every model interleaved in one process) or predicted by the cost model."""
    keys = {arch_key(a): a for a in archs}
    if how == "predicted":
        return lambda: _predicted(ctx, keys)
    names = {f"m{i:03d}": k for i, k in enumerate(keys)}
    wait = pool.export({n: keys[k] for n, k in names.items()}, ctx.input_shape, ctx.data.num_classes, folder)

    def finish() -> dict[str, float]:
        from edgekd.interleave import time_interleaved
        from edgekd.runtimes.onnxruntime_backend import OrtSession

        bar = PlainProgress(CONSOLE, "export", len(names), "models")
        files = wait(lambda d, t: bar.update(d))
        bar.finish()
        x = np.random.default_rng(0).standard_normal((1, *ctx.input_shape)).astype(np.float32)
        sessions = {n: OrtSession(files[n], threads=1) for n in names}
        timed = time_interleaved({n: [lambda s=s: s.run(x)] for n, s in sessions.items()}, seconds=3.0)
        return {names[n]: timed.latency_ms(n) for n in names}

    return finish


def _predicted(ctx, keys: dict[str, dict]) -> dict[str, float]:
    from edgekd.cost.ops import kernels_from_torch
    from edgekd.cost.roofline import predict_kernels

    out = {}
    for k, a in keys.items():
        model = create_model(a, ctx.data.preprocessing.channels, ctx.data.num_classes, ctx.input_shape[1:])
        kernels, peak = kernels_from_torch(model, (1, *ctx.input_shape))
        out[k] = predict_kernels(kernels, peak, ctx.profile, "fp32", ctx.target.runtime)[0].value
    return out


def bootstrap(score: np.ndarray, acc: np.ndarray, ref: np.ndarray, rng) -> dict:
    """Kendall tau, Spearman rho and their 95% bootstrap intervals (candidates resampled), and the paired
    difference of tau to the reference score's."""
    warnings.simplefilter("ignore", stats.ConstantInputWarning)  # a resample may repeat one candidate
    n = len(acc)
    tau = stats.kendalltau(score, acc)[0]
    rho = stats.spearmanr(score, acc)[0]
    taus, rhos, diffs = [], [], []
    for _ in range(BOOTSTRAP):
        i = rng.integers(0, n, n)
        t = stats.kendalltau(score[i], acc[i])[0]
        taus.append(t)
        rhos.append(stats.spearmanr(score[i], acc[i])[0])
        diffs.append(t - stats.kendalltau(ref[i], acc[i])[0])

    def ci(v):
        v = np.asarray(v, dtype=float)
        v = v[np.isfinite(v)]
        return [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if len(v) else [math.nan, math.nan]

    return {"kendall_tau": float(tau), "kendall_ci": ci(taus), "spearman_rho": float(rho), "spearman_ci": ci(rhos),
            "tau_minus_flops": float(tau - stats.kendalltau(ref, acc)[0]), "tau_minus_flops_ci": ci(diffs)}


def band_table(cands: list[dict], ladder: dict[str, list[dict]], lat: dict, acc_of, names: list[str]) -> list[dict]:
    """Per measured-latency band (tertiles of the candidates' latencies): the best-scoring candidate inside the
    band for each score (a rank ensemble ranks the band's candidates), and each ladder's largest member inside
    the band (else the largest below it, marked)."""
    ms = np.array([lat[arch_key(c["arch"])] for c in cands])
    edges = np.quantile(ms, np.linspace(0, 1, BANDS + 1))
    edges[0] = 0.0
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = [c for c, m in zip(cands, ms, strict=True) if lo < m <= hi]
        row = {"band_ms": [float(lo), float(hi)], "candidates": len(inside), "picks": {}, "baselines": {}}
        for name in names:
            values = pool_scores(name, [c["scores"] for c in inside])
            best = inside[int(np.argmax(values))]
            row["picks"][name] = {"arch": best["arch"], "space": best["space"], "ms": lat[arch_key(best["arch"])],
                                  **acc_of(best["arch"])}
        for label, archs in ladder.items():
            fits = [a for a in archs if lat[arch_key(a)] <= hi]
            within = [a for a in fits if lat[arch_key(a)] > lo]
            a = max(within or fits, key=lambda a: lat[arch_key(a)], default=None)  # the largest that fits
            row["baselines"][label] = None if a is None else {
                "arch": a, "ms": lat[arch_key(a)], "in_band": bool(within), **acc_of(a)}
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", nargs="+", default=["fonts"])
    ap.add_argument("--candidates", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=None, help="distill.epochs (default: the config default)")
    ap.add_argument("--jobs", type=int, default=1, help="distillation processes in parallel")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--latency", default="measured", choices=["measured", "predicted"])
    ap.add_argument("--out", type=Path, default=Path("export/benchmarks/search_quality"))
    ap.add_argument("--cache", type=Path, default=None, help="default: OUT/search_quality_accuracies.json")
    ap.add_argument("--merge-cache", type=Path, nargs="*", default=[], help="cache files to add to --cache first")
    ap.add_argument("--draw-seed", type=int, default=0)
    ap.add_argument("--accepted", type=float, default=None, metavar="SPEEDUP",
                    help="rank only candidates the search would accept for this speed-up, in one latency band "
                         f"(measured on this host: SPEEDUP..{ACCEPTED_BAND:g}xSPEEDUP over the teacher)")
    ap.add_argument("--noise", type=int, default=0, metavar="N",
                    help=f"also distil the first N candidates with {NOISE_SEEDS - 1} more seeds (the noise floor)")
    ap.add_argument("--full", type=int, default=0, metavar="N",
                    help="also distil the first N candidates for --full-epochs (with --epochs: does the short "
                         "schedule rank them as the long one does?)")
    ap.add_argument("--full-epochs", type=int, default=None, help="default: the distill config's epochs")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="stop starting distillation runs after this many seconds of the whole benchmark (shared "
                         "equally among the sets); what is not run is left out of the tables, and said")
    ap.add_argument("--render", type=Path, default=None,
                    help="only re-render the tables and plot of a search_quality.json into --out (no work)")
    args = ap.parse_args()
    if args.render is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        render(json.loads(args.render.read_text()), args.out)
        return
    if args.candidates < 4 or not args.seeds:
        raise SystemExit("search_quality: --candidates needs at least 4 (one per space) and --seeds at least one")
    for d in args.data:
        if d not in RECIPES:
            sys.stderr.write(f"search_quality: --data {d}: no embedded teacher; use one of {', '.join(RECIPES)}\n")
            raise SystemExit(2)
    args.out.mkdir(parents=True, exist_ok=True)
    cache = AccuracyCache(args.cache or args.out / "search_quality_accuracies.json")
    for other in args.merge_cache:
        say(f"merged {cache.merge(other)} accuracies from {other} into {cache.path}")
    names = list_scores()
    started, started_mono = time.perf_counter(), time.monotonic()
    report: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "sets": {}}
    with Pool(args.jobs) as pool:
        preps = {data: prepare(data, args, pool) for data in args.data}
        # Every candidate and every member of the baselines' ladders is distilled (whichever band a machine's
        # latencies put it in, its accuracy is known), queued after the exports, seed by seed across the sets:
        # runs cut off by --budget-s leave whole seeds measured. This process scores and times meanwhile.
        tasks = [(data, a, s) for s in args.seeds for data, p in preps.items() for a in p["archs"]]
        # --noise: more seeds on the first candidates (the noise floor); --full: the first candidates again for
        # --full-epochs (does the short schedule rank as the long one does?)
        tasks += [(data, c["arch"], s) for s in noise_seeds(args) for data, p in preps.items()
                  for c in p["cands"][:args.noise]]
        wait = pool.distil(cache, tasks, args.device, args.epochs, {d: p["recipe"] for d, p in preps.items()})
        full = ({data: recipe_hash(base_context(data, args.device, args.full_epochs)) for data in preps}
                if args.full else {})
        wait_full = pool.distil(cache, [(data, c["arch"], args.seeds[0]) for data, p in preps.items()
                                        for c in p["cands"][:args.full]], args.device, args.full_epochs, full)
        for data, prep in preps.items():
            score_and_time(data, prep, names)
        deadline = started_mono + args.budget_s - 15 if args.budget_s else math.inf  # tables, plot: ~15 s
        bar = PlainProgress(CONSOLE, "distil", len(tasks), "runs")
        start = time.perf_counter()
        trained, cached, dropped = (a + b for a, b in zip(wait(deadline, lambda k, t: bar.update(k)),
                                                          wait_full(deadline), strict=True))
        bar.finish(f"{trained} trained, {cached} read from {cache.path}"
                   + (f", {dropped} NOT run: --budget-s reached" if dropped else ""))
        run = {"trained": trained, "cached": cached, "dropped": dropped, "distil_wall_s": time.perf_counter() - start}
    for data, prep in preps.items():
        report["sets"][data] = summarise(data, prep, args, names, cache, run)
    report["seconds"] = time.perf_counter() - started
    render(report, args.out)


def noise_seeds(args) -> list[int]:
    return [max(args.seeds) + 1 + i for i in range(NOISE_SEEDS - len(args.seeds))] if args.noise else []


def prepare(data: str, args, pool: Pool) -> dict:
    """Teacher (trained on first use), candidates and the baselines' ladders; starts their ONNX exports."""
    ctx = base_context(data, args.device, args.epochs)
    recipe = recipe_hash(ctx)
    d = ctx.cfg.distill
    say(f"\n== {data}: {ctx.data.num_classes} classes, input {ctx.input_shape}, {len(ctx.data.train_idx)} train / "
        f"{len(ctx.data.val_idx)} held-out; teacher {ctx.teacher.source} accuracy {ctx.teacher_accuracy:.4f}")
    say(f"recipe (config defaults{'' if args.epochs is None else f', epochs set to {args.epochs}'}): {d.method}, "
        f"{d.epochs} epochs, batch {d.batch_size}, {d.optimizer} lr {d.lr:g} {d.schedule}, augment {d.augment}; "
        f"recipe hash {recipe}; device {ctx.device.type}, {args.jobs} jobs")
    if args.accepted:  # one band of accepted candidates: no ladders, latencies timed before training
        cands, lat, label = draw_accepted(ctx, args, pool, args.out / f"onnx-{data}")
        prep = {"ladder": {}, "latency": lambda: lat, "latency_label": label}
    else:
        cands = draw(ctx, args.candidates, args.draw_seed)
        prep = {"ladder": ladders(ctx)}
    by_space = {s: sum(c["space"] == s for c in cands) for s in dict.fromkeys(c["space"] for c in cands)}
    say(f"{len(cands)} candidates: {by_space}")
    archs = [c["arch"] for c in cands] + [a for v in prep["ladder"].values() for a in v]
    if not args.accepted:
        prep["latency"] = latencies(ctx, archs, args.latency, pool, args.out / f"onnx-{data}")
        prep["latency_label"] = (f"measured: ONNX Runtime CPU, 1 thread, interleaved, while {args.jobs} "
                                 "distillation processes ran" if args.latency == "measured" else "predicted")
    return prep | {"ctx": ctx, "recipe": recipe, "cands": cands, "archs": archs}


def score_and_time(data: str, prep: dict, names: list[str]) -> None:
    """Scores every candidate (seconds per candidate while the pool trains), then the latencies."""
    ctx, cands = prep["ctx"], prep["cands"]
    prep["cost"] = score_all(ctx, cands, names)
    say(f"{data}: score cost, seconds per candidate on {ctx.device.type} ({torch.get_num_threads()} threads, "
        "measured while the pool exports and trains): "
        + ", ".join(f"{m} {s:.3f}" for m, s in sorted(prep["cost"].items(), key=lambda kv: kv[1])))
    prep["lat"] = lat = prep["latency"]()
    span = [lat[arch_key(c["arch"])] for c in cands]
    say(f"{data}: latency ({prep['latency_label']}): candidates {min(span):.3g}..{max(span):.3g} ms")


def summarise(data: str, prep: dict, args, names: list[str], cache: AccuracyCache, run: dict) -> dict:
    ctx, recipe, cands, lat = prep["ctx"], prep["recipe"], prep["cands"], prep["lat"]

    def acc_of(arch: dict) -> dict:
        entries = [cache.entries.get(cache_key(arch, recipe, data, s)) for s in args.seeds]
        accs = [e["accuracy"] for e in entries if e is not None]
        return {"accuracy": float(np.mean(accs)) if accs else math.nan,
                "accuracy_sd": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0, "seeds": len(accs)}

    for c in cands:
        c |= acc_of(c["arch"])
        c["latency_ms"] = lat[arch_key(c["arch"])]
    missing = [c for c in cands if c["seeds"] == 0]
    if missing:
        say(f"{data}: {len(missing)} candidates have no accuracy (budget reached): left out of the tables")
    cands = [c for c in cands if c["seeds"] > 0]
    if len(cands) < 4:
        raise SystemExit(f"search_quality: only {len(cands)} candidates have an accuracy on {data}; raise --budget-s")
    acc = np.array([c["accuracy"] for c in cands])
    rng = np.random.default_rng(0)
    ref = pool_scores("flops", [c["scores"] for c in cands])
    table = {n: bootstrap(pool_scores(n, [c["scores"] for c in cands]), acc, ref, rng) for n in names}
    # How well one seed's accuracies rank another's: what any score can reach at most with this recipe
    entries = {s: [cache.entries.get(cache_key(c["arch"], recipe, data, s)) for c in cands] for s in args.seeds}
    per_seed = [[e["accuracy"] for e in v] for v in entries.values() if all(v)]
    ceiling = [float(stats.kendalltau(a, b)[0]) for i, a in enumerate(per_seed) for b in per_seed[i + 1:]]
    seconds = [e["seconds"] for v in entries.values() for e in v if e]
    extra = {"decision": decision_table(cands, names), "noise": noise_floor(cands[:args.noise], recipe, data, args,
                                                                              cache),
             "full": full_agreement(cands[:args.full], recipe, data, args, cache)}
    return extra | {"teacher": ctx.teacher.source, "teacher_accuracy": ctx.teacher_accuracy, "recipe_hash": recipe,
            "recipe": ctx.cfg.distill.model_dump(mode="json"), "device": ctx.device.type,
            "trained_on": sorted({e["device"] for v in entries.values() for e in v if e}), "jobs": args.jobs,
            "seeds": args.seeds, "latency": prep["latency_label"], "score_seconds": prep["cost"], **run,
            "mean_run_s": float(np.mean(seconds)), "seed_tau": ceiling, "table": table, "candidates": cands,
            "bands": band_table(cands, prep["ladder"], lat, acc_of, names) if prep["ladder"] else []}


def decision_table(cands: list[dict], names: list[str]) -> dict[str, dict]:
    """What the search's choice costs per score: the accuracy of the candidate it ranks first, the mean of its
    top three, against the best of the pool (and the pool's mean: a random pick's expectation)."""
    acc = np.array([c["accuracy"] for c in cands])
    out = {}
    for name in names:
        order = np.argsort(-pool_scores(name, [c["scores"] for c in cands]), kind="stable")
        out[name] = {"top1": float(acc[order[0]]), "top3_mean": float(acc[order[:3]].mean()),
                     "best": float(acc.max()), "pool_mean": float(acc.mean()),
                     "top1_arch": cands[order[0]]["arch"]}
    return out


def noise_floor(cands: list[dict], recipe: str, data: str, args, cache: AccuracyCache) -> dict | None:
    """Per candidate, the spread of post-KD accuracy over NOISE_SEEDS seeds: differences below it are noise."""
    seeds = list(args.seeds) + noise_seeds(args)
    rows = []
    for c in cands:
        accs = [e["accuracy"] for s in seeds if (e := cache.entries.get(cache_key(c["arch"], recipe, data, s)))]
        if len(accs) > 1:
            rows.append({"arch": c["arch"], "accuracies": accs, "sd": float(np.std(accs, ddof=1))})
    return {"seeds": seeds, "rows": rows, "mean_sd": float(np.mean([r["sd"] for r in rows]))} if rows else None


def full_agreement(cands: list[dict], recipe: str, data: str, args, cache: AccuracyCache) -> dict | None:
    """The first candidates' short-schedule accuracy against the long one's (--full-epochs, seed
    args.seeds[0]): Kendall tau between the two rankings."""
    long_ctx = base_context(data, args.device, args.full_epochs)
    full = recipe_hash(long_ctx)
    pairs = [(c["accuracy"], e["accuracy"]) for c in cands
             if (e := cache.entries.get(cache_key(c["arch"], full, data, args.seeds[0])))]
    if len(pairs) < 3 or full == recipe:
        return None
    short, long = map(list, zip(*pairs, strict=True))
    return {"short": short, "full": long, "kendall_tau": float(stats.kendalltau(short, long)[0]),
            "epochs": long_ctx.cfg.distill.epochs}


def render(report: dict, out: Path) -> None:
    """Markdown tables (also printed), the JSON and the plot, from a report."""
    default = _default_score()
    lines = []
    for data, r in report["sets"].items():
        acc = np.array([c["accuracy"] for c in r["candidates"]])
        runs = (f"{r['trained']} runs trained now, {r['cached']} read from the cache"
                + (f", {r['dropped']} not run (budget)" if r["dropped"] else "") + " (all sets together)")
        ceiling = ", ".join(f"{t:.2f}" for t in r["seed_tau"]) or "n/a (one seed)"
        lines += [f"\n### {data}: {len(acc)} candidates x {len(r['seeds'])} seeds, post-KD accuracy "
                  f"{acc.min():.4f}..{acc.max():.4f} (teacher {r['teacher_accuracy']:.4f}); {r['recipe']['method']} "
                  f"{r['recipe']['epochs']} epochs, trained on {'/'.join(r['trained_on'])}; {runs}; seed-vs-seed "
                  f"tau {ceiling}",
                  "", "| score | Kendall tau [95% CI] | Spearman rho [95% CI] | tau - flops [95% CI] | s/candidate |",
                  "|---|---|---|---|---|"]
        for name, t in sorted(r["table"].items(), key=lambda kv: -kv[1]["kendall_tau"]):
            cost = sum(r["score_seconds"][m] for m in members(name))
            mark = " (default)" if name == default else ""
            lines.append(f"| {name}{mark} | {t['kendall_tau']:.2f} [{t['kendall_ci'][0]:.2f}, "
                         f"{t['kendall_ci'][1]:.2f}] | {t['spearman_rho']:.2f} [{t['spearman_ci'][0]:.2f}, "
                         f"{t['spearman_ci'][1]:.2f}] | {t['tau_minus_flops']:+.2f} "
                         f"[{t['tau_minus_flops_ci'][0]:+.2f}, {t['tau_minus_flops_ci'][1]:+.2f}] | {cost:.3f} |")
        lines += decision_lines(r, default)
        if not r["bands"]:
            continue
        lines += ["", f"Per latency band ({r['latency']}); search pick = best `{default}` score inside the band; "
                  "accuracy mean over seeds:", "",
                  "| band ms | pick | hand-picked mobilenet_v3_small | shrunk teacher | pick beats hand-picked |",
                  "|---|---|---|---|---|"]
        for b in r["bands"]:
            p = b["picks"][default]
            hand, shrunk = b["baselines"].values()

            def cell(x):
                if x is None:
                    return "none fits"
                return (f"{x['accuracy']:.4f}±{x['accuracy_sd']:.4f} at {x['ms']:.3g} ms"
                        + ("" if x.get("in_band", True) else " (below band)"))

            beats = "n/a" if hand is None else ("yes" if p["accuracy"] > hand["accuracy"] else "no")
            lines.append(f"| {b['band_ms'][0]:.3g}-{b['band_ms'][1]:.3g} | {p['space']} {cell(p)} | {cell(hand)} "
                         f"| {cell(shrunk)} | {beats} |")
        verdicts = [b["picks"][default]["accuracy"] > b["baselines"]["hand-picked mobilenet_v3_small"]["accuracy"]
                    for b in r["bands"] if b["baselines"]["hand-picked mobilenet_v3_small"] is not None]
        lines.append(f"\n{data}: the search's pick ({default}) "
                     + ("beats the hand-picked student in every band" if verdicts and all(verdicts) else
                        f"does NOT beat the hand-picked student in {sum(not v for v in verdicts)} of {len(verdicts)} "
                        "bands"))
    lines.append(default_verdict(report, default))
    text = "\n".join(lines)
    say(text)
    (out / "search_quality.md").write_text(text + "\n")
    (out / "search_quality.json").write_text(json.dumps(report, indent=1, default=float))
    plot(report, out / "search_quality.png")
    say(f"\nwrote {out / 'search_quality.md'}, search_quality.json, search_quality.png")


def default_verdict(report: dict, default: str) -> str:
    """The rule the default follows: a score replaces `flops` only when its paired tau - flops interval lies
    above zero on every set measured."""
    sets = report["sets"].values()
    better = [n for n in next(iter(sets))["table"] if n != "flops"
              and all(r["table"][n]["tau_minus_flops_ci"][0] > 0 for r in sets)]
    if better:
        best = max(better, key=lambda n: min(r["table"][n]["kendall_tau"] for r in sets))
        return (f"\nDefault: {', '.join(better)} rank(s) above flops on every set (paired interval above 0): "
                f"{best} should be the default (it is {default}).")
    return (f"\nDefault: no score's tau - flops interval lies above 0 on every set ({', '.join(report['sets'])}); "
            f"flops stays the default (it is {default}).")


def decision_lines(r: dict, default: str) -> list[str]:
    """The choice table (each score's top-1 and top-3 against the best candidate), the noise floor and the
    short-vs-full schedule agreement, as markdown lines."""
    lines = ["", f"The search's choice per score ({r['latency']}): post-KD accuracy of the candidate each score "
             "ranks first and the mean of its top three, in points below the best of the pool", "",
             "| score | top-1 | top-3 mean | best of pool | top-1 - best (pts) | pool mean (a random pick) |",
             "|---|---|---|---|---|---|"]
    for name, d in sorted(r["decision"].items(), key=lambda kv: -kv[1]["top1"]):
        mark = " (default)" if name == default else ""
        lines.append(f"| {name}{mark} | {d['top1']:.4f} | {d['top3_mean']:.4f} | {d['best']:.4f} | "
                     f"{100 * (d['top1'] - d['best']):+.2f} | {d['pool_mean']:.4f} |")
    if r.get("noise"):
        n = r["noise"]
        lines.append(f"\nNoise floor: {len(n['rows'])} candidates x seeds {n['seeds']}: accuracy SD per candidate "
                     + ", ".join(f"{100 * x['sd']:.2f}" for x in n["rows"]) + f" pts (mean {100 * n['mean_sd']:.2f})")
    if r.get("full"):
        f = r["full"]
        lines.append(f"\nShort ({r['recipe']['epochs']} epochs) vs full ({f['epochs']} epochs) schedule on "
                     f"{len(f['short'])} candidates: Kendall tau {f['kendall_tau']:.2f}; accuracies "
                     + ", ".join(f"{a:.4f}->{b:.4f}" for a, b in zip(f["short"], f["full"], strict=True)))
    return lines


def _default_score() -> str:
    from edgekd.config import SearchConfig

    return SearchConfig().score


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(report["sets"])
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4.2), dpi=110, squeeze=False)
    for ax, data in zip(axes[0], sets, strict=True):
        table = report["sets"][data]["table"]
        order = sorted(table, key=lambda n: table[n]["kendall_tau"])
        tau = np.array([table[n]["kendall_tau"] for n in order])
        lo = tau - np.array([table[n]["kendall_ci"][0] for n in order])
        hi = np.array([table[n]["kendall_ci"][1] for n in order]) - tau
        ax.barh(order, tau, xerr=[lo, hi], color=["C3" if n == "flops" else "C0" for n in order], capsize=3)
        ax.axvline(table["flops"]["kendall_tau"], color="C3", lw=1, ls="--")
        ax.set(xlabel="Kendall tau vs post-KD accuracy (95% bootstrap CI)", title=data, xlim=(-1, 1))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
