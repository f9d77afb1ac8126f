"""Distillation throughput: edgekd's trainer against a plain hand-written PyTorch KD loop, same models, one process.

    python benchmarks/distill_throughput.py [--batch 256] [--steps 50] [--device auto] [--folder-images 1024]

Models as in RepDistiller/mdistiller's CIFAR tables: ResNet32x4 teacher -> ResNet8x4 student, 3x32x32 inputs,
100 classes, KD (T=4). Data: synthetic uint8 images kept on the device, as the trainer keeps a small uint8 set
(decoded once; normalization on the device), so both loops measure the same work. On CUDA both use bf16 autocast and
channels_last, and each variant is paired: plain vs edgekd, with teacher logits cached (both), and with
torch.compile (both). Images/s come from the second of two epochs (the first warms up kernels and caches).
The data-only rate (gather + normalize, no model) says whether a run is loader- or compute-bound, and the teacher's
share of the step is 1 - rate(kd) / rate(student alone). The ImageFolder variant writes 224x224 JPEGs to a temporary
folder, decodes them once into the memory-mapped uint8 cache and prints the loader's images/s alone beside the KD
training step's, both reading that cache through the worker threads.
"""

from __future__ import annotations

import argparse
import io
import time

import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn
from torchvision.models.resnet import BasicBlock

from edgekd.config import DistillConfig
from edgekd.distill.taps import TorchTeacher
from edgekd.distill.trainer import TrainData, train

MEAN, STD = (0.507, 0.487, 0.441), (0.267, 0.256, 0.276)
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class CifarResNet(nn.Module):
    """RepDistiller's resnet{8,32}x4: a 3x3 stem of 32 channels, three stages of BasicBlocks (64, 128, 256
    channels, strides 1, 2, 2), n blocks each, global pooling, a linear classifier."""

    def __init__(self, n: int, classes: int = 100):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(True)]
        c_in = 32
        for width, stride in ((64, 1), (128, 2), (256, 2)):
            for i in range(n):
                s = stride if i == 0 else 1
                down = None
                if s != 1 or c_in != width:
                    down = nn.Sequential(nn.Conv2d(c_in, width, 1, stride=s, bias=False), nn.BatchNorm2d(width))
                layers.append(BasicBlock(c_in, width, s, down))
                c_in = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c_in, classes)

    def forward(self, x):
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


def resnet32x4():
    return CifarResNet(5)


def resnet8x4():
    return CifarResNet(1)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_loop(x, y, device, batch, steps, bf16, compile_, cached):
    """The loop a person writes by hand: teacher under no_grad (or precomputed logits), student, KD, SGD."""
    torch.manual_seed(0)
    teacher, student = resnet32x4().to(device).eval(), resnet8x4().to(device).train()
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    teacher, student = teacher.to(memory_format=fmt), student.to(memory_format=fmt)
    opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    fwd = torch.compile(student) if compile_ else student
    t_fwd = torch.compile(teacher) if compile_ else teacher
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)

    def inputs(i):
        xb = x[i * batch:(i + 1) * batch].float().div_(255).sub_(mean).div_(std)
        return xb.contiguous(memory_format=fmt), y[i * batch:(i + 1) * batch]

    soft = None
    if cached:  # the whole set's teacher logits, once (inputs repeat exactly: no augmentation)
        with torch.no_grad(), torch.autocast(**amp):
            soft = torch.cat([t_fwd(inputs(i)[0]).float() for i in range(steps)])
    rates = []
    for _ in range(2):
        sync(device)
        t0 = time.perf_counter()
        for i in range(steps):
            xb, yb = inputs(i)
            with torch.autocast(**amp):
                if cached:
                    zt = soft[i * batch:(i + 1) * batch]
                else:
                    with torch.no_grad():
                        zt = t_fwd(xb).float()
                zs = fwd(xb).float()
                kl = F.kl_div(F.log_softmax(zs / 4, 1), F.log_softmax(zt / 4, 1), log_target=True,
                              reduction="batchmean")
                loss = 0.1 * F.cross_entropy(zs, yb) + 0.9 * 16 * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        loss.item()
        sync(device)
        rates.append(steps * batch / (time.perf_counter() - t0))
    return rates[-1]


def edgekd_loop(x, y, device, batch, steps, compile_, cached):
    torch.manual_seed(0)
    teacher, student = resnet32x4(), resnet8x4()
    runner = TorchTeacher(teacher, [], device, channels_last=device.type == "cuda")
    cfg = DistillConfig(method="kd", epochs=2, batch_size=batch, lr=0.05, compile=compile_, cache_teacher=cached,
                        augment="none", mix="none")  # the plain loop's work: no augmentation
    data = TrainData(x.cpu().numpy(), y.cpu().numpy(), 255.0, MEAN, STD)
    result = train(student, data, cfg, device, 0, teacher=runner, console=Console(file=io.StringIO()))
    return result.history[-1]["images_per_s"]


def data_only(x, device, batch, steps):
    """Gather + normalize, no model: the ceiling a loader-free trainer's input side allows."""
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    perm = torch.randperm(len(x), device=x.device)
    sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        xb = x[perm[i * batch:(i + 1) * batch]].float().div_(255).sub_(mean).div_(std)
    xb.sum().item()
    sync(device)
    return steps * batch / (time.perf_counter() - t0)


def teacher_share(x, y, device, batch) -> float:
    """Share of the edgekd KD step spent on the teacher: 1 - rate(kd) / rate(student alone, method ce)."""
    rates = {}
    for method in ("ce", "kd"):
        torch.manual_seed(0)
        runner = TorchTeacher(resnet32x4(), [], device, channels_last=device.type == "cuda")
        cfg = DistillConfig(method=method, epochs=2, batch_size=batch, lr=0.05, augment="none", mix="none")
        data = TrainData(x.cpu().numpy(), y.cpu().numpy(), 255.0, MEAN, STD)
        result = train(resnet8x4(), data, cfg, device, 0, teacher=runner if method == "kd" else None,
                       console=Console(file=io.StringIO()))
        rates[method] = result.history[-1]["images_per_s"]
    return 1 - rates["kd"] / rates["ce"]


def write_jpegs(folder, n: int, classes: int = 10, side: int = 224) -> None:
    """n random-texture JPEGs (quality 90) in ImageFolder layout: folder/<class>/<i>.jpg."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for i in range(n):
        c = folder / f"c{i % classes}"
        c.mkdir(parents=True, exist_ok=True)
        small = torch.randint(0, 256, (side // 8, side // 8, 3), dtype=torch.uint8, generator=g).numpy()
        Image.fromarray(small).resize((side, side), Image.BILINEAR).save(c / f"{i}.jpg", quality=90)


def imagefolder_224(device, n: int, batch: int, workers: int) -> None:
    """ImageFolder of 224x224 JPEGs: decode once into the memory-mapped uint8 cache, then the loader alone (worker
    threads gather + pin + copy, uint8 -> float, normalization and shift/flip on the device) beside a KD step's rate
    (torchvision resnet18 teacher -> a small resnet student, bf16 + channels_last on cuda) reading the same cache."""
    import os
    import tempfile
    from pathlib import Path

    from torchvision.models import resnet18

    from edgekd.data.loaders import load_folder
    from edgekd.distill import augment
    from edgekd.distill.loader import Batches
    from edgekd.models.families import create_model

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")  # a cold cache, removed afterwards
        root = Path(tmp) / "images"
        t0 = time.perf_counter()
        write_jpegs(root, n)
        print(f"imagefolder 224: wrote {n} JPEGs in {time.perf_counter() - t0:.1f} s; batch {batch}, "
              f"{workers} loader workers, set kept on the host (memory-mapped), as a set too large for the GPU is")
        t0 = time.perf_counter()
        raw = load_folder(root, None)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        raw = load_folder(root, None)
        warm = time.perf_counter() - t0
        print(f"  decode into the uint8 cache: {n / cold:.0f} img/s ({cold:.1f} s); cached (memory-mapped) load: "
              f"{warm * 1000:.0f} ms")
        cfg = DistillConfig(method="kd", epochs=2, batch_size=batch, lr=0.05, augment="shift_flip",
                            mix="mixup_cutmix", loader_workers=workers, loader_device_max_mb=0)
        mean = torch.tensor(IMAGENET[0], device=device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET[1], device=device).view(1, 3, 1, 1)
        rates = []
        for _ in range(2):  # the second pass is timed (the first pages the cache in)
            batches = Batches(raw.x, raw.y, device, workers, 0)
            perm = torch.randperm(n)
            chunks = [perm[i:i + batch] for i in range(0, n, batch)]
            gen = torch.Generator().manual_seed(0)
            sync(device)
            t0 = time.perf_counter()
            for k, idx in enumerate(chunks):
                batches.prefetch(chunks[k + 1:k + 1 + workers])
                xb, _ = batches.get(idx)
                xb = augment.apply(xb.float() / 255, augment.draw(cfg, len(idx), (224, 224), gen),
                                   augment.max_shift_px(cfg, (224, 224)))
                xb = augment.mix((xb - mean) / std, augment.draw_mix(cfg, gen))[0]
            xb.sum().item()
            sync(device)
            rates.append(n / (time.perf_counter() - t0))
            batches.close()
        torch.manual_seed(0)
        runner = TorchTeacher(resnet18(num_classes=10), [], device, channels_last=device.type == "cuda")
        student = create_model({"family": "resnet", "widths": [16, 32, 64, 128], "blocks": [1, 1, 1, 1]}, 3, 10,
                               (224, 224))
        data = TrainData(raw.x, raw.y, 255.0, *IMAGENET)
        result = train(student, data, cfg, device, 0, teacher=runner, console=Console(file=io.StringIO()))
        step = result.history[-1]["images_per_s"]
        print(f"  loader alone: {rates[-1]:.0f} img/s; KD training step (resnet18 -> small resnet, shift/flip + "
              f"mixup/cutmix on the device): {step:.0f} img/s -> "
              f"{'compute' if rates[-1] > 1.5 * step else 'loader'}-bound")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--batch", type=int, default=None, help="default: 256 on cuda, 64 on cpu")
    ap.add_argument("--steps", type=int, default=None, help="steps per epoch; default: 100 on cuda, 4 on cpu")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile variants (cuda: default on)")
    ap.add_argument("--folder-images", type=int, default=None,
                    help="224x224 JPEGs in the ImageFolder variant; default 1024 on cuda, 64 on cpu; 0 skips it")
    ap.add_argument("--workers", type=int, default=4, help="loader worker threads in the ImageFolder variant")
    args = ap.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    cuda = device.type == "cuda"
    batch = args.batch or (256 if cuda else 64)
    steps = args.steps or (100 if cuda else 4)
    name = torch.cuda.get_device_name() if cuda else f"cpu ({torch.get_num_threads()} threads)"
    print(f"distill_throughput: ResNet32x4 -> ResNet8x4, 3x32x32, KD T=4, batch {batch}, {steps} steps/epoch, "
          f"2 epochs (second timed), {name}, {'bf16 + channels_last' if cuda else 'fp32'}")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch * steps, 3, 32, 32), dtype=torch.uint8, generator=g).to(device)
    y = torch.randint(0, 100, (batch * steps,), generator=g).to(device)
    def compare(label, comp, cached):
        plain = plain_loop(x, y, device, batch, steps, cuda, comp, cached)
        ours = edgekd_loop(x, y, device, batch, steps, comp, cached)
        print(f"{label:24s} {plain:12.0f} {ours:13.0f} {ours / plain:7.2f}", flush=True)
        return ours

    print(f"{'variant':24s} {'plain img/s':>12s} {'edgekd img/s':>13s} {'ratio':>7s}")
    ours = compare("teacher every step", False, False)
    compare("cached teacher logits", False, True)
    loader = data_only(x, device, batch, steps)
    print(f"data only (gather + normalize on {device.type}): {loader:.0f} img/s -> "
          f"{'compute' if loader > 4 * ours else 'loader'}-bound (data side is {loader / ours:.0f}x the training rate)")
    print(f"teacher's share of the edgekd KD step (1 - rate(kd) / rate(student alone)): "
          f"{100 * teacher_share(x, y, device, batch):.0f}%", flush=True)
    folder_images = args.folder_images if args.folder_images is not None else (1024 if cuda else 64)
    if folder_images:
        imagefolder_224(device, folder_images, 128 if cuda else 16, args.workers)
    if cuda or args.compile:  # last: compiling takes the longest
        print(f"{'variant':24s} {'plain img/s':>12s} {'edgekd img/s':>13s} {'ratio':>7s}")
        compare("torch.compile", True, False)


if __name__ == "__main__":
    main()
