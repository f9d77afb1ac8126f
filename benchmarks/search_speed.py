"""How long the training-free search takes: 100 candidates at 32x32 (the `fonts` set and its teacher).

    python benchmarks/search_speed.py [--data fonts] [--candidates 100] [--device cpu|cuda]

1. the search itself (`run_search`'s loop: price every arch with the cost model, score those that fit
   with the default score, evolve) until 100 candidates are scored;
2. each registered score alone on those same 100 networks (built beforehand), on --device.
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console

from edgekd.config import load_build_config
from edgekd.context import make_context
from edgekd.search import evaluate_arch, make_probe, teacher_latency_ms
from edgekd.search.evolution import evolve
from edgekd.search.scores import Probe, create_score, list_scores
from edgekd.search.spaces import resolve_spaces


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="fonts")
    ap.add_argument("--target", default="openvino")
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    device = torch.device(args.device)
    cfg = load_build_config(None, {"target": args.target, "data": args.data}, [])
    ctx = make_context(cfg, Console(quiet=True))
    s = cfg.search
    start = time.perf_counter()
    probe = make_probe(ctx)
    t_ms = teacher_latency_ms(ctx)
    setup = time.perf_counter() - start
    spaces = resolve_spaces(s.spaces, ctx.teacher.source, s.shrink_teacher)
    start = time.perf_counter()
    cands = evolve(spaces, lambda sp, a, o, i: evaluate_arch(ctx, probe, t_ms, sp, a, o, i, [s.score]),
                   cfg.seed, args.candidates, s.population)
    loop = time.perf_counter() - start
    fitting = [c for c in cands if c.fits]
    print(f"{args.data}: input {ctx.input_shape}, {ctx.data.num_classes} classes, probe batch {len(probe.y)}, "
          f"target {args.target}, {torch.get_num_threads()} torch threads, device {device.type}")
    print(f"search loop ({s.score}): {len(fitting)} scored + {len(cands) - len(fitting)} priced only in "
          f"{loop:.2f} s ({loop / max(1, len(fitting)):.3f} s per scored candidate); "
          f"probe + teacher signals {setup:.2f} s")
    models = [ctx.new_student(c.arch).to(device) for c in fitting]
    on_device = _to(probe, device)
    print(f"{'score':16s} {'seconds':>8s} {'per cand.':>10s}   (each score alone on the same {len(models)} "
          f"networks)")
    for name in list_scores():
        fn = create_score(name)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for m in models:
            fn(m, on_device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        took = time.perf_counter() - start
        print(f"{name:16s} {took:8.2f} {took / len(models):10.4f}")


def _to(probe: Probe, device: torch.device) -> Probe:
    from edgekd.search.signals import Signals

    t = probe.teacher
    moved = Signals(*(v.to(device) if v is not None else None for v in (t.logits, t.feature, t.cams)), t.source)
    return Probe(probe.x.to(device), probe.y.to(device), probe.classes.to(device), moved)


if __name__ == "__main__":
    main()
