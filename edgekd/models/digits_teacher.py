"""The embedded default teacher: a small ResNet trained on scikit-learn's digits on first use.

The weights are cached in the XDG cache (keyed by recipe, split seed and data), so later runs load them
in milliseconds; a fresh machine needs no download, only ~30 s of CPU.
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

ARCH = {"family": "resnet", "widths": [32, 64, 128], "blocks": [2, 2, 2]}
RECIPE = DistillConfig(method="ce", epochs=15, batch_size=64, lr=0.05, weight_decay=5e-4)
VERSION = 1  # bump when ARCH or RECIPE change, so stale caches are not reused


def embedded_teacher(data: Dataset, seed: int, device):
    size = data.preprocessing.input_size
    key = json.dumps({"v": VERSION, "arch": ARCH, "recipe": RECIPE.model_dump(), "seed": seed,
                      "pre": data.preprocessing.as_dict(), "n": int(len(data.y))}, sort_keys=True)
    path = cache_dir() / f"teacher-digits-{hashlib.sha256(key.encode()).hexdigest()[:16]}.safetensors"
    model = create_model(ARCH, data.preprocessing.channels, data.num_classes, size)
    if path.is_file():
        model.load_state_dict(load_file(str(path)))
        return model.to(device).eval()
    x, y = data.split("train")
    fit(model, x, y, RECIPE, device, seed, description="training the embedded digits teacher (first use)")
    xv, yv = data.split("val")
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp),
              metadata={"val_accuracy": f"{accuracy(model, xv, yv, device):.4f}", "arch": json.dumps(ARCH)})
    os.replace(tmp, path)  # atomic: concurrent first runs never read a half-written file
    return model.eval()
