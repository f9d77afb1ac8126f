"""Everything a stage needs, resolved and validated once before any output is written."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from edgekd.config import Budgets, BuildConfig, Profile, Target, load_profile, load_target
from edgekd.data import Dataset, load_data
from edgekd.distill.trainer import pick_device
from edgekd.errors import InputError
from edgekd.models.embedded_teacher import RECIPES, embedded_teacher, source_name
from edgekd.models.families import create_model
from edgekd.models.teacher import EMBEDDED, Teacher, check_logits, load_teacher, teacher_accuracy
from edgekd.remote import parse_destination
from edgekd.rundir import RunDir, check_out_path, refuse_foreign
from edgekd.text import is_text_source
from edgekd.text.check import teacher_quality
from edgekd.text.data import load_text_data
from edgekd.text.distill import torch_quality_teacher
from edgekd.text.hf import load_text_teacher


@dataclass
class Context:
    cfg: BuildConfig
    target: Target
    profile: Profile
    budgets: Budgets
    teacher: Teacher
    data: Dataset
    out: Path
    device: torch.device
    console: Console = field(default_factory=Console)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        p = self.data.preprocessing
        return (p.channels, *p.input_size)

    @property
    def is_text(self) -> bool:
        """A transformer teacher (--teacher hf:DIR): the stages call edgekd/text instead of the image libraries."""
        return getattr(self.teacher, "kind", "") == "text"

    @property
    def run(self) -> RunDir:
        """OUT's paths (OUT is the staging folder while a build runs)."""
        return RunDir(self.out)

    @cached_property
    def teacher_accuracy(self) -> float:
        """The teacher as supplied (torch, or ONNX through onnxruntime) on the held-out split. Text embedding
        teachers: 1.0, their own neighbour agreement (docs/report-contract.md)."""
        if self.is_text:
            return teacher_quality(self)
        x, y = self.data.split("val")
        return teacher_accuracy(self.teacher, x, y, self.device)

    @cached_property
    def text_reference(self) -> np.ndarray:
        """A text build's teacher outputs (torch; embeddings or logits) on the held-out split, which every quality
        figure of the build compares with: computed once per run."""
        return torch_quality_teacher(self)

    def new_student(self, arch: dict) -> torch.nn.Module:
        """A student network for this data, initialised from the run's seed (search, distillation and
        the scratch baseline all start from the same weights for one arch)."""
        p = self.data.preprocessing
        return create_model(arch, p.channels, self.data.num_classes, p.input_size, seed=self.cfg.seed)

    def save_config(self) -> None:
        """Every command that starts or continues a run in OUT saves its config, so this is where OUT is marked."""
        self.run.mark()
        self.run.config_json.write_text(self.cfg.model_dump_json(indent=2))


def default_out(target: str) -> Path:
    return Path("export") / f"{Path(target).stem}-{datetime.now():%Y%m%d-%H%M%S}"


def make_context(cfg: BuildConfig, console: Console | None = None) -> Context:
    """Validate target, profile, teacher and data (raising InputError) without writing to OUT."""
    console = console or Console()
    target = load_target(cfg.target)
    profile = load_profile(target.profile)
    if target.runtime not in profile.runtimes:
        raise InputError(f"target '{target.name}': runtime '{target.runtime}' is not one of profile "
                         f"'{profile.name}' runtimes {profile.runtimes}")
    out = cfg.out or default_out(target.name)
    check_out_path(out)  # a file in the way is bad input now, not an OSError after the search
    refuse_foreign(out)  # and a folder of the user's own files is never written into
    if cfg.remote:  # a bad address fails here, not after the search and distillation
        parse_destination(cfg.remote)
    device = pick_device(cfg.device)
    if is_text_source(cfg.teacher.source):
        return _text_context(cfg, target, profile, out, device, console)
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
    return Context(cfg, target, profile, target.budgets.merged(cfg.budgets), teacher, data, out, device, console)


def _text_context(cfg: BuildConfig, target: Target, profile: Profile, out: Path, device: torch.device,
                  console: Console) -> Context:
    """A transformer teacher and its text data (edgekd/text), checked before anything is written."""
    if cfg.remote:
        raise InputError("--remote: text teachers are built and measured on this host only (for now); "
                         "leave out --remote")
    if cfg.teacher.weights is not None:
        raise InputError("--teacher-weights is only for --teacher torchvision:NAME; an hf: folder holds its weights")
    if cfg.data in RECIPES:
        raise InputError(f"--data {cfg.data}: a text teacher needs text: a .txt (one text a line) or a .csv / "
                         ".jsonl with text and label columns")
    teacher = load_text_teacher(cfg.teacher.source, cfg.text.task)
    data = load_text_data(cfg.data, teacher.tokenizer, teacher.task, teacher.labels, cfg.text.max_length, cfg.seed,
                          teacher.folder.name)
    teacher.module.to(device).eval()
    return Context(cfg, target, profile, target.budgets.merged(cfg.budgets), teacher, data, out, device, console)


def load_saved_config(out: Path) -> dict | None:
    """The config an earlier run saved in OUT (stage commands resume from it)."""
    path = RunDir(out).config_json
    return json.loads(path.read_text()) if path.is_file() else None
