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
from edgekd.data import Dataset
from edgekd.distill.trainer import pick_device
from edgekd.errors import InputError
from edgekd.models.families import create_model
from edgekd.models.teacher import Teacher
from edgekd.remote import parse_destination
from edgekd.rundir import RunDir, check_out_path, refuse_foreign
from edgekd.text.data import TextData
from edgekd.text.distill import torch_quality_teacher
from edgekd.text.hf import TextTeacher
from edgekd.tracks import Track, track_for_source


@dataclass(frozen=True)
class Context:
    """The run's resolved inputs, built once by make_context and never changed: a stage that needs another
    view (the staging folder, a resolved method, a DDP worker's device) makes a copy with dataclasses.replace."""

    cfg: BuildConfig
    target: Target
    profile: Profile
    budgets: Budgets
    track: Track  # what the modality changes (edgekd/tracks), chosen once from the teacher
    teacher: Teacher | TextTeacher
    data: Dataset | TextData
    out: Path
    device: torch.device
    console: Console = field(default_factory=Console)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        p = self.data.preprocessing
        return (p.channels, *p.input_size)

    @property
    def run(self) -> RunDir:
        """OUT's paths (OUT is the staging folder while a build runs)."""
        return RunDir(self.out)

    @cached_property
    def teacher_accuracy(self) -> float:
        """The teacher as supplied (torch, or ONNX through onnxruntime) on the held-out split. Text embedding
        teachers: 1.0, their own neighbour agreement (docs/report-contract.md)."""
        return self.track.teacher_accuracy(self)

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
    track = track_for_source(cfg.teacher.source)
    teacher, data = track.load(cfg, target, profile, device, console)
    return Context(cfg, target, profile, target.budgets.merged(cfg.budgets), track, teacher, data, out, device,
                   console)


def load_saved_config(out: Path) -> dict | None:
    """The config an earlier run saved in OUT (stage commands resume from it)."""
    path = RunDir(out).config_json
    return json.loads(path.read_text()) if path.is_file() else None
