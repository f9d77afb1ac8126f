"""Raw loaders: each returns pixels as (N, C, H, W), labels, class names, and the 0..1 scale."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from sklearn.datasets import load_digits as sk_digits

from edgekd.data import fonts, shapes
from edgekd.errors import InputError
from edgekd.hostinfo import cache_dir

EMBEDDED_SETS = {"fonts": fonts, "shapes": shapes}  # generated on first use into the cache (edgekd/data/<name>.py)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


@dataclass(frozen=True)
class RawData:
    x: np.ndarray
    y: np.ndarray
    classes: list[str]
    scale: float
    train_idx: np.ndarray | None = None  # set when the source has its own train/val split
    val_idx: np.ndarray | None = None


def load_raw(spec: str, size: tuple[int, int] | None, seed: int) -> RawData:
    if spec == "digits":
        return load_digits()
    if spec in EMBEDDED_SETS:
        # the set is fixed; `seed` varies splits of other data only
        return load_npz(EMBEDDED_SETS[spec].cached_npz(seed=0))
    path = Path(spec)
    if path.suffix == ".npz":
        return load_npz(path)
    if path.is_dir():
        return load_folder(path, size)
    if not path.exists():
        raise InputError(f"--data '{spec}': no such file or folder; give 'digits', 'fonts', 'shapes', an "
                         "ImageFolder folder or a .npz")
    raise InputError(f"--data '{spec}': not a folder or a .npz file; give 'digits', 'fonts', 'shapes', an "
                     "ImageFolder folder or a .npz")


def load_digits() -> RawData:
    """scikit-learn's 1,797 real 8x8 handwritten digits (values 0..16), shipped inside scikit-learn."""
    d = sk_digits()
    x = d.images.astype(np.uint8)[:, None]
    return RawData(x=x, y=d.target.astype(np.int64), classes=[str(c) for c in d.target_names], scale=16.0)


def _check_labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    if y.ndim != 1 or len(y) != n:
        raise InputError(f"{where}: 'y' must be a 1-D array of {n} labels, got shape {y.shape}")
    if n == 0:
        raise InputError(f"{where}: holds no samples; give at least one image per class")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise InputError(f"{where}: 'y' must hold non-negative integer class labels, got {y.dtype}")
    if len(np.unique(y)) < 2:
        raise InputError(f"{where}: 'y' has a single class; distillation needs at least 2")
    return y.astype(np.int64)


def load_npz(path: Path) -> RawData:
    """x (N,H,W[,C]) uint8 or 0..1 floats, y labels; optional `classes` names and `val_mask` (the held-out split)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise InputError(f"--data '{path}': file not found") from None
    except (ValueError, OSError) as e:
        raise InputError(f"--data '{path}': not a readable .npz without pickled objects ({e})") from None
    for key in ("x", "y"):
        if key not in arrays:
            raise InputError(f"--data '{path}': missing array '{key}' (has {sorted(arrays)}); "
                             "save with np.savez(f, x=..., y=...)")
    x = arrays["x"]
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise InputError(f"--data '{path}': 'x' must be (N,H,W), (N,H,W,C) or (N,C,H,W) with C 1 or 3, "
                         f"got {arrays['x'].shape}")
    if x.dtype == np.uint8:
        scale = 255.0
    elif np.issubdtype(x.dtype, np.floating) and x.size and not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).reshape(len(x), -1).any(1).sum())
        raise InputError(f"--data '{path}': 'x' holds NaN or infinite pixels in {bad} of {len(x)} samples; "
                         "fix or drop those samples")
    elif np.issubdtype(x.dtype, np.floating) and x.size and x.min() >= 0 and x.max() <= 1:
        x, scale = x.astype(np.float32), 1.0
    else:
        raise InputError(f"--data '{path}': 'x' must be uint8 pixels or floats in 0..1, got {x.dtype}")
    y = _check_labels(arrays["y"], len(x), f"--data '{path}'")
    n_classes = int(y.max()) + 1
    if "classes" in arrays and int(y.max()) >= len(arrays["classes"]):
        raise InputError(f"--data '{path}': 'y' holds label {int(y.max())}, out of range for the "
                         f"{len(arrays['classes'])} names in 'classes' (labels 0..{len(arrays['classes']) - 1})")
    missing = np.setdiff1d(np.arange(n_classes), y)
    if "classes" not in arrays and missing.size:
        raise InputError(f"--data '{path}': 'y' uses labels up to {n_classes - 1} but none is {int(missing[0])}; "
                         f"labels must be 0..K-1 with every class present ({missing.size} missing)")
    classes = [str(c) for c in arrays.get("classes", range(n_classes))]
    if len(classes) != n_classes:
        raise InputError(f"--data '{path}': 'classes' names {len(classes)} classes but 'y' uses {n_classes}")
    raw = RawData(x=np.ascontiguousarray(x), y=y, classes=classes, scale=scale)
    if "val_mask" not in arrays:
        return raw
    mask = arrays["val_mask"]
    if mask.dtype != bool or mask.shape != y.shape or mask.all() or not mask.any():
        raise InputError(f"--data '{path}': 'val_mask' must be a boolean array over the samples marking some, "
                         "not all, as held out")
    idx = np.arange(len(y))
    return RawData(raw.x, y, classes, scale, train_idx=idx[~mask], val_idx=idx[mask])


def _list_classes(root: Path) -> dict[str, list[Path]]:
    classes = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        # regular files only: a FIFO named x.png would block the read forever, a device would never end
        files = sorted(f for f in d.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not files:  # dropping it would silently change the class count the teacher is matched against
            raise InputError(f"--data '{root}': class folder '{d.name}' holds no images "
                             f"({', '.join(sorted(IMAGE_SUFFIXES))}); add images or remove the folder")
        classes[d.name] = files
    return classes


def load_folder(root: Path, size: tuple[int, int] | None) -> RawData:
    """ImageFolder layout: root/<class>/*, or root/train/<class>/* and root/val/<class>/*."""
    if (root / "train").is_dir() and (root / "val").is_dir():
        train, val = _list_classes(root / "train"), _list_classes(root / "val")
        if sorted(train) != sorted(val):
            raise InputError(f"--data '{root}': train/ has classes {sorted(train)} but val/ has {sorted(val)}")
        splits = [train, val]
    else:
        splits = [_list_classes(root)]
    classes = sorted(splits[0])
    if len(classes) < 2:
        found = f"one class ('{classes[0]}')" if classes else "no class folders with images"
        raise InputError(f"--data '{root}': found {found}; an ImageFolder needs a sub-folder of images per "
                         "class and at least 2 classes")
    files = [(f, classes.index(c)) for split in splits for c in classes for f in split[c]]
    x, y = decoded(root, files, size)
    if len(splits) == 2:
        n_train = sum(len(v) for v in splits[0].values())
        idx = np.arange(len(y))
        return RawData(x, y, classes, 255.0, train_idx=idx[:n_train], val_idx=idx[n_train:])
    return RawData(x, y, classes, 255.0)


def decoded(root: Path, files: list[tuple[Path, int]], size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """The folder's images decoded once into a uint8 .npy in the XDG cache, memory-mapped on later runs.

    Keyed by every file's path, byte size and modification time plus the target size, so an added, removed or
    rewritten image (or another --input-size) decodes afresh; an unchanged folder of JPEGs is read back in
    milliseconds and paged in on demand, never decoded again."""
    h = hashlib.sha256(json.dumps([str(root.resolve()), list(size) if size else None]).encode())
    for path, label in files:
        st = path.stat()
        h.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\0{label}\n".encode())
    stem = cache_dir() / "folders" / h.hexdigest()[:24]
    x_path, y_path = stem.with_suffix(".x.npy"), stem.with_suffix(".y.npy")
    if x_path.is_file() and y_path.is_file():
        try:
            return np.load(x_path, mmap_mode="r", allow_pickle=False), np.load(y_path, allow_pickle=False)
        except (ValueError, OSError):
            pass  # a damaged cache entry: decode again and replace it
    x, y = _read_images(files, size)
    stem.parent.mkdir(parents=True, exist_ok=True)
    for path, array in ((y_path, y), (x_path, x)):  # x last: its presence marks a complete entry
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npy")
        np.save(tmp, array, allow_pickle=False)
        os.replace(tmp, path)
    return np.load(x_path, mmap_mode="r", allow_pickle=False), y


def _read_images(files: list[tuple[Path, int]], size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    images, modes, first = [], set(), None
    for path, _ in files:
        try:
            with Image.open(path) as im:
                im.load()
                modes.add(im.mode)
                images.append(im.copy())
        except Image.DecompressionBombError:
            raise InputError(f"--data: image {path} is larger than {Image.MAX_IMAGE_PIXELS:,} pixels (PIL's guard "
                             "against decompression bombs); shrink or remove it") from None
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise InputError(f"--data: cannot read image {path} ({e}); remove or replace it") from None
        if size is None:
            if first is None:
                first = (path, im.size)
            elif im.size != first[1]:
                raise InputError(f"--data: images have different sizes ({first[1][0]}x{first[1][1]} in {first[0]}, "
                                 f"{im.size[0]}x{im.size[1]} in {path}); pass --input-size H,W to resize them")
    mode = "L" if modes <= {"L", "1"} else "RGB"
    arrays = []
    for im in images:
        im = im.convert(mode)
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        a = np.asarray(im, np.uint8)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    return np.stack(arrays), np.array([label for _, label in files], np.int64)
