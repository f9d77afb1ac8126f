"""Post-KD accuracies of many students, trained in parallel processes and cached in one JSON file.

Each student is distilled by the distill stage's own train function (train_student), with the config
defaults at run time except the seed (and the epochs where the caller shrinks them), like
benchmarks/kd_quality.py. An accuracy is stored under (arch, recipe hash, data, seed): the recipe hash
covers the distill config, the teacher and the data's split and preprocessing, not the device, so
accuracies measured on a GPU machine can be copied into a CPU checkout's cache and read back there.

Also: ONNX export of many archs in the same pool, for latency timing in the parent process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import torch
from rich.console import Console

from edgekd.config import BuildConfig
from edgekd.context import Context, make_context

_CONTEXTS: dict[tuple, Context] = {}


def base_context(data: str, device: str, epochs: int | None) -> Context:
    """The context every student of a data set is distilled in: split and teacher at seed 0, the distill
    config's defaults (epochs overridden only when given). Built once per process."""
    key = (data, device, epochs)
    if key not in _CONTEXTS:
        cfg = BuildConfig(data=data, seed=0, device=device, distill={"epochs": epochs} if epochs else {},
                          out=Path(tempfile.gettempdir()) / "edgekd-search-quality")
        _CONTEXTS[key] = make_context(cfg, Console(file=io.StringIO()))
    return _CONTEXTS[key]


def recipe_hash(ctx: Context) -> str:
    """What a post-KD accuracy depends on besides arch and seed (the device is recorded, not keyed)."""
    d = ctx.data
    text = json.dumps({"distill": ctx.cfg.distill.model_dump(mode="json"), "teacher": ctx.teacher.source,
                       "teacher_params": ctx.teacher.params, "data": d.source, "train": int(len(d.train_idx)),
                       "val": int(len(d.val_idx)), "preprocessing": d.preprocessing.as_dict()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_key(arch: dict, recipe: str, data: str, seed: int) -> str:
    return json.dumps({"arch": arch, "recipe": recipe, "data": data, "seed": seed}, sort_keys=True)


class AccuracyCache:
    """{key: {"accuracy", "seconds", "device"}} in a JSON file, written atomically after every result."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, dict] = json.loads(path.read_text()) if path.is_file() else {}

    def put(self, key: str, entry: dict) -> None:
        self.entries[key] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.entries, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def merge(self, other: Path) -> int:
        """Entries of another cache file (e.g. one a GPU machine wrote) added to this one; returns how many."""
        added = {k: v for k, v in json.loads(other.read_text()).items() if k not in self.entries}
        for k, v in added.items():
            self.put(k, v)
        return len(added)


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _distil(data: str, device: str, epochs: int | None, arch: dict, seed: int) -> tuple[float, float, str]:
    from edgekd.distill.method import parse_method
    from edgekd.distill.stage import resolve_method, train_student

    base = base_context(data, device, epochs)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = base.cfg.model_copy(update={"seed": seed, "out": Path(tmp)})
        ctx = dataclasses.replace(base, cfg=cfg, out=Path(tmp))
        start = time.perf_counter()
        info = train_student(ctx, arch, parse_method(resolve_method(ctx, arch)[0], cfg.distill), resume=False)
        return info["torch_accuracy"], time.perf_counter() - start, base.device.type


def _export(arch: dict, in_channels: int, classes: int, size: tuple[int, int], path: str) -> str:
    from edgekd.models.families import create_model
    from edgekd.onnx_export import export_onnx

    torch.manual_seed(0)
    export_onnx(create_model(arch, in_channels, classes, size), (in_channels, *size), Path(path), {})
    return path


class Pool:
    """A process pool (spawn: CUDA-safe) of `jobs` workers sharing the host's cores."""

    def __init__(self, jobs: int):
        self.jobs = max(1, jobs)
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        self.executor = ProcessPoolExecutor(self.jobs, mp_context=get_context("spawn"), initializer=_init_worker,
                                            initargs=(threads,))

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc) -> None:
        self.executor.shutdown(cancel_futures=True)

    def export(self, archs: dict[str, dict], shape: tuple[int, int, int], classes: int, folder: Path):
        """Start exporting each arch at initialization (latency does not depend on the weights) to
        folder/NAME.onnx; returns a function that waits for them: (progress) -> {name: path}."""
        folder.mkdir(parents=True, exist_ok=True)
        futures = {self.executor.submit(_export, arch, shape[0], classes, shape[1:], str(folder / f"{name}.onnx")):
                   name for name, arch in archs.items()}

        def wait(progress=None) -> dict[str, Path]:
            out = {}
            for f in as_completed(futures):
                out[futures[f]] = Path(f.result())
                if progress:
                    progress(len(out), len(futures))
            return out

        return wait

    def distil(self, cache: AccuracyCache, tasks: list[tuple[str, dict, int]], device: str, epochs: int | None,
               recipes: dict[str, str]):
        """Start distilling every (data, arch, seed) not in the cache, in the order given (after any exports
        already queued). Returns a function that waits for them: (deadline, progress) -> (trained, found in the
        cache, dropped); runs not started by the deadline (a time.monotonic() value) are dropped, runs under
        way finish."""
        todo, cached = [], 0
        for data, arch, seed in tasks:
            key = cache_key(arch, recipes[data], data, seed)
            if key in cache.entries:
                cached += 1
            elif key not in {k for k, _ in todo}:
                todo.append((key, (data, device, epochs, arch, seed)))
        futures = {self.executor.submit(_distil, *args): key for key, args in todo}

        def store(f) -> None:
            acc, seconds, dev = f.result()
            cache.put(futures[f], {"accuracy": acc, "seconds": round(seconds, 2), "device": dev})

        def wait(deadline: float = math.inf, progress=None) -> tuple[int, int, int]:
            done = 0
            try:
                # no deadline: no timeout (an infinite one overflows the platform's time_t)
                timeout = None if math.isinf(deadline) else max(0.0, deadline - time.monotonic())
                for f in as_completed(futures, timeout=timeout):
                    store(f)
                    done += 1
                    if progress:
                        progress(done, len(futures))
            except TimeoutError:
                for f in futures:
                    f.cancel()
                for f in futures:  # those already running finish and count
                    if not f.cancelled() and futures[f] not in cache.entries:
                        store(f)
                        done += 1
            return done, cached, len(todo) - done

        return wait
