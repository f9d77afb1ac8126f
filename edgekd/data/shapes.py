"""`shapes`: a hard offline benchmark set of small colour photos-like scenes, generated deterministically.

10 classes of shape (circle, triangle, square, pentagon, hexagon, star, cross, ring, crescent, arrow) as 32x32
RGB images, made hard in the ways photos are: a textured, coloured background (smooth colour fields, stripes,
checks, noise), clutter (strokes, blobs and a smaller shape of another class), a random scale (a quarter to
most of the frame), position and rotation, a fill that is solid, textured or an outline, a colour that may be
close to the background's, an occluding patch, blur, noise and colour shifts. Pentagon, hexagon and circle,
or ring and circle, differ only in a few pixels at small scale: a small network trained on labels alone stays
well below a larger one, which leaves distillation room to show its worth. It is synthetic: it measures
distillation and search quality, not any real-world task.

    python -m edgekd.data.shapes shapes.npz     # reproduce the file (x, y, val_mask, classes)

`--data shapes` generates it once into the XDG cache (about half a minute) and loads it like any .npz.
"""

from __future__ import annotations

import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from edgekd.data import generated

CLASSES = ["circle", "triangle", "square", "pentagon", "hexagon", "star", "cross", "ring", "crescent", "arrow"]
SIZE = 32
SUPER = 2  # drawn at 2x, then downsampled: anti-aliased edges as a camera gives
TRAIN_PER_CLASS = 1200  # 12,000 training images
TEST_PER_CLASS = 300  # 3,000 held-out images, drawn from other generator streams
VERSION = 1


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Outline points of a filled class shape of radius r around (cx, cy), rotated by `angle` radians."""
    if kind in ("triangle", "square", "pentagon", "hexagon"):
        n = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}[kind]
        pts = [(r, angle + 2 * math.pi * i / n) for i in range(n)]
    elif kind == "star":
        pts = [(r if i % 2 == 0 else 0.45 * r, angle + math.pi * i / 5) for i in range(10)]
    elif kind == "cross":
        w = 0.33
        base = [(w, 1), (w, w), (1, w), (1, -w), (w, -w), (w, -1), (-w, -1), (-w, -w), (-1, -w), (-1, w), (-w, w),
                (-w, 1)]
        pts = [(r * math.hypot(x, y), angle + math.atan2(y, x)) for x, y in base]
    elif kind == "arrow":
        base = [(1, 0), (0.1, 0.75), (0.1, 0.3), (-1, 0.3), (-1, -0.3), (0.1, -0.3), (0.1, -0.75)]
        pts = [(r * math.hypot(x, y), angle + math.atan2(y, x)) for x, y in base]
    else:
        raise ValueError(kind)
    return [(cx + d * math.cos(a), cy + d * math.sin(a)) for d, a in pts]


def _mask(kind: str, rng: np.random.Generator, cx: float, cy: float, r: float, angle: float, n: int):
    """An n x n 'L' mask (255 inside) of one class shape."""
    m = Image.new("L", (n, n), 0)
    d = ImageDraw.Draw(m)
    box = [cx - r, cy - r, cx + r, cy + r]
    if kind == "circle":
        d.ellipse(box, fill=255)
    elif kind == "ring":
        d.ellipse(box, fill=255)
        k = rng.uniform(0.45, 0.65) * r
        d.ellipse([cx - k, cy - k, cx + k, cy + k], fill=0)
    elif kind == "crescent":
        d.ellipse(box, fill=255)
        off = rng.uniform(0.35, 0.55) * r
        ox, oy = cx + off * math.cos(angle), cy + off * math.sin(angle)
        d.ellipse([ox - r, oy - r, ox + r, oy + r], fill=0)
    else:
        d.polygon(_polygon(kind, cx, cy, r, angle), fill=255)
    return np.asarray(m, np.float32) / 255.0


def _erode(m: np.ndarray, iterations: int) -> np.ndarray:
    """Binary erosion by the 3x3 cross, `iterations` times, with nothing outside the frame."""
    for _ in range(iterations):
        p = np.pad(m, 1)
        m = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m


def _texture(rng: np.random.Generator, n: int, color: np.ndarray) -> np.ndarray:
    """(n, n, 3) float in 0..1: a smooth colour field, stripes, checks or noise around `color`."""
    kind = 0 if rng.random() < 0.4 else int(rng.integers(1, 4))
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    if kind == 0:  # smooth colour field: a 3x3 grid of colours, bilinearly interpolated
        grid = np.clip(color + rng.normal(0, 0.25, (3, 3, 3)), 0, 1)
        img = Image.fromarray((grid * 255).astype(np.uint8)).resize((n, n), Image.BILINEAR)
        return np.asarray(img, np.float32) / 255.0
    other = np.clip(color + rng.normal(0, 0.35, 3), 0, 1)
    if kind == 1:  # stripes at a random angle and period
        a, period = rng.uniform(0, math.pi), rng.uniform(0.1, 0.35)
        t = (np.cos(a) * xx + np.sin(a) * yy) / period
        w = (np.sin(2 * math.pi * t) > 0).astype(np.float32)
    elif kind == 2:  # checks
        period = rng.uniform(0.12, 0.3)
        w = ((np.floor(xx / period) + np.floor(yy / period)) % 2).astype(np.float32)
    else:  # speckle
        w = (rng.random((n, n)) < rng.uniform(0.2, 0.5)).astype(np.float32)
    return color * (1 - w[..., None]) + other * w[..., None]


def render(label: int, rng: np.random.Generator) -> np.ndarray:
    """One (3, 32, 32) uint8 image of class `label`."""
    n = SIZE * SUPER
    bg_color = rng.random(3)
    img = _texture(rng, n, bg_color)
    # clutter: strokes and blobs in random colours
    clutter = Image.new("L", (n, n), 0)
    d = ImageDraw.Draw(clutter)
    for _ in range(rng.integers(1, 4)):
        if rng.random() < 0.5:
            d.line(list(rng.uniform(0, n, 4)), fill=255, width=int(rng.integers(1, 4)))
        else:
            c, s = rng.uniform(0, n, 2), rng.uniform(3, 10, 2)
            d.ellipse([c[0] - s[0], c[1] - s[1], c[0] + s[0], c[1] + s[1]], fill=255)
    m = np.asarray(clutter, np.float32)[..., None] / 255.0
    img = img * (1 - m) + rng.random(3) * m
    # a smaller distractor of another class, away from the centre of attention
    if rng.random() < 0.4:
        other = CLASSES[(label + 1 + int(rng.integers(len(CLASSES) - 1))) % len(CLASSES)]
        r = rng.uniform(0.08, 0.14) * n
        m = _mask(other, rng, *rng.uniform(r, n - r, 2), r, rng.uniform(0, 2 * math.pi), n)[..., None]
        img = img * (1 - m) + rng.random(3) * m
    # the object: scale, position, rotation, colour (sometimes close to the background's), fill
    r = rng.uniform(0.24, 0.44) * n
    cx, cy = rng.uniform(r * 0.8, n - r * 0.8, 2)
    m = _mask(CLASSES[label], rng, cx, cy, r, rng.uniform(0, 2 * math.pi), n)
    if rng.random() < 0.15:  # outline only
        m = m - _erode(m > 0.5, int(rng.integers(2, 4))).astype(np.float32)
    color = np.clip(bg_color + rng.normal(0, 0.3, 3), 0, 1) if rng.random() < 0.2 else rng.random(3)
    fill = _texture(rng, n, color) if rng.random() < 0.4 else np.broadcast_to(color, (n, n, 3))
    img = img * (1 - m[..., None]) + fill * m[..., None]
    # occlusion: a patch of background-like colour over part of the object
    if rng.random() < 0.3:
        w, h = rng.uniform(0.12, 0.3, 2) * n
        x0, y0 = cx + rng.uniform(-r, r) - w / 2, cy + rng.uniform(-r, r) - h / 2
        occ = Image.new("L", (n, n), 0)
        ImageDraw.Draw(occ).rectangle([x0, y0, x0 + w, y0 + h], fill=255)
        m = np.asarray(occ, np.float32)[..., None] / 255.0
        img = img * (1 - m) + np.clip(bg_color + rng.normal(0, 0.15, 3), 0, 1) * m
    # camera: downsample, blur, colour shift (gain per channel), noise
    out = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).resize((SIZE, SIZE), Image.BOX)
    out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.8)))
    pixels = np.asarray(out, np.float32) * rng.uniform(0.7, 1.2, 3) + rng.normal(0, rng.uniform(0, 10), (SIZE, SIZE, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8).transpose(2, 0, 1)


def _chunk(seed: int, held_out: bool, c: int, count: int) -> np.ndarray:
    # one generator per image: the set does not depend on generation order or on the number of processes
    return np.stack([render(c, np.random.default_rng([seed, VERSION, int(held_out), c, i])) for i in range(count)])


def generate(seed: int = 0, processes: int | None = None) -> dict[str, np.ndarray]:
    """x (N, 3, 32, 32) uint8, y (N,), val_mask (N,) True for the held-out images, classes (10,); drawn by up to
    `processes` processes (default: one per core, at most 8)."""
    chunks = [(seed, held_out, c, count) for held_out, count in ((False, TRAIN_PER_CLASS), (True, TEST_PER_CLASS))
              for c in range(len(CLASSES))]
    processes = processes or min(8, os.cpu_count() or 1)
    if processes > 1:
        with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
            parts = list(pool.map(_chunk, *zip(*chunks, strict=True)))
    else:
        parts = [_chunk(*c) for c in chunks]
    y = np.concatenate([np.full(count, c, np.int64) for _, _, c, count in chunks])
    val = np.concatenate([np.full(count, held_out) for _, held_out, _, count in chunks])
    return {"x": np.concatenate(parts), "y": y, "val_mask": val, "classes": np.array(CLASSES)}


def cached_npz(seed: int = 0) -> Path:
    return generated.cached_npz("shapes", VERSION, seed, generate)


if __name__ == "__main__":
    generated.write(sys.argv, "shapes", generate)
