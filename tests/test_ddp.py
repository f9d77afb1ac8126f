"""DDP on CPU (gloo, 2 real processes): the trainer's sharding, gradient averaging and cross-process BatchNorm
reproduce the single-process run."""

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from edgekd.config import DistillConfig
from edgekd.data.loaders import load_digits
from edgekd.distill.syncbn import GlooSyncBatchNorm, convert
from edgekd.distill.taps import TorchTeacher
from edgekd.distill.trainer import TrainData, train
from edgekd.models.families import create_model

# mixing pairs images within each process's share (augment.mix), so a mixed DDP run is not the single-process run
CFG = DistillConfig(epochs=2, batch_size=64, method="kd", augment="shift", mix="none")


def _models():
    torch.manual_seed(0)
    s = create_model({"family": "resnet", "widths": [4, 8, 16], "blocks": [1, 1, 1]}, 1, 10, (8, 8))
    torch.manual_seed(1)
    t = create_model({"family": "resnet", "widths": [8, 16, 32], "blocks": [1, 1, 1]}, 1, 10, (8, 8))
    return s, TorchTeacher(t, [], torch.device("cpu"), channels_last=False)


def _data():
    raw = load_digits()
    return TrainData(raw.x[:512], raw.y[:512], raw.scale, (0.3,), (0.4,))


def _train_worker(rank, world, init, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        student, teacher = _models()
        sizes = []
        student.register_forward_pre_hook(lambda m, a: sizes.append(len(a[0])))
        result = train(student, _data(), CFG, torch.device("cpu"), 0, teacher=teacher)
        if rank == 0:
            torch.save({"state": result.model.state_dict(), "history": result.history, "sizes": sizes}, out)
    finally:
        dist.destroy_process_group()


def test_two_processes_train_the_single_process_model(tmp_path):
    torch.set_num_threads(1)
    student, teacher = _models()
    single = train(student, _data(), CFG, torch.device("cpu"), 0, teacher=teacher)
    out = tmp_path / "ddp.pt"
    mp.spawn(_train_worker, args=(2, f"file://{tmp_path}/pg", str(out)), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)
    assert set(ddp["sizes"]) == {32}  # each process really ran half of every 64-image batch
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(ddp["state"][k], v, atol=2e-4, rtol=1e-3, msg=lambda m, k=k: f"{k}: {m}")
    for a, b in zip(single.history, ddp["history"], strict=True):
        assert abs(a["loss"] - b["loss"]) <= 1e-4 * a["loss"]  # epoch losses averaged over both processes


def _bn_worker(rank, world, init, x, dy, out):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        bn = convert(torch.nn.Sequential(torch.nn.BatchNorm2d(3)), cuda=False)[0]
        assert isinstance(bn, GlooSyncBatchNorm)
        torch.manual_seed(0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-1, 1)
        xs = x.chunk(world)[rank].clone().requires_grad_(True)
        y = bn(xs)
        y.backward(dy.chunk(world)[rank] * world)  # each process's loss is the mean over its share
        grads = torch.stack([bn.weight.grad, bn.bias.grad])
        dist.all_reduce(grads)
        if rank == 0:
            torch.save({"y": y.detach(), "dx": xs.grad / world, "grads": grads / world, "rm": bn.running_mean,
                        "rv": bn.running_var}, out)
    finally:
        dist.destroy_process_group()


def test_gloo_sync_batchnorm_equals_batchnorm_on_the_whole_batch(tmp_path):
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(2.0, 3.0, size=(8, 3, 4, 4)), dtype=torch.float32)
    dy = torch.tensor(rng.normal(size=(8, 3, 4, 4)), dtype=torch.float32)
    out = tmp_path / "bn.pt"
    mp.spawn(_bn_worker, args=(2, f"file://{tmp_path}/pg", x, dy, str(out)), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)
    ref = torch.nn.BatchNorm2d(3)
    torch.manual_seed(0)
    ref.weight.data.uniform_(0.5, 1.5)
    ref.bias.data.uniform_(-1, 1)
    xr = x.clone().requires_grad_(True)
    y = ref(xr)
    y.backward(dy)
    torch.testing.assert_close(got["y"], y.detach()[:4], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got["dx"], xr.grad[:4], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got["grads"], torch.stack([ref.weight.grad, ref.bias.grad]), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(got["rm"], ref.running_mean, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got["rv"], ref.running_var, atol=1e-6, rtol=1e-5)
