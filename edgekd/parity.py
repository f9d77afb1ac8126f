"""Parity: do a converted model's logits agree with the model it was converted from? One rule for every
conversion (torch -> ONNX in the export stage, ONNX -> runtime artifact in the compile stage)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgekd.errors import StageFailed


@dataclass(frozen=True)
class Parity:
    max_abs_diff: float  # max |got - ref| relative to the largest |ref logit| (at least 1)
    top1_agreement: float
    samples: int

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Parity:
        return cls(float(d["max_abs_diff"]), float(d["top1_agreement"]), int(d["samples"]))


# (max |diff|, min top-1 agreement) per precision of the converted model. INT8 has none: its logits move by
# design, and the accuracy budget bounds it instead.
LIMITS = {"fp32": (1e-3, 0.99), "fp16": (2e-2, 0.98)}


def compare_logits(got: np.ndarray, ref: np.ndarray) -> Parity:
    diff = float(np.abs(got - ref).max() / max(1.0, float(np.abs(ref).max())))
    return Parity(diff, float((got.argmax(1) == ref.argmax(1)).mean()), len(ref))


def require(parity: Parity, precision: str, what: str) -> None:
    """StageFailed when `parity` is outside the limits of `precision`; `what` starts the message
    ("export: student ONNX disagrees with torch")."""
    limits = LIMITS.get(precision)
    if limits and (parity.max_abs_diff > limits[0] or parity.top1_agreement < limits[1]):
        raise StageFailed(f"{what}: max |diff| {parity.max_abs_diff:.3g} (limit {limits[0]:g}), top-1 agreement "
                          f"{parity.top1_agreement:.2%} (limit {limits[1]:.0%})")
