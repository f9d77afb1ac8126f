"""Embedded teachers for the built-in data sets (digits, fonts, shapes): trained on first use, then cached.

The weights live in the XDG cache, keyed by recipe, split seed and preprocessing, so later runs load
them in milliseconds; a fresh machine needs no download, only compute once (digits ~30 s, fonts a few
minutes on 2 cores; shapes a few minutes on 2 cores, well under a minute on a GPU: `--device auto` uses one).
"""

from __future__ import annotations

import hashlib
import json
import os

from safetensors.torch import load_file, save_file

from edgekd.config import DistillConfig
from edgekd.data import Dataset
from edgekd.distill.trainer import accuracy, fit
from edgekd.hostinfo import cache_dir
from edgekd.models.families import create_model

# bump when a recipe (or a default it does not set) changes, so stale caches are not reused (2: seeded init)
VERSION = 2
RECIPES = {
    "digits": ({"family": "resnet", "widths": [32, 64, 128], "blocks": [2, 2, 2]},
               DistillConfig(method="ce", epochs=15, batch_size=64, lr=0.05, weight_decay=5e-4, augment="none",
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


def source_name(data: str) -> str:
    return f"embedded:{data}-resnet"


def embedded_teacher(data: Dataset, seed: int, device):
    arch, recipe = RECIPES[data.source]
    size = data.preprocessing.input_size
    # the fields the recipe sets, not every DistillConfig default: retuning a loss's parameter (dkd_beta, say)
    # must not retrain every cached teacher; a default a recipe relies on changes with VERSION
    key = json.dumps({"v": VERSION, "arch": arch, "recipe": recipe.model_dump(exclude_unset=True), "seed": seed,
                      "pre": data.preprocessing.as_dict(), "n": int(len(data.y))}, sort_keys=True)
    path = cache_dir() / f"teacher-{data.source}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.safetensors"
    # seeded: otherwise every first run would train a different teacher from the same recipe and seed
    model = create_model(arch, data.preprocessing.channels, data.num_classes, size, seed=seed)
    if path.is_file():
        model.load_state_dict(load_file(str(path)))
        return model.to(device).eval()
    x, y = data.split("train")
    fit(model, x, y, recipe, device, seed, description=f"training the embedded {data.source} teacher (first use)")
    xv, yv = data.split("val")
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp),
              metadata={"val_accuracy": f"{accuracy(model, xv, yv, device):.4f}", "arch": json.dumps(arch)})
    os.replace(tmp, path)  # atomic: concurrent first runs never read a half-written file
    return model.eval()
