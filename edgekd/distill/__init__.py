"""Distil the searched student from the teacher; the accuracy budget is checked here already (torch
accuracy), so a hopeless student fails before export and compile."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from edgekd.context import Context
from edgekd.distill.trainer import accuracy, fit
from edgekd.errors import BudgetFailed, InputError, StageFailed
from edgekd.models.families import count_params, create_model
from edgekd.report import BudgetResult


def run_distill(ctx: Context, arch: dict) -> dict:
    cfg = ctx.cfg.distill
    ctx.console.print(f"[bold]distill[/]: {arch} from {ctx.teacher.source}, {cfg.method}, {cfg.epochs} epochs")
    torch.manual_seed(ctx.cfg.seed)
    student = create_model(arch, ctx.data.preprocessing.channels, ctx.data.num_classes, ctx.input_shape[1:])
    x, y = ctx.data.split("train")
    fit(student, x, y, cfg, ctx.device, ctx.cfg.seed, teacher=ctx.teacher)
    if not all(torch.isfinite(p).all() for p in student.parameters()):
        raise StageFailed("distill: the student has NaN/Inf weights; lower --set distill.lr")
    xv, yv = ctx.data.split("val")
    student_acc = accuracy(student, xv, yv, ctx.device)
    drop = 100 * (ctx.teacher_accuracy - student_acc)
    info = {"arch": arch, "params": count_params(student), "method": cfg.method, "epochs": cfg.epochs,
            "torch_accuracy": student_acc, "teacher_accuracy": ctx.teacher_accuracy, "accuracy_drop": drop,
            "in_channels": ctx.data.preprocessing.channels, "num_classes": ctx.data.num_classes,
            "input_size": list(ctx.input_shape[1:]), "device": ctx.device.type}
    folder = ctx.stage_dir("distill")
    save_file({k: v.detach().contiguous().cpu() for k, v in student.state_dict().items()},
              str(folder / "student.safetensors"))
    (folder / "student.json").write_text(json.dumps(info, indent=2))
    ctx.console.print(f"  student {student_acc:.4f} vs teacher {ctx.teacher_accuracy:.4f} "
                      f"(drop {drop:.2f} points, torch)")
    limit = ctx.budgets.max_accuracy_drop
    if limit is not None and drop > limit:
        result = BudgetResult("accuracy_drop", limit, drop, "measured", False,
                              detail="torch accuracy of the distilled student; stopped before export")
        raise BudgetFailed(f"distill: accuracy drop {drop:.2f} points > budget {limit:g} (torch accuracy "
                           f"{student_acc:.4f} vs teacher {ctx.teacher_accuracy:.4f}); train longer "
                           "(--epochs) or allow a larger student (--latency-ms)", [result])
    return info


def load_student(folder: Path) -> tuple[torch.nn.Module, dict]:
    """The checkpoint an earlier distill stage wrote (safetensors: no pickle)."""
    meta, weights = folder / "student.json", folder / "student.safetensors"
    if not meta.is_file() or not weights.is_file():
        raise InputError(f"{folder}: no distilled student (student.json + student.safetensors); "
                         "run `edgekd distill` with this --out first")
    info = json.loads(meta.read_text())
    model = create_model(info["arch"], info["in_channels"], info["num_classes"], tuple(info["input_size"]))
    model.load_state_dict(load_file(str(weights)))
    return model.eval(), info
