"""One DDP process of `edgekd distill --nproc-per-node N` (started by torch.distributed.run).

Each process rebuilds the run's context from OUT/config.json (the launcher already trained and cached an
embedded teacher, so none retrains it), joins the process group (NCCL on CUDA, gloo on CPU), trains its share of
every global batch, and rank 0 writes the checkpoints and the student.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
from rich.console import Console

from edgekd.config import load_build_config
from edgekd.context import load_saved_config, make_context
from edgekd.distill.method import parse_method
from edgekd.distill.stage import train_student
from edgekd.errors import EdgeKDError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="edgekd.distill.worker")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--arch", required=True)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)

    # A 1x1 convolution's weight gradient comes back with equivalent but differently ordered strides; DDP copies
    # it into its bucket correctly and warns on every process. Nothing to act on.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    console = Console(stderr=True, quiet=rank != 0)
    try:
        cfg = load_build_config(None, {}, [], base=load_saved_config(args.out), base_name=f"{args.out}/config.json")
        cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        ctx = make_context(cfg, console)
        if cuda:
            ctx = replace(ctx, device=torch.device("cuda", local))
        train_student(ctx, json.loads(args.arch), parse_method(cfg.distill.method, cfg.distill), args.resume)
        return 0
    except EdgeKDError as e:
        print(f"{'error' if e.exit_code == 2 else 'failed'} (rank {rank}): {e}", file=sys.stderr)
        return e.exit_code
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
