"""The text track: a Hugging Face encoder (`--teacher hf:DIR`) over lines / CSV / JSONL (edgekd/text), students
that keep the teacher's width and start from its layers, judged by accuracy (classifiers) or, for sentence
encoders, by the cosine of each held-out text's embedding to the teacher's and top-10 neighbour agreement,
each with its bootstrap interval (edgekd/text/quality.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from edgekd.distill.stage import check_accuracy
from edgekd.errors import InputError
from edgekd.figures import Figure, Figures
from edgekd.gate.verdict import decide
from edgekd.models.embedded_teacher import RECIPES
from edgekd.parity import Parity
from edgekd.precision import within_accuracy_drop
from edgekd.report import BudgetResult
from edgekd.results import DistillResult, ExportResult
from edgekd.text import HF_PREFIX
from edgekd.text.data import load_text_data
from edgekd.text.distill import run_text_distill
from edgekd.text.export import (
    PARITY_SAMPLES,
    compare,
    export_checked,
    export_text,
    metadata,
    session_outputs,
    teacher_onnx,
)
from edgekd.text.hf import load_text_teacher
from edgekd.text.models import arch_of, build_student, load_student
from edgekd.text.quality import min_agreement, min_cosine, teacher_quality, text_budgets
from edgekd.text.quality import quality as text_quality
from edgekd.text.search import run_text_search
from edgekd.text.space import price
from edgekd.tracks import register_track

EVAL_BATCH = 32
CALIBRATION_TEXTS = 64  # feeds of one text each; NNCF's transformer preset needs few


class TextTrack:
    name = "text"
    source_prefix = HF_PREFIX

    def load(self, cfg, target, profile, device, console):
        if cfg.remote:
            raise InputError("--remote: text teachers are built and measured on this host only (for now); "
                             "leave out --remote")
        if cfg.teacher.weights is not None:
            raise InputError("--teacher-weights is only for --teacher torchvision:NAME; an hf: folder holds its "
                             "weights")
        if cfg.data in RECIPES:
            raise InputError(f"--data {cfg.data}: a text teacher needs text: a .txt (one text a line) or a .csv / "
                             ".jsonl with text and label columns")
        teacher = load_text_teacher(cfg.teacher.source, cfg.text.task)
        data = load_text_data(cfg.data, teacher.tokenizer, teacher.task, teacher.labels, cfg.text.max_length,
                              cfg.seed, teacher.folder.name)
        teacher.module.to(device).eval()
        return teacher, data

    def teacher_accuracy(self, ctx) -> float:
        return teacher_quality(ctx)

    def check_arch(self, ctx, arch: dict) -> None:
        return None  # a text student is built from the teacher's config at distillation

    def search(self, ctx) -> dict:
        return run_text_search(ctx)

    def distill(self, ctx, arch: dict, resume: bool, nproc_per_node: int) -> dict:
        info = run_text_distill(ctx, arch)
        return check_accuracy(ctx, info) if ctx.teacher.task == "classification" else info

    def export(self, ctx, distilled: DistillResult) -> ExportResult:
        student = load_student(ctx.run.student_folder, ctx.teacher.task)
        ctx.run.folder("export")
        ctx.console.print("[bold]export[/]: student -> ONNX (dynamic batch and sequence), checker, parity through "
                          "onnxruntime")
        feeds = ctx.data.batches(ctx.data.val_idx[:PARITY_SAMPLES], 32)
        meta = metadata(ctx, {"arch": distilled.arch})
        student_parity = export_checked(student, ctx.run.student_onnx, meta, feeds, "student")
        teacher, teacher_parity = teacher_onnx(ctx)
        return ExportResult(ctx.run.student_onnx, teacher, distilled.arch, student_parity, teacher_parity)

    def teacher_onnx(self, ctx):
        return teacher_onnx(ctx)

    def export_candidate(self, ctx, arch: dict, path: Path) -> Path:
        student, _ = build_student(ctx.teacher.module, arch, init_from_teacher=False)
        return export_text(student, path, metadata(ctx, {"arch": arch}), ctx.data.encode(ctx.data.val_idx[:2]))

    def outputs(self, ctx, session) -> np.ndarray:
        return session_outputs(session, ctx.data.batches(ctx.data.val_idx, EVAL_BATCH))

    def quality(self, ctx, outputs: np.ndarray) -> dict:
        return text_quality(ctx, outputs)

    def describe(self, quality: dict) -> str:
        if "mean_cosine" not in quality:
            return f"accuracy {quality['accuracy']:.4f}"
        return (f"mean cosine {quality['mean_cosine']:.4f}, top-{quality['neighbours']} agreement "
                f"{quality['neighbour_agreement']:.2%}")

    def compare(self, ctx, got: np.ndarray, reference: np.ndarray) -> Parity:
        return compare(ctx.teacher.task, got, reference)

    def within(self, ctx, quality: dict, float_quality: dict) -> tuple[bool, str]:
        """Embeddings: cosine and neighbour agreement within their budgets, and each budget's verdict on its
        bootstrap interval no worse than the float artifact's (INT8 may not turn a pass into an inconclusive)."""
        if ctx.teacher.task != "embedding":
            return within_accuracy_drop(ctx, quality)
        cos, agree = min_cosine(ctx.budgets), min_agreement(ctx.budgets)
        rank = {"pass": 0, "inconclusive": 1, "fail": 2}
        q, qf = quality, float_quality
        ok = q["mean_cosine"] >= cos and q["neighbour_agreement"] >= agree and all(
            rank[decide(q[f"{k}_interval"], limit, True)] <= rank[decide(qf[f"{k}_interval"], limit, True)]
            for k, limit in (("mean_cosine", cos), ("neighbour_agreement", agree)))
        ci, ai = q["mean_cosine_interval"], q["neighbour_agreement_interval"]
        return ok, (f"cosine {q['mean_cosine']:.4f} [{ci[0]:.4f} .. {ci[1]:.4f}] (budget {cos}), agreement "
                    f"{q['neighbour_agreement']:.2%} [{ai[0]:.2%} .. {ai[1]:.2%}] (budget {agree:.0%})")

    def compile_options(self, ctx, backend):
        """At the target's batch and --max-length, INT8 calibrated on held-out texts one at a time (the search's
        timer compiles its candidates the same way)."""
        calib = tuple(ctx.data.encode([i]) for i in ctx.data.calib_idx[:CALIBRATION_TEXTS])
        return replace(backend.options_for(ctx.profile.arch, ctx.target.batch_size), transformer=True,
                       calibration_feeds=calib, sequence=ctx.data.max_length)

    def calibration(self, ctx) -> None:
        return None  # the calibration feeds travel in compile_options (each runtime's transformer INT8)

    def tune_set(self, ctx) -> None:
        return None

    def sequence_length(self, ctx) -> int:
        return ctx.data.max_length

    def predicted(self, ctx, onnx_path: Path, arch: dict | None, precision: str, blocker: str) -> Figures:
        lat, mem = price(ctx, arch or arch_of(ctx.teacher.config), precision)
        return Figures(Figure(lat.value, "predicted", tuple(lat.interval), lat.detail),
                       Figure(mem.value, "predicted", tuple(mem.interval), mem.detail), {"blocker": blocker})

    def budgets(self, ctx, figures: Figures, speedup: Figure, drop: float, quality: dict,
                blocker: str | None = None) -> list[BudgetResult]:
        return text_budgets(ctx, figures, speedup, drop, quality, blocker)

    def shortfall(self, ctx, results: list[BudgetResult], arch: dict, evaluated_with: str,
                  speedup: Figure) -> str:
        short = [r for r in results if r.name in ("embedding_cosine", "neighbour_agreement") and not r.passed]
        if not short:
            return ""
        return (f"  [red]under the quality budget[/]: the {arch['num_hidden_layers']}-layer student ("
                f"{evaluated_with}) keeps " + ", ".join(
                    f"{r.name} {r.value:.4g} [{r.interval[0]:.4g} .. {r.interval[1]:.4g}] (needs >= {r.limit:g})"
                    for r in short)
                + f" at {speedup.value:.2f}x: a deeper student (a lower --min-speedup), more text (--data), or "
                  "--ship best (the teacher quantized alone) would keep more")

    def details(self, ctx, quality: dict) -> dict:
        return {k: v for k, v in quality.items() if k != "accuracy"} | {"sequence_length": ctx.data.max_length}

    def teacher_details(self, ctx) -> dict:
        return {"task": ctx.teacher.task}

    def fill_report(self, ctx, report) -> None:
        report.extra["text"] = ctx.cfg.text.model_dump() | {"task": ctx.teacher.task}
        report.teacher["task"] = ctx.teacher.task


register_track(TextTrack())
