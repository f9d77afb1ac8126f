"""Embedded teachers for the built-in data sets (digits, fonts, shapes).

The default one (digits, seed 0, the default preprocessing) ships inside the package
(edgekd/models/weights/), so the first `edgekd build` trains no teacher; it is made by

    python -m edgekd.models.embedded_teacher digits     # writes edgekd/models/weights/teacher-digits-<key>.safetensors

(seed 0, one CPU thread: about five minutes on a quiet core). Any other (recipe, seed, preprocessing) is trained
on first use and cached in the XDG cache under the same key, so later runs load it in milliseconds (fonts and
shapes a few minutes on 2 cores, well under a minute on a GPU: `--device auto` uses one).

Why the digits teacher is a ResNet-50 layout at 1/8 width (bottleneck blocks 3-4-6-3, 55 kernels, 25 MFLOP)
rather than a shallow wide network: at 8x8 pixels a GPU's latency is its kernel launches (15 us each on the Jetson
profile), so a 17-kernel teacher left no student 3x faster there; a deep, narrow teacher, as real ones are,
gives a few-kernel student its speed-up on every target (docs/architecture.md, "The embedded default").
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from edgekd.config import DistillConfig, Preprocess
from edgekd.data import Dataset, load_data
from edgekd.distill.trainer import accuracy, fit
from edgekd.hostinfo import cache_dir
from edgekd.models.families import create_model

# bump when a recipe (or a default it does not set) changes, so stale caches are not reused (2: seeded init;
# 3: the deep digits teacher)
VERSION = 3
RECIPES = {
    "digits": ({"family": "resnet", "block": "bottleneck", "widths": [8, 16, 32, 64], "blocks": [3, 4, 6, 3]},
               DistillConfig(method="ce", epochs=30, batch_size=64, lr=0.05, weight_decay=5e-4, augment="shift",
                             mix="none")),
    "fonts": ({"family": "resnet", "widths": [32, 64, 128], "blocks": [2, 2, 2]},
              DistillConfig(method="ce", epochs=8, batch_size=128, lr=0.1, weight_decay=5e-4, augment="none",
                            mix="none")),
    # colour scenes: the teacher needs augmentation (flips keep every shape's class) and a longer schedule to
    # pull clearly ahead (10 epochs on the grey-converted set reached 25% on a GPU; 30 epochs: ~35 s on an H100)
    "shapes": ({"family": "resnet", "widths": [32, 64, 128], "blocks": [2, 2, 2]},
               DistillConfig(method="ce", epochs=30, batch_size=128, lr=0.1, weight_decay=5e-4, augment="shift_flip",
                             mix="none")),
}
SHIPPED = Path(__file__).parent / "weights"  # in the wheel and the editable install alike (pyproject.toml)


def source_name(data: str) -> str:
    return f"embedded:{data}-resnet"


def teacher_key(data: Dataset, seed: int) -> str:
    """What a trained teacher depends on: recipe, split seed, preprocessing, set size. Its digest names the file,
    so a shipped or cached teacher is used only for the very data, split and recipe it was trained on."""
    arch, recipe = RECIPES[data.source]
    # the fields the recipe sets, not every DistillConfig default: retuning a loss's parameter (dkd_beta, say)
    # must not retrain every cached teacher; a default a recipe relies on changes with VERSION
    key = json.dumps({"v": VERSION, "arch": arch, "recipe": recipe.model_dump(exclude_unset=True), "seed": seed,
                      "pre": data.preprocessing.as_dict(), "n": int(len(data.y))}, sort_keys=True)
    return f"teacher-{data.source}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.safetensors"


def new_teacher(data: Dataset, seed: int) -> torch.nn.Module:
    # seeded: otherwise every first run would train a different teacher from the same recipe and seed
    return create_model(RECIPES[data.source][0], data.preprocessing.channels, data.num_classes,
                        data.preprocessing.input_size, seed=seed)


def train_teacher(data: Dataset, seed: int, device) -> tuple[torch.nn.Module, float]:
    """The recipe's teacher trained on the train split: (model in eval mode, held-out accuracy)."""
    model = new_teacher(data, seed)
    x, y = data.split("train")
    fit(model, x, y, RECIPES[data.source][1], device, seed,
        description=f"training the embedded {data.source} teacher (first use)")
    xv, yv = data.split("val")
    return model.eval(), accuracy(model, xv, yv, device)


def embedded_teacher(data: Dataset, seed: int, device):
    """The shipped teacher where one matches, else the cached one, else one trained now and cached."""
    name = teacher_key(data, seed)
    model = new_teacher(data, seed)
    for path in (SHIPPED / name, cache_dir() / name):
        if path.is_file():
            # safetensors: tensors only, nothing executed; fp16 shipped weights are copied into the fp32 model
            model.load_state_dict(load_file(str(path)))
            return model.to(device).eval()
    model, acc = train_teacher(data, seed, device)
    path = cache_dir() / name
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp),
              metadata={"val_accuracy": f"{acc:.4f}", "arch": json.dumps(RECIPES[data.source][0])})
    os.replace(tmp, path)  # atomic: concurrent first runs never read a half-written file
    return model


def ship(source: str) -> Path:
    """Train `source`'s teacher for seed 0 and the default preprocessing and write it into SHIPPED.

    One CPU thread and a fixed seed: the same torch version writes the same file. Floating-point tensors are
    stored at fp16, which halves the file; the held-out accuracy in its metadata is that of the rounded weights.
    """
    torch.set_num_threads(1)
    device = torch.device("cpu")
    data = load_data(source, Preprocess(), seed=0)
    model, _ = train_teacher(data, 0, device)
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    xv, yv = data.split("val")
    acc = accuracy(model.eval(), xv, yv, device)
    SHIPPED.mkdir(exist_ok=True)
    path = SHIPPED / teacher_key(data, 0)
    for old in SHIPPED.glob(f"teacher-{source}-*.safetensors"):  # a recipe change leaves no stale file behind
        old.unlink()
    save_file(state, str(path), metadata={"val_accuracy": f"{acc:.4f}", "arch": json.dumps(RECIPES[source][0]),
                                          "torch": torch.__version__, "made_by": f"python -m {__name__} {source}"})
    return path


def shipped_accuracy(path: Path) -> float:
    with safe_open(str(path), "pt") as f:
        return float(f.metadata()["val_accuracy"])


if __name__ == "__main__":
    written = ship(sys.argv[1] if len(sys.argv) > 1 else "digits")
    print(f"wrote {written} ({written.stat().st_size / 1024:.0f} KB, held-out accuracy "
          f"{shipped_accuracy(written):.4f})")
