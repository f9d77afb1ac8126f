"""Distil a transformer student from its teacher: AdamW with linear warm-up and decay (the encoder KD
literature's recipe), losses from the one registry (edgekd/distill/losses.py, text_losses.py) combined as
--method says, default per task in distill/catalog.py DEFAULT_TEXT_METHODS.

Text is not augmented, so the teacher's outputs for a text are the same every epoch: they are computed once
(TeacherTargets: the embedding or logits, the paired layers' hidden states and the last layer's q/k/v, kept
in fp16 per text, unpadded) and every epoch trains the student alone. distill.epochs is a most: a share of
the training texts (text.stop_fraction) is held out of training, and the run stops when the output loss
on it has not improved for text.patience_epochs epochs; the best epoch's student is kept.

Writes OUT/distill/student/ (a Hugging Face folder: config.json, model.safetensors, the tokenizer) and
OUT/distill/student.json (what DistillResult reads), history.json. The torch quality on the held-out text is
recorded: for embeddings the top-10 neighbour agreement with the teacher (the report's accuracy for an
embedding model, docs/report-contract.md) and the mean cosine; for classification the accuracy.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from rich.markup import escape
from torch import nn

from edgekd.distill.catalog import ASSISTANT, AUTO, DEFAULT_TEXT_METHODS
from edgekd.distill.losses import LossInputs
from edgekd.distill.method import Plan, Term, create_method, list_methods, objective
from edgekd.errors import InputError, StageFailed
from edgekd.parity import neighbour_agreement, row_cosine
from edgekd.text.models import TextEncoder, build_student, save_student

NEIGHBOURS = 10


def text_method(ctx) -> str:
    cfg = ctx.cfg.distill
    return DEFAULT_TEXT_METHODS[ctx.teacher.task] if cfg.method in AUTO else cfg.method


def parse_text_method(text: str, task: str, cfg) -> Plan:
    names = [n.strip() for n in text.split("+")]
    if not all(names) or len(set(names)) != len(names):
        raise InputError(f"--method '{text}': expected method names joined by '+', each once (e.g. emb+minilm)")
    for n in names:
        if n not in list_methods() and n not in ASSISTANT:
            create_method(n)  # InputError with a did-you-mean
        if n in ASSISTANT or create_method(n).modality == "image":
            raise InputError(f"--method '{n}' distils image models; for a transformer teacher use emb, hidden, "
                             "minilm (and kd, dkd, ... for classifiers)")
        m = create_method(n)
        if task == "embedding" and m.labels:
            raise InputError(f"--method '{n}' needs labels and logits; an embedding teacher is distilled with "
                             f"emb, hidden, minilm (default {DEFAULT_TEXT_METHODS['embedding']})")
        if task == "classification" and n == "emb":
            raise InputError("--method 'emb' distils sentence embeddings; a classifier is distilled with kd "
                             f"(default {DEFAULT_TEXT_METHODS['classification']})")
    terms = tuple(Term(n, create_method(n), cfg.method_weights.get(n, create_method(n).weight)) for n in names)
    return Plan(terms, False)


class TextDistiller(nn.Module):
    """The student, its hidden-state projections and q/k/v taps of its last layer: all that learns, in one."""

    def __init__(self, student: TextEncoder, pairs: list[tuple[int, int]], teacher_width: int):
        super().__init__()
        self.student = student
        self.pairs = pairs
        width = student.model.config.hidden_size
        self.projections = nn.ModuleList(_projection(width, teacher_width) for _ in pairs)

    def forward(self, ids, mask, taps: dict):
        out, states = self.student.features(ids, mask, hidden=bool(self.pairs))
        feats = [states[s] for s, _ in self.pairs]
        return out, feats, [p(f) for p, f in zip(self.projections, feats, strict=True)], taps.pop("qkv", None)


def _projection(width: int, teacher_width: int) -> nn.Linear:
    p = nn.Linear(width, teacher_width)
    if width == teacher_width:  # start as the identity: copied layers already speak the teacher's space
        with torch.no_grad():
            p.weight.copy_(torch.eye(width))
            p.bias.zero_()
    return p


def qkv_tap(encoder: TextEncoder, store: dict):
    """Forward hooks on the last layer's query, key and value projections; outputs land in store['qkv']."""
    attn = encoder.base().encoder.layer[-1].attention.self
    got: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(module, args, output):
            got[name] = output
            if len(got) == 3:
                store["qkv"] = (got.pop("query"), got.pop("key"), got.pop("value"))
        return hook

    return [getattr(attn, n).register_forward_hook(keep(n)) for n in ("query", "key", "value")]


def layer_pairs(teacher_layers: int, student_layers: int, how: str = "every_other") -> list[tuple[int, int]]:
    """(student, teacher) hidden-state indices: the embedding outputs, then TinyBERT's uniform map: student
    layer m's output with teacher layer m * L_t / L's (the end of the block of teacher layers it stands for);
    with `ends` selection, each student layer with the teacher layer it copies."""
    n = min(student_layers, teacher_layers)
    if how == "ends":
        picked = [0] + list(range(teacher_layers - n + 1, teacher_layers))
        return [(0, 0)] + [(m + 1, j + 1) for m, j in enumerate(picked)]
    return [(0, 0)] + [(m, m * teacher_layers // n) for m in range(1, n + 1)]


def bucketed(order: np.ndarray, lengths: np.ndarray, batch: int, rng, window: int = 32) -> list[np.ndarray]:
    """Batches of texts of similar length (sorted within windows of `window` batches of the shuffled order),
    in shuffled order: dynamic padding then pads little, which on CPUs is most of a step's time."""
    out = []
    for w in range(0, len(order), batch * window):
        chunk = order[w:w + batch * window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out += [chunk[i:i + batch] for i in range(0, len(chunk), batch)]
    return [out[i] for i in rng.permutation(len(out))]


@torch.no_grad()
def torch_quality(ctx, module: TextEncoder, reference: np.ndarray | None = None) -> dict:
    """Held-out quality in torch: embeddings -> cosine to the teacher and top-10 agreement; logits -> accuracy."""
    data = ctx.data
    feeds = data.torch_batches(data.val_idx, 64)
    module.eval()
    out = np.concatenate([module(f["input_ids"].to(ctx.device), f["attention_mask"].to(ctx.device)).float().cpu()
                          .numpy() for f in feeds])
    if ctx.teacher.task == "classification":
        return {"accuracy": float((out.argmax(1) == data.y[data.val_idx]).mean()), "outputs": out}
    ref = reference if reference is not None else torch_quality_teacher(ctx)
    return {"accuracy": neighbour_agreement(out, ref, NEIGHBOURS), "mean_cosine": float(row_cosine(out, ref).mean()),
            "outputs": out}


def torch_quality_teacher(ctx) -> np.ndarray:
    feeds = ctx.data.torch_batches(ctx.data.val_idx, 64)
    t = ctx.teacher.module
    with torch.no_grad():
        return np.concatenate([t(f["input_ids"].to(ctx.device), f["attention_mask"].to(ctx.device)).float().cpu()
                               .numpy() for f in feeds])


@dataclass
class TeacherTargets:
    """The teacher's outputs per text (index into the corpus), computed once: out (D,), states and qkv
    lists of (tokens, H) fp16 tensors, unpadded."""

    out: dict[int, torch.Tensor]
    states: dict[int, list[torch.Tensor]]
    qkv: dict[int, list[torch.Tensor]]

    def batch(self, idx, tokens: int, device) -> tuple:
        """(out, states, qkv) of the texts `idx` padded to `tokens` (the encoded batch's length) with zeros:
        every loss masks padded tokens out."""
        out = torch.stack([self.out[i] for i in idx]).to(device).float()

        def padded(rows: list[torch.Tensor]) -> torch.Tensor:
            x = torch.zeros(len(rows), tokens, rows[0].shape[-1])
            for r, row in enumerate(rows):
                x[r, :len(row)] = row.float()
            return x.to(device)

        n_states = len(self.states[idx[0]]) if self.states else 0
        states = [padded([self.states[i][k] for i in idx]) for k in range(n_states)]
        qkv = tuple(padded([self.qkv[i][k] for i in idx]) for k in range(3)) if self.qkv else None
        return out, states, qkv


@torch.no_grad()
def teacher_targets(ctx, teacher: TextEncoder, idx: np.ndarray, layers: list[int], needs_qkv: bool,
                    lengths: np.ndarray) -> TeacherTargets:
    """One pass of the teacher over the texts `idx`, in batches of similar length (little padding)."""
    taps: dict = {}
    hooks = qkv_tap(teacher, taps) if needs_qkv else []
    got = TeacherTargets({}, {}, {})
    order = np.asarray(idx)[np.argsort(lengths[idx], kind="stable")]
    for k in range(0, len(order), 64):
        chunk = order[k:k + 64]
        feed = {n: torch.from_numpy(v).to(ctx.device) for n, v in ctx.data.encode(chunk).items()}
        out, states = teacher.features(feed["input_ids"], feed["attention_mask"], hidden=bool(layers))
        qkv = taps.pop("qkv", None)
        n_tokens = feed["attention_mask"].sum(1).tolist()
        for r, i in enumerate(chunk.tolist()):
            n = int(n_tokens[r])
            got.out[i] = out[r].float().cpu()
            if layers:
                got.states[i] = [states[j][r, :n].half().cpu() for j in layers]
            if qkv is not None:
                got.qkv[i] = [x[r, :n].half().cpu() for x in qkv]
    for h in hooks:
        h.remove()
    return got


def stop_loss(out: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:
    """The held-out loss early stopping watches: the output term alone (1 - cosine + MSE of the embeddings,
    or the KL of the logits), what the check's budgets are about."""
    if task == "classification":
        return F.kl_div(F.log_softmax(out, 1), F.log_softmax(target, 1), log_target=True, reduction="batchmean")
    return (1 - F.cosine_similarity(out, target, dim=1)).mean() + F.mse_loss(out, target)


def split_for_stopping(train_idx: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, stop): `fraction` of the training texts (at least 2, and at most half) held out for stopping."""
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(train_idx)
    n = min(len(order) // 2, max(2, int(round(fraction * len(order)))))
    return np.sort(order[n:]), np.sort(order[:n])


def run_text_distill(ctx, arch: dict) -> dict:
    cfg, tcfg = ctx.cfg.distill, ctx.cfg.text
    method = text_method(ctx)
    plan = parse_text_method(method, ctx.teacher.task, cfg)
    torch.manual_seed(ctx.cfg.seed)
    teacher = ctx.teacher.module.eval()
    student, init = build_student(teacher.cpu(), arch, layer_selection=tcfg.layer_selection)
    teacher.to(ctx.device)
    t_cfg = teacher.model.config
    pairs = layer_pairs(t_cfg.num_hidden_layers, arch["num_hidden_layers"], tcfg.layer_selection) \
        if plan.needs_features else []
    distiller = TextDistiller(student, pairs, t_cfg.hidden_size).to(ctx.device).train()
    needs_qkv = any(t.method.attention for t in plan.terms)
    s_taps: dict = {}
    hooks = qkv_tap(student, s_taps) if needs_qkv else []
    data = ctx.data
    fit_idx, stop_idx = split_for_stopping(data.train_idx, tcfg.stop_fraction, ctx.cfg.seed)
    ctx.console.print(f"[bold]distill[/]: {escape(str(arch))} from {escape(ctx.teacher.source)} ({init}), "
                      f"{plan.name}, at most "
                      f"{cfg.epochs} epochs (stops when {len(stop_idx)} held-out training texts stop improving), "
                      f"AdamW lr {tcfg.lr:g}")
    start = time.perf_counter()
    lengths = np.array([len(t) for t in data.texts])
    targets = teacher_targets(ctx, teacher, np.concatenate([fit_idx, stop_idx]), [t for _, t in pairs], needs_qkv,
                              lengths)
    teacher_seconds = time.perf_counter() - start
    ctx.console.print(f"  teacher outputs for {len(fit_idx) + len(stop_idx)} texts computed once in "
                      f"{teacher_seconds:.1f} s")
    steps_per_epoch = math.ceil(len(fit_idx) / cfg.batch_size)
    total = max(1, steps_per_epoch * cfg.epochs)
    warm = int(tcfg.warmup_fraction * total)
    opt = torch.optim.AdamW(distiller.parameters(), lr=tcfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warm) if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    rng = np.random.default_rng(ctx.cfg.seed)
    history, step = [], 0
    labels = torch.from_numpy(data.y) if data.y is not None else None
    best, best_state, best_epoch = float("inf"), None, 0
    for epoch in range(cfg.epochs):
        order = rng.permutation(fit_idx)
        sums: dict[str, float] = {}
        distiller.train()
        for idx in bucketed(order, lengths, cfg.batch_size, rng):
            feed = {k: torch.from_numpy(v).to(ctx.device) for k, v in data.encode(idx).items()}
            ids, mask = feed["input_ids"], feed["attention_mask"]
            t_out, t_states, t_qkv = targets.batch(idx.tolist(), ids.shape[1], ctx.device)
            out, feats, adapted, s_qkv = distiller(ids, mask, s_taps)
            y = labels[idx].to(ctx.device) if labels is not None else torch.zeros(len(idx), dtype=torch.long)
            b = LossInputs(out.float(), t_out, y, progress=step / total, student_feats=feats,
                           adapted_feats=adapted, teacher_feats=t_states, mask=mask,
                           student_qkv=[s_qkv] if s_qkv is not None else [],
                           teacher_qkv=[t_qkv] if t_qkv is not None else [])
            loss, values = objective(plan, b, cfg)
            if not torch.isfinite(loss):
                raise StageFailed(f"distill: the loss became {loss.item()} at step {step}; lower text.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip_norm:
                nn.utils.clip_grad_norm_(distiller.parameters(), cfg.grad_clip_norm)
            opt.step()
            sched.step()
            step += 1
            for k, v in values.items():
                sums[f"term_{k}"] = sums.get(f"term_{k}", 0.0) + float(v.detach()) * len(idx)
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) * len(idx)
        held_out = _held_out_loss(ctx, distiller.student, targets, stop_idx)
        history.append({"epoch": epoch + 1, **{k: v / len(order) for k, v in sums.items()},
                        "stop_loss": held_out, "seconds": time.perf_counter() - start})
        ctx.console.print(f"  epoch {epoch + 1}/{cfg.epochs}: loss {history[-1]['loss']:.4f}, held-out "
                          f"{held_out:.4f}")
        if held_out < best:
            best, best_epoch = held_out, epoch + 1
            best_state = copy.deepcopy(distiller.student.state_dict())
        elif epoch + 1 - best_epoch >= tcfg.patience_epochs:
            ctx.console.print(f"  stopped: the held-out loss has not improved for {tcfg.patience_epochs} epochs; "
                              f"keeping epoch {best_epoch}")
            break
    distiller.student.load_state_dict(best_state)
    for h in hooks:
        h.remove()
    student = distiller.student.cpu().eval()
    quality = torch_quality(ctx, student.to(ctx.device))
    ctx.run.folder("distill")
    save_student(student.cpu(), ctx.run.student_folder, ctx.teacher.tokenizer)
    ctx.run.history_json.write_text(json.dumps(history, indent=2))
    teacher_acc = ctx.teacher_accuracy
    info = {"kind": "text", "task": ctx.teacher.task, "arch": arch, "init": init,
            "params": sum(p.numel() for p in student.parameters()), "method": plan.name, "epochs": len(history),
            "max_epochs": cfg.epochs, "best_epoch": best_epoch, "stop_texts": len(stop_idx),
            "teacher_seconds": teacher_seconds,
            "torch_accuracy": quality["accuracy"], "batch_size_used": cfg.batch_size, "lr": tcfg.lr,
            "teacher_accuracy": teacher_acc, "accuracy_drop": 100 * (teacher_acc - quality["accuracy"]),
            "seconds": time.perf_counter() - start, "sequence_length": data.max_length}
    if "mean_cosine" in quality:
        info["torch_mean_cosine"] = quality["mean_cosine"]
        ctx.console.print(f"  torch: mean cosine {quality['mean_cosine']:.4f}, top-{NEIGHBOURS} neighbour agreement "
                          f"{quality['accuracy']:.2%} on {len(data.val_idx)} held-out texts")
    else:
        ctx.console.print(f"  torch: accuracy {quality['accuracy']:.4f} vs teacher {teacher_acc:.4f}")
    ctx.console.print(f"  distilled in {info['seconds']:.0f} s ({len(history)} epochs, best {best_epoch}); the "
                      f"teacher's share {teacher_seconds / info['seconds']:.0%}")
    ctx.run.student_json.write_text(json.dumps(info, indent=2))
    return info


@torch.no_grad()
def _held_out_loss(ctx, student: TextEncoder, targets: TeacherTargets, idx: np.ndarray) -> float:
    student.eval()
    total = 0.0
    for k in range(0, len(idx), 64):
        chunk = idx[k:k + 64]
        feed = {n: torch.from_numpy(v).to(ctx.device) for n, v in ctx.data.encode(chunk).items()}
        out = student(feed["input_ids"], feed["attention_mask"]).float()
        target = torch.stack([targets.out[i] for i in chunk.tolist()]).to(ctx.device)
        total += float(stop_loss(out, target, ctx.teacher.task)) * len(chunk)
    return total / len(idx)
