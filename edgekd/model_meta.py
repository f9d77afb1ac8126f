"""The preprocessing an edgekd-exported ONNX records about itself (onnx_export writes it into the model's
metadata: input size, per-channel mean and std, class names), used where the user gave no options.

A model that was distilled on 48x48 inputs normalised one way gives wrong accuracy on data prepared another
way, and nothing fails loudly: so the commands read what the model says, and say that they did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from pydantic import ValidationError

from edgekd.config import Preprocess, format_validation_error
from edgekd.errors import InputError


@dataclass
class Recorded:
    input_size: list[int] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    classes: list[str] | None = None
    used: list[str] = field(default_factory=list)  # which of them filled an option the user left out

    def describe(self, names: list[str] | None = None) -> str:
        parts = []
        for name in names or ("input_size", "mean", "std", "classes"):
            v = getattr(self, name)
            if v is None:
                continue
            if name == "input_size":
                parts.append(f"input size {'x'.join(str(d) for d in v)}")
            elif name == "classes":
                parts.append(f"{len(v)} classes")
            else:
                parts.append(f"{name} {','.join(f'{x:g}' for x in v)}")
        return ", ".join(parts)


def read_recorded(path: Path) -> Recorded:
    """What the ONNX at `path` records; empty for other formats, foreign models and unreadable metadata."""
    if path.suffix.lower() != ".onnx" or not path.is_file():
        return Recorded()
    try:
        model = onnx.load(str(path), load_external_data=False)
        meta = {p.key: p.value for p in model.metadata_props}
        pre = json.loads(meta["preprocessing"]) if "preprocessing" in meta else {}
        classes = json.loads(meta["classes"]) if "classes" in meta else None
    except Exception:  # not ONNX, damaged, or metadata another tool wrote: the commands' own checks report it
        return Recorded()
    if not isinstance(pre, dict):
        pre = {}

    def numbers(v, kind):
        return [kind(x) for x in v] if isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v) \
            else None

    size = numbers(pre.get("input_size"), int)
    return Recorded(input_size=size if size and len(size) == 2 else None, mean=numbers(pre.get("mean"), float),
                    std=numbers(pre.get("std"), float),
                    classes=[str(c) for c in classes] if isinstance(classes, list) and classes else None)


def fill_preprocessing(path: Path, input_size, mean, std, console, option: str = "MODEL"):
    """(input_size, mean, std): the options given, else what the model records; prints what was taken."""
    rec = read_recorded(path)
    values = {"input_size": input_size, "mean": mean, "std": std}
    for name in values:
        if values[name] is None and getattr(rec, name) is not None:
            values[name] = getattr(rec, name)
            rec.used.append(name)
    if rec.used:  # checked as the options are, and named as the model's: NaN or a 10^6 side is the file's fault
        try:
            Preprocess(**{k: values[k] for k in rec.used})
        except ValidationError as e:
            raise InputError(format_validation_error(f"{option} '{path}' metadata 'preprocessing' (give the options "
                                                     "--input-size, --mean, --std instead)", e)) from None
        console.print(f"{option} '{path}' records its preprocessing; using {rec.describe(rec.used)}"
                      + (f" ({len(rec.classes)} classes)" if rec.classes else "")
                      + " (options override it: --input-size, --mean, --std)", highlight=False, markup=False,
                      soft_wrap=True)
    return values["input_size"], values["mean"], values["std"]


def announce(path: Path, console, purpose: str) -> Recorded:
    """Say what the model records where a command has no options for it (its inputs must match)."""
    rec = read_recorded(path)
    text = rec.describe()
    if text:
        console.print(f"MODEL '{path}' records its preprocessing: {text}; {purpose}", highlight=False, markup=False,
                      soft_wrap=True)
    return rec
