"""Distillation throughput: edgekd's trainer against a plain hand-written PyTorch KD loop, same models, one process.

    python benchmarks/distill_throughput.py [--batch 256] [--steps 50] [--device auto]

Models as in RepDistiller/mdistiller's CIFAR tables: ResNet32x4 teacher -> ResNet8x4 student, 3x32x32 inputs,
100 classes, KD (T=4). Data: synthetic uint8 images kept on the device, as the trainer keeps a small uint8 set
(decoded once; normalization on the device), so both loops measure the same work. On CUDA both use bf16 autocast and
channels_last, and each variant is paired: plain vs edgekd, with teacher logits cached (both), and with
torch.compile (both). Images/s come from the second of two epochs (the first warms up kernels and caches).
The data-only rate (gather + normalize, no model) says whether a run is loader- or compute-bound.
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
    cfg = DistillConfig(method="kd", epochs=2, batch_size=batch, lr=0.05, compile=compile_, cache_teacher=cached)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--batch", type=int, default=None, help="default: 256 on cuda, 64 on cpu")
    ap.add_argument("--steps", type=int, default=None, help="steps per epoch; default: 100 on cuda, 4 on cpu")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile variants (cuda: default on)")
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
    variants = [("teacher every step", False, False), ("cached teacher logits", False, True)]
    if cuda or args.compile:
        variants.append(("torch.compile", True, False))
    print(f"{'variant':24s} {'plain img/s':>12s} {'edgekd img/s':>13s} {'ratio':>7s}")
    for label, comp, cached in variants:
        plain = plain_loop(x, y, device, batch, steps, cuda, comp, cached)
        ours = edgekd_loop(x, y, device, batch, steps, comp, cached)
        print(f"{label:24s} {plain:12.0f} {ours:13.0f} {ours / plain:7.2f}", flush=True)
    loader = data_only(x, device, batch, steps)
    print(f"data only (gather + normalize on {device.type}): {loader:.0f} img/s -> "
          f"{'compute' if loader > 4 * ours else 'loader'}-bound (data side is {loader / ours:.0f}x the training rate)")


if __name__ == "__main__":
    main()
