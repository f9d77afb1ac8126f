"""Datasets: the embedded default (scikit-learn digits), an ImageFolder tree, or a .npz.

Every loader returns images as an (N, C, H, W) array plus the factor that maps its values to 0..1,
so uint8 pixels stay uint8 in memory; `Dataset.inputs` applies the preprocessing (scale to 0..1, then
(x - mean) / std) that teacher and student share.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split

from edgekd.config import Preprocess
from edgekd.data import loaders
from edgekd.errors import InputError

CALIBRATION_SIZE = 128  # samples for INT8 calibration; drawn from train, never from the held-out split
VAL_FRACTION = 0.2


@dataclass(frozen=True)
class Preprocessing:
    """The resolved preprocessing: recorded in report.json and in the student ONNX's metadata."""

    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: int

    def as_dict(self) -> dict:
        return {"input_size": list(self.input_size), "mean": list(self.mean), "std": list(self.std),
                "channels": self.channels, "layout": "NCHW", "pixel_scale": "0..1 before (x - mean) / std"}


@dataclass(frozen=True)
class Dataset:
    source: str
    classes: list[str]
    x: np.ndarray  # (N, C, H, W), uint8 or float32
    y: np.ndarray  # (N,) int64
    scale: float  # x / scale is in 0..1
    train_idx: np.ndarray
    val_idx: np.ndarray  # held-out evaluation split
    calib_idx: np.ndarray  # subset of train_idx, for INT8 calibration
    preprocessing: Preprocessing
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def inputs(self, idx: np.ndarray) -> np.ndarray:
        """Model-ready float32 inputs for the given sample indices."""
        p = self.preprocessing
        x = self.x[idx].astype(np.float32) / self.scale
        mean = np.asarray(p.mean, np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(p.std, np.float32).reshape(1, -1, 1, 1)
        return (x - mean) / std

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        idx = {"train": self.train_idx, "val": self.val_idx, "calib": self.calib_idx}[name]
        return self.inputs(idx), self.y[idx]

    def timing_feed(self, batch: int = 1) -> np.ndarray:
        """The input latency is timed on: a held-out image repeated to the batch."""
        return np.ascontiguousarray(self.inputs(self.val_idx[:1]).repeat(batch, 0))

    def timing_shape(self, batch: int = 1) -> tuple[int, ...]:
        """The input shape the memory probe feeds (edgekd/runtimes/memprobe.py)."""
        p = self.preprocessing
        return (batch, p.channels, *p.input_size)


def _resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (N, C, H, W) array, keeping its dtype."""
    if x.shape[2:] == tuple(size):
        return x

    t = F.interpolate(torch.from_numpy(x.astype(np.float32)), size=size, mode="bilinear", antialias=True,
                      align_corners=False)
    out = t.numpy()
    return np.clip(np.rint(out), 0, 255).astype(np.uint8) if x.dtype == np.uint8 else out


def _to_channels(x: np.ndarray, channels: int | None, source: str) -> np.ndarray:
    if channels is None or x.shape[1] == channels:
        return x
    if x.shape[1] == 1 and channels == 3:
        return np.repeat(x, 3, axis=1)
    if x.shape[1] == 3 and channels == 1:  # ITU-R 601 luma, as PIL's "L" conversion
        luma = np.tensordot(np.array([0.299, 0.587, 0.114], np.float32), x.astype(np.float32), axes=([0], [1]))
        return luma[:, None].astype(x.dtype)
    raise InputError(f"{source}: images have {x.shape[1]} channels but the teacher takes {channels}")


def _stratified_split(y: np.ndarray, seed: int, classes: list[str], source: str) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(y, minlength=len(classes))
    need = max(2, int(np.ceil(1 / VAL_FRACTION)))
    if (counts < need).any():
        few = classes[int(np.argmin(counts))]
        raise InputError(f"--data '{source}': class '{few}' has {counts.min()} sample(s); each class needs at "
                         f"least {need} to hold some out for evaluation")

    idx = np.arange(len(y))
    train, val = train_test_split(idx, test_size=VAL_FRACTION, random_state=seed, stratify=y)
    return np.sort(train), np.sort(val)


def load_data(spec: str, preprocess: Preprocess, seed: int, channels: int | None = None,
              default_size: tuple[int, int] | None = None, default_norm: tuple | None = None) -> Dataset:
    """Load `spec` (digits | folder | .npz) for a teacher taking `channels` channels.

    Size: --input-size, else the teacher's fixed size (`default_size`), else the data's native size.
    Mean/std: the config's, else `default_norm` (ImageNet for torchvision teachers), else 0 and 1.
    """
    raw = loaders.load_raw(spec, preprocess.input_size or default_size, seed)
    x = _to_channels(raw.x, channels, spec)
    size = preprocess.input_size or default_size or tuple(x.shape[2:])
    x = _resize(x, size)
    c = x.shape[1]
    mean, std = preprocess.mean, preprocess.std
    if mean is None and std is None and default_norm is not None:
        mean, std = default_norm
    mean = tuple(mean) if mean is not None else (0.0,) * c
    std = tuple(std) if std is not None else (1.0,) * c
    for name, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, c):
            raise InputError(f"--{name}: {len(values)} values given but the images have {c} channels")
    mean, std = (mean * c if len(mean) == 1 else mean), (std * c if len(std) == 1 else std)
    if raw.val_idx is None:
        train_idx, val_idx = _stratified_split(raw.y, seed, raw.classes, spec)
    else:
        train_idx, val_idx = raw.train_idx, raw.val_idx
    rng = np.random.default_rng(seed)
    calib_idx = np.sort(rng.choice(train_idx, size=min(CALIBRATION_SIZE, len(train_idx)), replace=False))
    return Dataset(source=spec, classes=raw.classes, x=x, y=raw.y, scale=raw.scale, train_idx=train_idx,
                   val_idx=val_idx, calib_idx=calib_idx,
                   preprocessing=Preprocessing(tuple(size), tuple(mean), tuple(std), c))
