"""The training loop shared by distillation and the embedded teachers.

One step: gather a batch of stored pixels (uint8 stays uint8 until it is on the device), augment it once,
run the teacher (or read its cached logits) and the student on the same tensor, sum the method's terms, and
step unless the loss or the gradient norm is NaN/Inf (checked every step: one host sync). bf16 autocast and
channels_last on CUDA, optional torch.compile, DDP when torch.distributed is initialized. Every epoch ends
with an atomic checkpoint; a CUDA out-of-memory halves the batch and retries the same samples.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from edgekd.config import DistillConfig
from edgekd.distill import augment, checkpoint, syncbn
from edgekd.distill.loader import Batches
from edgekd.distill.losses import LossInputs, decompose_kl
from edgekd.distill.method import Distiller, Plan, make_adapter, objective, parse_method
from edgekd.distill.taps import teacher_runner
from edgekd.errors import InputError, StageFailed
from edgekd.progress import bar_disabled, plain_progress


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is visible here; use --device auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, device: torch.device, batch: int = 512) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        logits = model(torch.from_numpy(x[i:i + batch]).to(device))
        correct += int((logits.argmax(1).cpu().numpy() == y[i:i + batch]).sum())
    return correct / len(y)


@dataclass
class TrainData:
    """Stored training images and how to make model inputs of them: x / scale, then (x - mean) / std."""

    x: np.ndarray  # (N, C, H, W), uint8 or float32
    y: np.ndarray  # (N,) int64
    scale: float = 1.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)


@dataclass
class TrainResult:
    model: nn.Module
    batch_size: int  # the batch the run finished with (smaller than asked after an out-of-memory)
    history: list[dict] = field(default_factory=list)  # one entry per epoch
    skipped_steps: int = 0  # NaN/Inf steps skipped
    resumed_from_epoch: int | None = None
    oom_retries: int = 0


class Schedule:
    """Learning rate as a function of training progress (share of samples seen), so a halved batch after an
    out-of-memory keeps the same curve. cosine: 0.5 (1 + cos(pi p)); step: gamma^(milestones passed)."""

    def __init__(self, opt: torch.optim.Optimizer, cfg: DistillConfig):
        self.opt, self.cfg = opt, cfg
        self.base = [g["lr"] for g in opt.param_groups]
        self.progress = 0.0

    def set(self, progress: float) -> None:
        self.progress = progress
        if self.cfg.schedule == "cosine":
            f = 0.5 * (1 + math.cos(math.pi * progress))
        else:
            f = self.cfg.step_gamma ** sum(progress >= m for m in self.cfg.step_milestones_fraction)
        for g, base in zip(self.opt.param_groups, self.base, strict=True):
            g["lr"] = base * f

    def state_dict(self) -> dict:
        return {"progress": self.progress, "base": list(self.base)}

    def load_state_dict(self, state: dict) -> None:
        self.base = list(state["base"])
        self.set(state["progress"])


def make_optimizer(params, cfg: DistillConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                           weight_decay=cfg.weight_decay)


def amp_dtype(cfg: DistillConfig, device: torch.device) -> torch.dtype | None:
    if cfg.amp == "off" or (cfg.amp == "auto" and device.type != "cuda"):
        return None
    return torch.float16 if cfg.amp == "fp16" else torch.bfloat16


class LogitCache:
    """Teacher logits per (view, image), on the device; filled as batches arrive. Bookkeeping on the CPU so a
    lookup never syncs with the device."""

    def __init__(self, views: int, n: int, device: torch.device):
        self.views, self.n, self.device = views, n, device
        self.store: torch.Tensor | None = None
        self.filled = torch.zeros(views, n, dtype=torch.bool)

    def missing(self, view: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return ~self.filled[view, idx]

    def get(self, view: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return self.store[view.to(self.device), idx.to(self.device)]

    def put(self, view: torch.Tensor, idx: torch.Tensor, logits: torch.Tensor) -> None:
        if self.store is None:
            self.store = torch.empty(self.views, self.n, logits.shape[1], device=self.device)
        self.store[view.to(self.device), idx.to(self.device)] = logits.float()
        self.filled[view, idx] = True


def _dist() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _any_across_ranks(flag: bool, device: torch.device, world: int) -> bool:
    if world == 1:
        return flag

    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def train(model: nn.Module, data: TrainData, cfg: DistillConfig, device: torch.device, seed: int, *,
          teacher=None, pairs=None, plan: Plan | None = None, checkpoints: Path | None = None,
          resume: bool = False, fingerprint: dict | None = None, description: str = "distill",
          console: Console | None = None) -> TrainResult:
    """Train `model` on `data` with the method in cfg (or `plan`).

    teacher: a callable batch -> taps.TeacherOut (taps.TorchTeacher / OnnxTeacher), None for `ce`.
    pairs: [((teacher_layer, shape), (student_layer, shape)), ...] for feature methods (taps.feature_pairs).
    checkpoints: folder for per-epoch checkpoints; resume: continue from its newest loadable one.
    fingerprint: plain values a resumed run must share with the checkpoint (arch, method, config...).
    """
    run = _Run(model, data, cfg, device, seed, teacher, pairs or [], plan or parse_method(cfg.method, cfg),
               console or Console(), description)
    if checkpoints is not None and resume:
        run.resume(checkpoints, fingerprint or {})
    elif checkpoints is not None and run.rank == 0:
        checkpoint.clear(checkpoints)
    return run.loop(checkpoints, fingerprint or {})


class _Run:
    """The state of one training run; `loop` is the epoch loop, `step` one optimizer step."""

    def __init__(self, model, data: TrainData, cfg: DistillConfig, device, seed, teacher, pairs, plan: Plan,
                 console: Console, description: str):
        if plan.needs_teacher and teacher is None:
            raise InputError(f"distill.method '{cfg.method}' needs a teacher")
        self.cfg, self.device, self.teacher, self.plan = cfg, device, teacher, plan
        self.console, self.description = console, description
        self.world, self.rank = _dist()
        self.cuda = device.type == "cuda"
        adapters = [make_adapter(s[1][0], t[1][0]) for t, s in pairs] if plan.needs_adapters else []
        if self.world > 1:  # BatchNorm statistics over the global batch, as one process computes them
            model, adapters = syncbn.convert(model, self.cuda), [syncbn.convert(a, self.cuda) for a in adapters]
        self.model = model
        self.distiller = Distiller(model, [s[0] for _, s in pairs], adapters).to(device)
        self.channels_last = self.cuda and cfg.channels_last
        if self.channels_last:
            self.distiller.to(memory_format=torch.channels_last)
        self.dtype = amp_dtype(cfg, device)
        self.opt = make_optimizer(self.distiller.parameters(), cfg)
        self.sched = Schedule(self.opt, cfg)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        self.gen_perm = torch.Generator().manual_seed(seed)
        self.gen_aug = torch.Generator().manual_seed(seed + 1)
        self.n, self.size = len(data.y), tuple(data.x.shape[2:])
        self.shift = augment.max_shift_px(cfg, self.size)
        self.views = None
        if cfg.augment_views:  # FKD style: a fixed table of views per image, drawn once
            table = augment.draw(cfg, cfg.augment_views * self.n, self.size, torch.Generator().manual_seed(seed + 2))
            self.views = table.view(cfg.augment_views, self.n, 3)
        self.cache = None
        if cfg.cache_teacher:
            if cfg.augment != "none" and not cfg.augment_views:
                raise InputError("distill.cache_teacher: random augmentation never repeats an input, so a cache "
                                 "would serve wrong logits; set distill.augment=none or distill.augment_views=K")
            if cfg.mix != "none":
                raise InputError("distill.cache_teacher: mixed inputs (distill.mix) never repeat, so a cache would "
                                 "serve wrong logits; set distill.mix=none or turn the cache off")
            if plan.needs_features:
                raise InputError(f"distill.cache_teacher caches logits only, but method '{plan.name}' needs teacher "
                                 "features every step; turn the cache off")
            self.cache = LogitCache(cfg.augment_views or 1, self.n, device)
        # stored pixels: on the GPU whole when small (no loader at all), else gathered ahead by worker threads
        self.batches = Batches(data.x, data.y, device, cfg.loader_workers, cfg.loader_device_max_mb)
        self.inv_scale = 1.0 / data.scale
        self.mean = torch.tensor(data.mean, device=device, dtype=torch.float32).view(1, -1, 1, 1)
        self.inv_std = 1.0 / torch.tensor(data.std, device=device, dtype=torch.float32).view(1, -1, 1, 1)
        self.history: list[dict] = []
        self.start_epoch, self.steps, self.skipped, self.ooms = 0, 0, 0, 0
        self.batch, self.resumed, self.last_good = cfg.batch_size, None, None
        self.plain = None  # plain progress lines for a log (edgekd.progress), set by loop()
        # the teacher's forward time this epoch: its share of the step is what caching or a cheaper teacher can save
        self.teacher_s, self.teacher_events = 0.0, []

    # ------------------------------------------------------------------ checkpoints
    def state(self, fingerprint: dict) -> dict:
        return {"fingerprint": fingerprint, "model": self.distiller.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if self.cuda else [],
                        "perm": self.gen_perm.get_state(), "aug": self.gen_aug.get_state()},
                "step": self.steps, "skipped_steps": self.skipped, "batch_size": self.batch, "history": self.history}

    def resume(self, folder: Path, fingerprint: dict) -> None:
        state, path, problems = checkpoint.latest(folder)
        for p in problems:
            self.console.print(f"[yellow]checkpoint skipped[/]: {escape(str(p))}")
        if state is None:
            self.console.print("no usable checkpoint; starting from epoch 0")
            return
        _check_fingerprint(state["fingerprint"], fingerprint, path)
        self.distiller.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if self.cuda and rng["cuda"]:
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.gen_perm.set_state(rng["perm"])
        self.gen_aug.set_state(rng["aug"])
        self.start_epoch = self.resumed = int(state["epoch"])
        self.steps, self.skipped = int(state["step"]), int(state["skipped_steps"])
        self.batch, self.history, self.last_good = int(state["batch_size"]), list(state["history"]), path
        self.console.print(f"resuming from {escape(str(path))} (epoch {self.start_epoch} of {self.cfg.epochs} done)")

    # ------------------------------------------------------------------ loop
    def loop(self, checkpoints: Path | None, fingerprint: dict) -> TrainResult:
        module: nn.Module = self.distiller
        if self.world > 1:
            # gradient_as_bucket_view: grads live in DDP's buckets (no copy, no layout mismatch on 1x1 convs)
            module = DDP(self.distiller, device_ids=[self.device.index] if self.cuda else None,
                         gradient_as_bucket_view=True)
        self.forward = torch.compile(module) if self.cfg.compile else module
        self.distiller.train()
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]:.3f}"), TextColumn("{task.fields[speed]}"),
                   TimeRemainingColumn())
        label = f"{self.description} ({self.plan.name}{', ta' if self.plan.assistant else ''}, {self.device.type})"
        self.plain = plain_progress(self.console, label, self.cfg.epochs, "epochs", f"{self.n} images each",
                                    self.start_epoch) if self.rank == 0 else None
        with Progress(*columns, console=self.console,
                      disable=self.rank != 0 or bar_disabled(self.console)) as progress:
            task = progress.add_task(label, total=self.cfg.epochs, completed=self.start_epoch, loss=float("nan"),
                                     speed="")
            for epoch in range(self.start_epoch, self.cfg.epochs):
                entry = self.epoch(epoch)
                self.history.append(entry)
                progress.update(task, advance=1, loss=entry.get("loss", float("nan")),
                                speed=f"{entry['images_per_s']:.0f} img/s")
                if self.plain is not None:
                    self.plain.update(epoch + 1, f"loss {entry.get('loss', float('nan')):.3f}, "
                                                 f"{entry['images_per_s']:.0f} img/s")
                if checkpoints is not None and self.rank == 0:
                    self.save(checkpoints, epoch + 1, fingerprint)
        if self.plain is not None:
            self.plain.finish(f"loss {self.history[-1].get('loss', float('nan')):.3f}" if self.history else "")
        self.batches.close()
        return TrainResult(self.model.eval(), self.batch, self.history, self.skipped, self.resumed, self.ooms)

    def save(self, folder: Path, epoch: int, fingerprint: dict) -> None:
        if not all(torch.isfinite(p).all() for p in self.distiller.parameters()):
            raise StageFailed(f"{self.description}: weights became NaN/Inf in epoch {epoch}; not checkpointed "
                              f"({self.last_good or 'no earlier checkpoint'} kept)")
        self.last_good = checkpoint.save(folder, epoch, self.state(fingerprint), self.cfg.keep_checkpoints)

    def epoch(self, epoch: int) -> dict:
        n, total = self.n, self.cfg.epochs * self.n
        perm = torch.randperm(n, generator=self.gen_perm)
        view_of = torch.randint(self.cfg.augment_views, (n,), generator=self.gen_aug) if self.views is not None \
            else None
        sums: dict[str, torch.Tensor] = {}
        seen, pos, steps, t0 = 0, 0, 0, time.perf_counter()
        first, first_count = None, 0  # the epoch's first step's loss x its images (this process's share), its batch
        local = slice(self.rank, None, self.world)  # every process draws the global batch and takes its share
        while pos < n:
            idx = perm[pos:pos + self.batch]
            view = view_of[idx] if view_of is not None else torch.zeros_like(idx)
            if self.views is not None:
                params = self.views[view, idx]
            else:
                params = augment.draw(self.cfg, len(idx), self.size, self.gen_aug) if self.shift else None
            mixing = augment.draw_mix(self.cfg, self.gen_aug)
            ahead = range(pos + len(idx), min(n, pos + (1 + self.cfg.loader_workers) * self.batch), self.batch)
            self.batches.prefetch([perm[p:p + self.batch][local] for p in ahead])
            try:
                loss = self.step(idx[local], None if params is None else params[local], view[local],
                                 (epoch * n + pos) / total, sums, len(idx), mixing)
            except torch.cuda.OutOfMemoryError:
                self.out_of_memory()
                continue
            self.steps += 1
            steps += 1
            if loss is not None:
                self.non_finite(loss, epoch, pos, len(idx))
            else:
                seen += len(idx[local])
                if first is None:
                    first, first_count = sums["loss"].clone(), len(idx)
            pos += len(idx)
            self.sched.set((epoch * n + pos) / total)
            if self.plain is not None:  # within the epoch too: one epoch of a big set can take minutes
                self.plain.update(epoch + pos / n)
        seconds = time.perf_counter() - t0
        teacher_s = self.teacher_seconds()
        first = torch.zeros((), device=self.device) if first is None else first
        if self.world > 1:  # epoch averages over all processes
            keys = sorted(sums)
            flat = torch.stack([sums[k] for k in keys] + [first, torch.tensor(float(seen), device=self.device)])
            dist.all_reduce(flat)
            sums, first, seen = dict(zip(keys, flat[:-2], strict=True)), flat[-2], int(flat[-1].item())
        # What a DDP run must reproduce of the one-process run, recorded so a launcher test can compare runs on any
        # CPU: the same data order, the same images and steps, and the same loss before the first update (later
        # losses drift apart by float summation order, differently on each CPU).
        order = hashlib.sha256(perm.numpy().tobytes()).hexdigest()[:16]
        return {"epoch": epoch + 1, "seconds": seconds, "teacher_s": teacher_s, "images_per_s": n / seconds,
                "batch_size": self.batch, "lr": self.opt.param_groups[0]["lr"], "skipped_steps": self.skipped,
                "steps": steps, "images": seen, "order_sha256": order,
                "first_step_loss": float(first) / first_count if first_count else None,
                **{k: float(v) / max(seen, 1) for k, v in sums.items()}}

    def out_of_memory(self) -> None:
        """Halve the batch (bounded) and let the caller retry the same samples."""
        self.opt.zero_grad(set_to_none=True)
        self.batches.ahead.clear()  # gathered for the old batch size
        if self.cuda:
            torch.cuda.empty_cache()
        if self.world > 1:
            raise StageFailed(f"{self.description}: CUDA out of memory at batch {self.batch} in a {self.world}-process "
                              "run (processes cannot halve their batches in step); lower --set distill.batch_size")
        if self.ooms >= self.cfg.max_oom_retries or self.batch == 1:
            raise StageFailed(f"{self.description}: CUDA out of memory at batch {self.batch} after {self.ooms} "
                              "halvings (distill.max_oom_retries); lower --set distill.batch_size or the input size")
        self.ooms += 1
        self.batch = max(1, self.batch // 2)
        self.console.print(f"[yellow]CUDA out of memory[/]: batch halved to {self.batch}; retrying those samples")

    def non_finite(self, loss: float, epoch: int, pos: int, count: int) -> None:
        self.skipped += 1
        where = f"step {self.steps} (epoch {epoch + 1}, samples {pos}-{pos + count}): loss {loss}"
        if self.skipped > self.cfg.max_nonfinite_steps:
            keep = f"last good checkpoint {self.last_good}" if self.last_good else "no checkpoint was written yet"
            raise StageFailed(f"{self.description}: NaN/Inf at {where}; {self.skipped} non-finite steps, more than "
                              f"distill.max_nonfinite_steps={self.cfg.max_nonfinite_steps}; stopped ({keep}); "
                              "lower --set distill.lr or set distill.grad_clip_norm")
        self.console.print(f"[yellow]skipped[/] NaN/Inf at {where} ({self.skipped} of at most "
                           f"{self.cfg.max_nonfinite_steps})")

    def inputs(self, idx: torch.Tensor, params: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        xb, yb = self.batches.get(idx)
        xb = xb.float() * self.inv_scale
        if params is not None:
            xb = augment.apply(xb, params, self.shift)
        xb = (xb - self.mean) * self.inv_std
        if self.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb, yb

    def run_teacher(self, xb: torch.Tensor):
        """The teacher's forward, timed: CUDA events on a GPU (read at the epoch's end, so no extra sync per step),
        the wall clock elsewhere."""
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = self.teacher(xb)
            end.record()
            self.teacher_events.append((start, end))
            return out
        t0 = time.perf_counter()
        out = self.teacher(xb)
        self.teacher_s += time.perf_counter() - t0
        return out

    def teacher_seconds(self) -> float:
        """The teacher's forward time since the last call."""
        if self.teacher_events:
            self.teacher_events[-1][1].synchronize()
            self.teacher_s += sum(a.elapsed_time(b) for a, b in self.teacher_events) / 1000
        seconds, self.teacher_s, self.teacher_events = self.teacher_s, 0.0, []
        return seconds

    def step(self, idx, params, view, progress: float, sums: dict, global_count: int,
             mixing: tuple | None = None) -> float | None:
        """One optimizer step on samples idx (this process's share of global_count); None when it stepped, else
        the non-finite loss (step skipped). mixing: augment.draw_mix's draw for this batch, or None."""
        xb, yb = self.inputs(idx, params)
        y_partner, share = None, 1.0
        if mixing is not None:  # before the teacher: it sees the very images the student sees
            xb, partner, share = augment.mix(xb, mixing)
            y_partner = yb[partner]
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            t_logits, t_feats = None, []
            if self.cache is not None:  # the teacher runs only on (image, view)s it has not seen
                missing = self.cache.missing(view, idx)
                if bool(missing.any()):
                    self.cache.put(view[missing], idx[missing],
                                   self.run_teacher(xb[missing.to(self.device)]).logits)
                t_logits = self.cache.get(view, idx)
            elif self.plan.needs_teacher:
                out = self.run_teacher(xb)
                t_logits, t_feats = out.logits, out.feats
            logits, feats, adapted = self.forward(xb)
            b = LossInputs(logits.float(), t_logits, yb, progress, feats, adapted, t_feats, y_partner, share)
            loss, values = objective(self.plan, b, self.cfg)
        # DDP averages gradients over processes; weighting each by its share makes that the global batch mean
        # even when the last batch splits unevenly
        share = self.world * len(idx) / global_count
        self.scaler.scale(loss * share if share != 1 else loss).backward()
        self.scaler.unscale_(self.opt)
        grads = [p for p in self.distiller.parameters() if p.grad is not None]
        gnorm = torch.nn.utils.clip_grad_norm_(grads, self.cfg.grad_clip_norm or math.inf)
        finite = torch.isfinite(loss.detach())
        if not self.scaler.is_enabled():  # fp16's scaler skips inf gradients itself
            finite = finite & torch.isfinite(gnorm)
        if _any_across_ranks(not bool(finite.item()), self.device, self.world):  # the one host sync per step
            self.opt.zero_grad(set_to_none=True)
            self.scaler.update()
            return float(loss.detach())
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            k = len(idx)
            _add(sums, "loss", loss.detach() * k)
            for name, v in values.items():
                _add(sums, f"term_{name}", v.detach() * k)
            if t_logits is not None:
                d = decompose_kl(b.student.detach(), t_logits, self.cfg.temperature)
                _add(sums, "kl_bcd", d["bcd"].sum())
                _add(sums, "kl_scd", d["scd"].sum())
                _add(sums, "kl_wcd", d["wcd"].sum())
                _add(sums, "kl", (d["bcd"] + d["mass_strong"] * d["scd"] + d["mass_weak"] * d["wcd"]).sum())
        return None


def _add(sums: dict, key: str, value: torch.Tensor) -> None:
    sums[key] = sums[key] + value if key in sums else value.float()


def _check_fingerprint(saved: dict, current: dict, path: Path) -> None:
    diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if diff:
        k = diff[0]
        raise InputError(f"--resume: {path} was written with {k}={saved.get(k)!r}, this run has {current.get(k)!r}; "
                         "resume with the same settings or start over without --resume")


def fit(model: nn.Module, x: np.ndarray, y: np.ndarray, cfg: DistillConfig, device: torch.device, seed: int,
        teacher=None, description: str = "distill") -> nn.Module:
    """Train on already-normalized float inputs (the embedded teachers' recipe; the search benchmark's KD
    recipe); `teacher` is a models.teacher.Teacher for logit methods. Returns the model in eval mode."""
    runner = teacher_runner(teacher, [], device, cuda_channels_last(cfg, device)) if teacher is not None else None
    try:
        return train(model, TrainData(x, y), cfg, device, seed, teacher=runner, description=description).model
    finally:
        if runner is not None:
            runner.close()


def cuda_channels_last(cfg: DistillConfig, device: torch.device) -> bool:
    return device.type == "cuda" and cfg.channels_last
