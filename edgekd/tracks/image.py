"""The image track: torchvision / ONNX / embedded CNN teachers over image data (edgekd/data), students from the
searched families (edgekd/models), logits judged by top-1 accuracy on the held-out split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import edgekd
import edgekd.search as search_lib
from edgekd import parity
from edgekd.data import load_data
from edgekd.distill.stage import load_student, run_distill
from edgekd.errors import InputError
from edgekd.figures import Figure, Figures
from edgekd.gate.verdict import decide_budgets
from edgekd.measurable import predicted_figures
from edgekd.models.embedded_teacher import RECIPES, embedded_teacher, source_name
from edgekd.models.teacher import EMBEDDED, check_logits, load_teacher, teacher_accuracy
from edgekd.onnx_export import export_checked, export_onnx, teacher_onnx
from edgekd.precision import within_accuracy_drop
from edgekd.report import BudgetResult
from edgekd.results import DistillResult, ExportResult
from edgekd.runtimes import evaluate_accuracy
from edgekd.tracks import register_track

PARITY_SAMPLES = 512  # held-out inputs the export's parity check runs
TUNE_SAMPLES = 512  # training images outside the calibration subset, for accuracy-controlled INT8


class ImageTrack:
    name = "image"
    source_prefix = None  # torchvision:NAME, an .onnx / .pt2 / TorchScript file, the embedded teachers

    def load(self, cfg, target, profile, device, console):
        teacher = load_teacher(cfg.teacher)
        if teacher.source == EMBEDDED and cfg.data not in RECIPES:
            raise InputError(f"--data {cfg.data} needs --teacher: embedded teachers exist only for "
                             f"{', '.join(sorted(RECIPES))}")
        data = load_data(cfg.data, cfg.preprocess, cfg.seed, channels=teacher.in_channels,
                         default_size=teacher.input_size, default_norm=teacher.default_norm)
        if teacher.num_classes is not None and teacher.num_classes != data.num_classes:
            raise InputError(f"--teacher {teacher.source} predicts {teacher.num_classes} classes but --data "
                             f"{cfg.data} has {data.num_classes}")
        if teacher.source == EMBEDDED:  # colour sets (shapes) keep their colour; digits and fonts are grey
            teacher.module = embedded_teacher(data, cfg.seed, device)
            teacher.num_classes, teacher.source = data.num_classes, source_name(cfg.data)
            teacher.in_channels = data.preprocessing.channels
        elif teacher.module is not None:
            teacher.module.eval()
            check_logits(teacher, data.split("val")[0], data.num_classes)
            teacher.module.to(device)
        return teacher, data

    def teacher_accuracy(self, ctx) -> float:
        x, y = ctx.data.split("val")
        return teacher_accuracy(ctx.teacher, x, y, ctx.device)

    def check_arch(self, ctx, arch: dict) -> None:
        ctx.new_student(arch)

    def search(self, ctx) -> dict:
        return search_lib.run_search(ctx)  # looked up when called: a test replaces it to crash the stage

    def distill(self, ctx, arch: dict, resume: bool, nproc_per_node: int) -> dict:
        return run_distill(ctx, arch, resume=resume, nproc_per_node=nproc_per_node)

    def export(self, ctx, distilled: DistillResult) -> ExportResult:
        student, _ = load_student(ctx.run.distill)  # the weights lie in OUT/distill, beside student.json
        ctx.run.folder("export")
        metadata = {"preprocessing": ctx.data.preprocessing.as_dict(), "classes": ctx.data.classes,
                    "arch": distilled.arch, "teacher": ctx.teacher.source, "edgekd": edgekd.__version__}
        ctx.console.print("[bold]export[/]: student -> ONNX (dynamic batch), checker, parity through onnxruntime")
        student_parity = export_checked(student, ctx.input_shape, ctx.run.student_onnx, metadata,
                                        ctx.data.split("val")[0][:PARITY_SAMPLES], "student")
        teacher, teacher_parity = teacher_onnx(ctx)
        return ExportResult(ctx.run.student_onnx, teacher, distilled.arch, student_parity, teacher_parity)

    def teacher_onnx(self, ctx):
        return teacher_onnx(ctx)

    def export_candidate(self, ctx, arch: dict, path: Path) -> Path:
        return export_onnx(ctx.new_student(arch), ctx.input_shape, path, {})

    def outputs(self, ctx, session) -> np.ndarray:
        return evaluate_accuracy(session, *ctx.data.split("val"))[1]

    def quality(self, ctx, outputs: np.ndarray) -> dict:
        return {"accuracy": float((outputs.argmax(1) == ctx.data.y[ctx.data.val_idx]).mean())}

    def describe(self, quality: dict) -> str:
        return f"accuracy {quality['accuracy']:.4f}"

    def compare(self, ctx, got: np.ndarray, reference: np.ndarray) -> parity.Parity:
        return parity.compare_logits(got, reference)

    def within(self, ctx, quality: dict, float_quality: dict) -> tuple[bool, str]:
        return within_accuracy_drop(ctx, quality)

    def compile_options(self, ctx, backend):
        return backend.options_for(ctx.profile.arch, ctx.target.batch_size)

    def calibration(self, ctx) -> np.ndarray:
        return ctx.data.split("calib")[0]

    def tune_set(self, ctx) -> tuple[np.ndarray, np.ndarray]:
        data = ctx.data
        pool = np.setdiff1d(data.train_idx, data.calib_idx)
        rng = np.random.default_rng(ctx.cfg.seed)
        idx = np.sort(rng.choice(pool, size=min(TUNE_SAMPLES, len(pool)), replace=False))
        return data.inputs(idx), data.y[idx]

    def sequence_length(self, ctx) -> None:
        return None

    def predicted(self, ctx, onnx_path: Path, arch: dict | None, precision: str, blocker: str) -> Figures:
        return predicted_figures(onnx_path, ctx.profile, precision, ctx.target.batch_size, ctx.target.runtime,
                                 blocker)

    def budgets(self, ctx, figures: Figures, speedup: Figure, drop: float, quality: dict,
                blocker: str | None = None) -> list[BudgetResult]:
        return decide_budgets(ctx.budgets, figures, speedup, drop, blocker)

    def shortfall(self, ctx, results, arch, evaluated_with, speedup) -> str:
        return ""  # the accuracy budget's verdict says it; the distill stage already failed a student far under it

    def details(self, ctx, quality: dict) -> dict:
        return {}

    def teacher_details(self, ctx) -> dict:
        return {}

    def fill_report(self, ctx, report) -> None:
        return None


register_track(ImageTrack())
