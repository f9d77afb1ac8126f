"""The distill stage: the searched student (through a teacher assistant for `ta+...`) from the teacher.

The accuracy budget is checked here already (torch accuracy), so a hopeless student fails before export and
compile. Writes OUT/distill/: student.safetensors + student.json, history.json (+ history.png), and
checkpoints/ (one per epoch; `--resume` continues from the newest loadable one).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from matplotlib.figure import Figure
from rich.markup import escape
from safetensors.torch import load_file, save_file

from edgekd.distill.catalog import AUTO, AUTO_METHODS
from edgekd.distill.method import Plan, parse_method
from edgekd.distill.taps import feature_pairs, pair_layers, probe_torch, teacher_layers, teacher_runner
from edgekd.distill.trainer import TrainData, TrainResult, _dist, accuracy, cuda_channels_last, train
from edgekd.errors import BudgetFailed, InputError, StageFailed
from edgekd.models.families import count_params, create_model
from edgekd.report import BudgetResult

if TYPE_CHECKING:  # the Context is the stages' glue; libraries below them only name its type
    from edgekd.context import Context


def run_distill(ctx: Context, arch: dict, resume: bool = False, nproc_per_node: int = 1) -> dict:
    """Train (in this process, or in nproc_per_node DDP processes), then check the accuracy budget."""
    method, why = resolve_method(ctx, arch)  # `auto` made concrete in the training's copy of the run's config,
    # which DDP workers read from OUT/config.json
    resolved = ctx.cfg.distill.model_copy(update={"method": method})
    training = replace(ctx, cfg=ctx.cfg.model_copy(update={"distill": resolved}))
    cfg = training.cfg.distill
    plan = parse_method(cfg.method, cfg)  # bad method names fail before any work
    ctx.console.print(f"[bold]distill[/]: {escape(str(arch))} from {escape(ctx.teacher.source)}, {cfg.method}, "
                      f"{cfg.epochs} epochs"
                      + (f", {nproc_per_node} processes" if nproc_per_node > 1 else ""))
    if why:
        ctx.console.print(f"  method auto -> {method}: {why}")
    many = nproc_per_node > 1
    info = launch(training, arch, resume, nproc_per_node) if many else train_student(training, arch, plan, resume)
    if cfg.baseline_scratch:
        info = train_scratch(training, arch, info, resume)
    return check_accuracy(ctx, info)  # the run's Context: its teacher accuracy is computed once for every stage


def resolve_method(ctx: Context, arch: dict) -> tuple[str, str | None]:
    """(distill.method, None), or for `auto` (the default) the method it takes for this teacher and student and why."""
    cfg = ctx.cfg.distill
    if cfg.method not in AUTO:
        return cfg.method, None
    return auto_method(ctx.teacher, ctx.new_student(arch), ctx.input_shape, cfg, f"the teacher ({ctx.teacher.source})")


def auto_method(teacher, student: torch.nn.Module, input_shape: tuple[int, int, int], cfg,
                who: str) -> tuple[str, str]:
    """(method, why): FitNet hints where the teacher's and the student's feature maps pair stage for stage, else kd.

    Layers pair by spatial size, which lines up stages only when both networks end at the same resolution; a
    teacher that downsamples more (a torchvision ResNet's stride-4 stem) would have the student's deepest maps
    regress its shallow ones, so auto takes kd there. Pairs named in distill.feature_pairs are the user's choice:
    they must resolve (a wrong name is an error, not a reason to fall back)."""
    preferred, fallback = AUTO_METHODS
    if cfg.feature_pairs:
        pairs = feature_pairs(teacher, student, input_shape, cfg.feature_pairs, cfg.feature_max_pairs, who)
        return preferred, f"{len(pairs)} pairs named in distill.feature_pairs"
    try:
        t_layers = teacher_layers(teacher, input_shape, who)
    except InputError as e:
        return fallback, f"{preferred} needs the teacher's feature maps: {e}"
    s_layers = probe_torch(student, input_shape, "the student")
    t_end, s_end = (next((shape[1:] for _, shape in reversed(layers) if shape[1] * shape[2] > 1), None)
                    for layers in (t_layers, s_layers))
    if t_end != s_end:
        return fallback, (f"{preferred} pairs maps by size, and {who} ends at {t_end} where the student ends at "
                          f"{s_end}: hints would pair stages of different depth")
    pairs = pair_layers(t_layers, s_layers, cfg.feature_max_pairs)
    return preferred, f"{len(pairs)} feature map pairs: " + ", ".join(f"{t[0]} <- {s[0]}" for t, s in pairs)


def train_scratch(ctx: Context, arch: dict, info: dict, resume: bool) -> dict:
    """The same student trained on the labels alone (method ce) with the same budget (epochs, batch, schedule,
    augmentation and mixing); writes OUT/distill/scratch/ and adds its accuracy to student.json's content."""
    folder = ctx.run.folder("distill") / "scratch"
    folder.mkdir(exist_ok=True)
    student = ctx.new_student(arch)
    result, _ = _fit(ctx, student, None, parse_method("ce", ctx.cfg.distill), arch, folder / "checkpoints", resume,
                     "scratch (labels only)")
    xv, yv = ctx.data.split("val")
    acc = accuracy(result.model, xv, yv, ctx.device)
    (folder / "history.json").write_text(json.dumps(result.history, indent=2))
    info = {**info, "scratch": {"torch_accuracy": acc, "method": "ce", "epochs": ctx.cfg.distill.epochs,
                                "gain_points": 100 * (info["torch_accuracy"] - acc)}}
    ctx.run.student_json.write_text(json.dumps(info, indent=2))
    return info


def gain_text(info: dict, teacher_accuracy: float) -> str:
    """'distilled 0.8123 vs trained on labels alone 0.7712: +4.11 points (62% of the teacher-scratch gap)'."""
    s = info["scratch"]
    gap = teacher_accuracy - s["torch_accuracy"]
    share = f" ({100 * (info['torch_accuracy'] - s['torch_accuracy']) / gap:.0f}% of the teacher-scratch gap)" \
        if gap > 0 else ""
    return (f"distilled {info['torch_accuracy']:.4f} vs trained on labels alone {s['torch_accuracy']:.4f}: "
            f"{s['gain_points']:+.2f} points{share}")


def launch(ctx: Context, arch: dict, resume: bool, nproc: int) -> dict:
    """torch.distributed.run with nproc workers (edgekd.distill.worker) on this machine; rank 0 writes."""
    ctx.out.mkdir(parents=True, exist_ok=True)
    ctx.save_config()
    meta = ctx.run.student_json
    meta.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           # "--opt=value": a folder or arch whose text starts with "-" stays a value, never an option
           "-m", "edgekd.distill.worker", f"--out={ctx.out}", f"--arch={json.dumps(arch)}"]
    rc = subprocess.run(cmd + (["--resume"] if resume else [])).returncode
    if rc != 0 or not meta.is_file():
        raise StageFailed(f"distill: the {nproc}-process run failed (torch.distributed.run exit {rc}; the workers' "
                          "messages are above)")
    return json.loads(meta.read_text())


def _train_data(ctx: Context) -> TrainData:
    d, p = ctx.data, ctx.data.preprocessing
    return TrainData(d.x[d.train_idx], d.y[d.train_idx], d.scale, p.mean, p.std)


def _fingerprint(ctx: Context, arch: dict, role: str) -> dict:
    """What a resumed run must share with its checkpoint (plain JSON values, safe to store and compare)."""
    return json.loads(json.dumps({"role": role, "arch": arch, "distill": ctx.cfg.distill.model_dump(mode="json"),
                                  "seed": ctx.cfg.seed, "data": ctx.data.source, "train": int(len(ctx.data.train_idx)),
                                  "preprocessing": ctx.data.preprocessing.as_dict()}))


def _fit(ctx: Context, model: torch.nn.Module, teacher, plan: Plan, arch: dict, folder: Path, resume: bool,
         role: str) -> tuple[TrainResult, list]:
    cfg = ctx.cfg.distill
    pairs = []
    if plan.needs_features:
        who = "the assistant" if isinstance(teacher, torch.nn.Module) else f"the teacher ({ctx.teacher.source})"
        pairs = feature_pairs(teacher, model, ctx.input_shape, cfg.feature_pairs, cfg.feature_max_pairs, who)
    runner = teacher_runner(teacher, [t[0] for t, _ in pairs], ctx.device,
                            cuda_channels_last(cfg, ctx.device)) if plan.needs_teacher else None
    try:
        result = train(model, _train_data(ctx), cfg, ctx.device, ctx.cfg.seed, teacher=runner, pairs=pairs,
                       plan=plan, checkpoints=folder, resume=resume, fingerprint=_fingerprint(ctx, arch, role),
                       description=role, console=ctx.console)
    finally:
        if runner is not None:
            runner.close()
    return result, [[t[0], s[0]] for t, s in pairs]


def assistant_arch(ctx: Context, student: torch.nn.Module) -> dict:
    """distill.assistant_arch, else the search candidate whose size is nearest (in log scale) the geometric mean of
    the teacher's and the student's parameter counts (Mirzadeh et al.: an assistant halves the gap)."""
    if ctx.cfg.distill.assistant_arch:
        return dict(ctx.cfg.distill.assistant_arch)
    p_t, p_s = ctx.teacher.params, count_params(student)
    path = ctx.run.search_json
    candidates = json.loads(path.read_text()).get("candidates", []) if path.is_file() else []
    between = [c for c in candidates if p_s < c["params"] < p_t]
    if not between:
        raise InputError(f"method 'ta': no search candidate lies between the student ({p_s} parameters) and the "
                         f"teacher ({p_t}) in {path}; set distill.assistant_arch to an arch")
    target = math.sqrt(p_t * p_s)
    return min(between, key=lambda c: abs(math.log(c["params"] / target)))["arch"]


def train_student(ctx: Context, arch: dict, plan: Plan, resume: bool) -> dict | None:
    """Train and (rank 0) write the student; returns student.json's content (None on other ranks)."""
    folder = ctx.run.folder("distill")
    student = ctx.new_student(arch)
    teacher, extra = ctx.teacher, {}
    xv, yv = ctx.data.split("val")
    if plan.assistant:
        a_arch = assistant_arch(ctx, student)
        assistant = ctx.new_student(a_arch)
        ctx.console.print(f"  teacher assistant {a_arch} ({count_params(assistant)} parameters)")
        a_result, _ = _fit(ctx, assistant, teacher, plan, a_arch, folder / "assistant", resume, "assistant")
        assistant = a_result.model
        extra["assistant"] = {"arch": a_arch, "params": count_params(assistant), "history": a_result.history,
                              "torch_accuracy": accuracy(assistant, xv, yv, ctx.device)}
        teacher = assistant
    result, pairs = _fit(ctx, student, teacher, plan, arch, folder / "checkpoints", resume, "distill")
    student = result.model
    if _dist()[1] != 0:
        return None
    student_acc = accuracy(student, xv, yv, ctx.device)
    last = result.history[-1] if result.history else {}
    cfg = ctx.cfg.distill
    info = {"arch": arch, "params": count_params(student), "method": cfg.method, "epochs": cfg.epochs,
            "torch_accuracy": student_acc, "in_channels": ctx.input_shape[0], "num_classes": ctx.data.num_classes,
            "input_size": list(ctx.input_shape[1:]),
            "device": ctx.device.type, "processes": _dist()[0], "batch_size_used": result.batch_size,
            "oom_retries": result.oom_retries, "skipped_steps": result.skipped_steps,
            "resumed_from_epoch": result.resumed_from_epoch, "feature_pairs": pairs,
            "kl_decomposition": {k: last[k] for k in ("kl", "kl_bcd", "kl_scd", "kl_wcd") if k in last},
            "teacher_share": teacher_share(result.history), **extra}
    save_file({k: v.detach().contiguous().cpu() for k, v in student.state_dict().items()},
              str(ctx.run.student_weights))
    ctx.run.history_json.write_text(json.dumps(result.history, indent=2))
    plot_history(result.history, folder / "history.png")
    ctx.run.student_json.write_text(json.dumps(info, indent=2))
    return info


def teacher_share(history: list[dict]) -> float | None:
    """The share of the training time the teacher's forward took (None when no teacher ran)."""
    seconds, teacher = sum(h["seconds"] for h in history), sum(h.get("teacher_s", 0.0) for h in history)
    return teacher / seconds if teacher > 0 and seconds > 0 else None


def check_accuracy(ctx: Context, info: dict) -> dict:
    drop = 100 * (ctx.teacher_accuracy - info["torch_accuracy"])
    info = {**info, "teacher_accuracy": ctx.teacher_accuracy, "accuracy_drop": drop}
    ctx.run.student_json.write_text(json.dumps(info, indent=2))
    ctx.console.print(f"  student {info['torch_accuracy']:.4f} vs teacher {ctx.teacher_accuracy:.4f} "
                      f"(drop {drop:.2f} points, torch; batch {info['batch_size_used']})")
    if info.get("teacher_share") is not None:
        ctx.console.print(f"  the teacher's forward took {100 * info['teacher_share']:.0f}% of the training time "
                          f"(on {info['device']}; distill/history.json has it per epoch)")
    if "scratch" in info:
        ctx.console.print(f"  {gain_text(info, ctx.teacher_accuracy)} (torch, same student and budget)")
    limit = ctx.budgets.max_accuracy_drop
    if limit is not None and drop > limit:
        result = BudgetResult("accuracy_drop", limit, drop, "measured", False,
                              detail="torch accuracy of the distilled student; stopped before export")
        raise BudgetFailed(f"distill: accuracy drop {drop:.2f} points > budget {limit:g} (torch accuracy "
                           f"{info['torch_accuracy']:.4f} vs teacher {ctx.teacher_accuracy:.4f}); train longer "
                           "(--epochs) or allow a larger student (--latency-ms)", [result])
    return info


def plot_history(history: list[dict], path: Path) -> None:
    """Loss and the KL decomposition per epoch, as a PNG beside history.json."""
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(10, 3.5))  # a Figure alone (no pyplot): files only, no display needed
    axes = fig.subplots(1, 2)
    for key in sorted(k for k in history[-1] if k == "loss" or k.startswith("term_")):
        axes[0].plot(epochs, [h.get(key) for h in history], label=key.removeprefix("term_"))
    axes[0].set(xlabel="epoch", ylabel="training loss (per sample)", yscale="log", title="loss terms")
    for key, label in (("kl", "KL (sum)"), ("kl_bcd", "binary"), ("kl_scd", "strong"), ("kl_wcd", "weak")):
        if key in history[-1]:
            axes[1].plot(epochs, [h.get(key) for h in history], label=label)
    axes[1].set(xlabel="epoch", ylabel="KL(teacher || student) at T", title="KL decomposition")
    for ax in axes:
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def load_student(folder: Path) -> tuple[torch.nn.Module, dict]:
    """The checkpoint an earlier distill stage wrote (safetensors: no pickle); NaN/Inf weights are refused."""
    meta, weights = folder / "student.json", folder / "student.safetensors"
    if not meta.is_file() or not weights.is_file():
        raise InputError(f"{folder}: no distilled student (student.json + student.safetensors); "
                         "run `edgekd distill` with this --out first")
    info = json.loads(meta.read_text())
    state = load_file(str(weights))
    if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
        raise StageFailed(f"{weights}: NaN/Inf weights; refusing to export them (distil again)")
    model = create_model(info["arch"], info["in_channels"], info["num_classes"], tuple(info["input_size"]))
    model.load_state_dict(state)
    return model.eval(), info
