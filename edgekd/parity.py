"""Parity: do a converted model's logits agree with the model it was converted from? One rule for every
conversion (torch -> ONNX in the export stage, ONNX -> runtime artifact in the compile stage)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgekd.errors import StageFailed


@dataclass(frozen=True)
class Parity:
    max_abs_diff: float  # max |got - ref| relative to the largest |ref logit| (at least 1)
    top1_agreement: float  # embeddings: agreement of each sample's nearest neighbour among the others
    samples: int
    mean_cosine: float | None = None  # embeddings (text students): mean cosine of got and ref rows

    def as_dict(self) -> dict:
        d = asdict(self)
        return d if self.mean_cosine is not None else {k: v for k, v in d.items() if k != "mean_cosine"}

    def summary(self) -> str:
        """What the terminal shows: the cosine for embeddings, the top-1 agreement for logits."""
        if self.mean_cosine is not None:
            return f"mean cosine {self.mean_cosine:.6f}"
        return f"top-1 agreement {self.top1_agreement:.2%}"

    @classmethod
    def from_dict(cls, d: dict) -> Parity:
        cos = d.get("mean_cosine")
        return cls(float(d["max_abs_diff"]), float(d["top1_agreement"]), int(d["samples"]),
                   None if cos is None else float(cos))


# (max |diff|, min top-1 agreement) per precision of the converted model. INT8 has none: its logits move by
# design, and the accuracy budget bounds it instead.
LIMITS = {"fp32": (1e-3, 0.99), "fp16": (2e-2, 0.98)}


# Embeddings have no arg-max: a float conversion must keep their direction (mean cosine to the model it was
# converted from). INT8 again has none; the embedding_cosine budget bounds it.
COSINE_LIMITS = {"fp32": 0.999, "fp16": 0.99}


def row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def nearest_neighbours(e: np.ndarray, k: int) -> np.ndarray:
    """Indices of each row's k most cosine-similar other rows."""
    u = e.astype(np.float64) / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    sim = u @ u.T
    np.fill_diagonal(sim, -np.inf)
    k = min(k, len(e) - 1)
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]


def neighbour_overlaps(got: np.ndarray, ref: np.ndarray, k: int = 10) -> np.ndarray:
    """Per sample, the share of its k nearest neighbours (cosine, among the others) that got and ref agree on."""
    a, b = nearest_neighbours(got, k), nearest_neighbours(ref, k)
    return np.array([len(set(x) & set(y)) / a.shape[1] for x, y in zip(a, b, strict=True)])


def neighbour_agreement(got: np.ndarray, ref: np.ndarray, k: int = 10) -> float:
    """The mean of neighbour_overlaps."""
    return float(neighbour_overlaps(got, ref, k).mean())


def compare_embeddings(got: np.ndarray, ref: np.ndarray) -> Parity:
    diff = float(np.abs(got - ref).max() / max(1.0, float(np.abs(ref).max())))
    top1 = neighbour_agreement(got, ref, 1) if len(ref) > 1 else 1.0
    return Parity(diff, top1, len(ref), float(row_cosine(got, ref).mean()))


def compare_logits(got: np.ndarray, ref: np.ndarray) -> Parity:
    diff = float(np.abs(got - ref).max() / max(1.0, float(np.abs(ref).max())))
    return Parity(diff, float((got.argmax(1) == ref.argmax(1)).mean()), len(ref))


def require(parity: Parity, precision: str, what: str) -> None:
    """StageFailed when `parity` is outside the limits of `precision`; `what` starts the message
    ("export: student ONNX disagrees with torch")."""
    if parity.mean_cosine is not None:
        least = COSINE_LIMITS.get(precision)
        if least is not None and parity.mean_cosine < least:
            raise StageFailed(f"{what}: mean cosine {parity.mean_cosine:.5f} of the embeddings (limit {least})")
        return
    limits = LIMITS.get(precision)
    if limits and (parity.max_abs_diff > limits[0] or parity.top1_agreement < limits[1]):
        raise StageFailed(f"{what}: max |diff| {parity.max_abs_diff:.3g} (limit {limits[0]:g}), top-1 agreement "
                          f"{parity.top1_agreement:.2%} (limit {limits[1]:.0%})")
