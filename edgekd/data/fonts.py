"""`fonts`: a harder offline benchmark set, generated deterministically from the fonts matplotlib ships.

36 classes (A-Z, 0-9) rendered at 32x32 from 22 text fonts with random size, shift, rotation, stroke
weight, a stray line, blur and noise. Train and held-out test are split *by font design*: the DejaVu and
STIX faces train, the Computer Modern faces (and one STIX face) are only ever seen in evaluation, so a
model must generalize across typefaces; O/0 and I/1 stay genuinely confusable. It is synthetic: it
measures distillation and search quality, not any real-world task.

    python -m edgekd.data.fonts fonts.npz     # reproduce the file (x, y, val_mask, classes)

`--data fonts` generates it once into the XDG cache (a few seconds) and loads it like any .npz.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from edgekd.data import generated

CLASSES = list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
SIZE = 32
TRAIN_PER_GLYPH = 20  # 15 train fonts x 36 classes x 20 = 10,800 training images
TEST_PER_GLYPH = 8  # 7 test fonts x 36 x 8 = 2,016 held-out images
# Symbol fonts map letters to math symbols; the "Display" and "NonUni" faces lack the glyphs.
EXCLUDE = {"cmex10", "cmsy10", "LastResortHE-Regular"}
TEST_FONTS = {"cmb10", "cmmi10", "cmr10", "cmss10", "cmti10", "cmtt10", "STIXGeneralBolIta"}
VERSION = 2


def font_files() -> list[Path]:
    """Text fonts among matplotlib's, in a fixed order; a font must render all classes distinctly."""
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    usable = []
    for path in sorted(folder.glob("*.ttf")):
        if path.stem in EXCLUDE:
            continue
        font = ImageFont.truetype(str(path), 24)
        glyphs = {bytes(np.asarray(font.getmask(c), np.uint8)) for c in CLASSES}
        if len(glyphs) == len(CLASSES) and b"" not in glyphs:
            usable.append(path)
    return usable


def render(font_path: Path, char: str, rng: np.random.Generator) -> np.ndarray:
    """One augmented 32x32 uint8 glyph (white on black)."""
    font = ImageFont.truetype(str(font_path), int(rng.integers(18, 27)))
    canvas = Image.new("L", (2 * SIZE, 2 * SIZE), 0)
    center = (SIZE + rng.uniform(-3, 3), SIZE + rng.uniform(-3, 3))
    draw = ImageDraw.Draw(canvas)
    draw.text(center, char, font=font, fill=int(rng.integers(170, 256)), anchor="mm",
              stroke_width=int(rng.random() < 0.25), stroke_fill=255)
    if rng.random() < 0.3:  # clutter: a stray stroke crossing the glyph's box
        ends = rng.uniform(SIZE // 2, SIZE + SIZE // 2, size=4)
        draw.line(list(ends), fill=int(rng.integers(80, 200)), width=1)
    canvas = canvas.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR, center=(SIZE, SIZE))
    canvas = canvas.crop((SIZE // 2, SIZE // 2, SIZE // 2 + SIZE, SIZE // 2 + SIZE))
    canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.9)))
    pixels = np.asarray(canvas, np.float32) + rng.normal(0, rng.uniform(0, 12), (SIZE, SIZE))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def generate(seed: int = 0) -> dict[str, np.ndarray]:
    """x (N, 32, 32) uint8, y (N,), val_mask (N,) True for the held-out fonts, classes (36,)."""
    fonts = font_files()
    xs, ys, val = [], [], []
    for f_idx, path in enumerate(fonts):
        held_out = path.stem in TEST_FONTS
        for c_idx, char in enumerate(CLASSES):
            for i in range(TEST_PER_GLYPH if held_out else TRAIN_PER_GLYPH):
                # one generator per image: the set does not depend on generation order
                rng = np.random.default_rng([seed, VERSION, f_idx, c_idx, i])
                xs.append(render(path, char, rng))
                ys.append(c_idx)
                val.append(held_out)
    return {"x": np.stack(xs), "y": np.array(ys, np.int64), "val_mask": np.array(val),
            "classes": np.array(CLASSES)}


def cached_npz(seed: int = 0) -> Path:
    return generated.cached_npz("fonts", VERSION, seed, generate)


if __name__ == "__main__":
    generated.write(sys.argv, "fonts", generate, " (unseen fonts)")
