"""Distil a transformer student from its teacher: AdamW with linear warm-up and decay (the encoder KD
literature's recipe), losses from the one registry (edgekd/distill/losses.py, text_losses.py) combined as
--method says, default per task in distill/catalog.py DEFAULT_TEXT_METHODS.

Writes OUT/distill/student/ (a Hugging Face folder: config.json, model.safetensors, the tokenizer) and
OUT/distill/student.json (what DistillResult reads), history.json. The torch quality on the held-out text is
recorded: for embeddings the top-10 neighbour agreement with the teacher (the report's accuracy for an
embedding model, docs/report-contract.md) and the mean cosine; for classification the accuracy.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import torch
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
    t_taps: dict = {}
    hooks = (qkv_tap(student, s_taps) + qkv_tap(teacher, t_taps)) if needs_qkv else []
    ctx.console.print(f"[bold]distill[/]: {escape(str(arch))} from {escape(ctx.teacher.source)} ({init}), "
                      f"{plan.name}, {cfg.epochs} epochs, AdamW lr {tcfg.lr:g}")
    data = ctx.data
    steps_per_epoch = math.ceil(len(data.train_idx) / cfg.batch_size)
    total = max(1, steps_per_epoch * cfg.epochs)
    warm = int(tcfg.warmup_fraction * total)
    opt = torch.optim.AdamW(distiller.parameters(), lr=tcfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warm) if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    rng = np.random.default_rng(ctx.cfg.seed)
    history, step, start = [], 0, time.perf_counter()
    labels = torch.from_numpy(data.y) if data.y is not None else None
    lengths = np.array([len(t) for t in data.texts])
    for epoch in range(cfg.epochs):
        order = rng.permutation(data.train_idx)
        sums: dict[str, float] = {}
        for idx in bucketed(order, lengths, cfg.batch_size, rng):
            feed = {k: torch.from_numpy(v).to(ctx.device) for k, v in data.encode(idx).items()}
            ids, mask = feed["input_ids"], feed["attention_mask"]
            with torch.no_grad():
                t_out, t_states = teacher.features(ids, mask, hidden=bool(pairs))
            out, feats, adapted, s_qkv = distiller(ids, mask, s_taps)
            y = labels[idx].to(ctx.device) if labels is not None else torch.zeros(len(idx), dtype=torch.long)
            b = LossInputs(out.float(), t_out.float(), y, progress=step / total, student_feats=feats,
                           adapted_feats=adapted, teacher_feats=[t_states[t] for _, t in pairs], mask=mask,
                           student_qkv=[s_qkv] if s_qkv is not None else [],
                           teacher_qkv=[tuple(x.detach() for x in t_taps.pop("qkv"))] if needs_qkv else [])
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
        history.append({"epoch": epoch + 1, **{k: v / len(order) for k, v in sums.items()},
                        "seconds": time.perf_counter() - start})
        ctx.console.print(f"  epoch {epoch + 1}/{cfg.epochs}: loss {history[-1]['loss']:.4f}")
    for h in hooks:
        h.remove()
    student = distiller.student.cpu().eval()
    quality = torch_quality(ctx, student.to(ctx.device))
    folder = ctx.run.folder("distill")
    save_student(student.cpu(), folder / "student", ctx.teacher.tokenizer)
    (folder / "history.json").write_text(json.dumps(history, indent=2))
    teacher_acc = ctx.teacher_accuracy
    info = {"kind": "text", "task": ctx.teacher.task, "arch": arch, "init": init,
            "params": sum(p.numel() for p in student.parameters()), "method": plan.name, "epochs": cfg.epochs,
            "torch_accuracy": quality["accuracy"], "batch_size_used": cfg.batch_size, "lr": tcfg.lr,
            "teacher_accuracy": teacher_acc, "accuracy_drop": 100 * (teacher_acc - quality["accuracy"]),
            "seconds": time.perf_counter() - start, "sequence_length": data.max_length}
    if "mean_cosine" in quality:
        info["torch_mean_cosine"] = quality["mean_cosine"]
        ctx.console.print(f"  torch: mean cosine {quality['mean_cosine']:.4f}, top-{NEIGHBOURS} neighbour agreement "
                          f"{quality['accuracy']:.2%} on {len(data.val_idx)} held-out texts")
    else:
        ctx.console.print(f"  torch: accuracy {quality['accuracy']:.4f} vs teacher {teacher_acc:.4f}")
    ctx.run.student_json.write_text(json.dumps(info, indent=2))
    return info
