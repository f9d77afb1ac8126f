"""The CUDA-only paths of the trainer: bf16 autocast with channels_last, the teacher-logit cache on the device,
a real out-of-memory, and NCCL DDP. Skipped (with the reason) where no GPU is visible; CI without a GPU runs the
CPU equivalents in test_trainer.py and test_ddp.py."""

import math

import numpy as np
import pytest
import torch

from edgekd.config import DistillConfig
from edgekd.data.loaders import load_digits
from edgekd.distill.taps import TorchTeacher
from edgekd.distill.trainer import TrainData, amp_dtype, train
from edgekd.models.families import create_model

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="needs a CUDA device (bf16 autocast, channels_last, real CUDA out-of-memory)")]
STUDENT = {"family": "resnet", "widths": [4, 8, 16], "blocks": [1, 1, 1]}
TEACHER = {"family": "resnet", "widths": [8, 16, 32], "blocks": [1, 1, 1]}


def _data():
    raw = load_digits()
    return TrainData(raw.x[:512], raw.y[:512], raw.scale, (0.3,), (0.4,))


def _models():
    torch.manual_seed(0)
    student = create_model(STUDENT, 1, 10, (8, 8))
    torch.manual_seed(1)
    return student, create_model(TEACHER, 1, 10, (8, 8))


def test_bf16_channels_last_training_on_cuda():
    gpu = torch.device("cuda")
    cfg = DistillConfig(epochs=2, batch_size=64, method="kd", augment="shift", mix="none")
    assert amp_dtype(cfg, gpu) == torch.bfloat16
    student, teacher = _models()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    result = train(student, _data(), cfg, gpu, 0, teacher=TorchTeacher(teacher, [], gpu, channels_last=True))
    conv = next(m for m in result.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_cuda and conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert all(math.isfinite(h["loss"]) for h in result.history) and result.skipped_steps == 0
    assert any(not torch.equal(v.cpu(), before[k]) for k, v in result.model.state_dict().items())


def test_function_matching_on_cuda_feeds_teacher_and_student_the_same_mixed_batch():
    gpu = torch.device("cuda")
    student, teacher = _models()
    seen = {"teacher": [], "student": []}
    teacher.register_forward_pre_hook(lambda m, a: seen["teacher"].append(a[0].clone()))
    student.register_forward_pre_hook(lambda m, a: seen["student"].append(a[0].clone()))
    cfg = DistillConfig(epochs=1, batch_size=64, method="kd", augment="shift_flip", mix="mixup_cutmix")
    result = train(student, _data(), cfg, gpu, 0, teacher=TorchTeacher(teacher, [], gpu, channels_last=True))
    assert len(seen["student"]) == 8 and all(a.is_cuda for a in seen["student"])
    assert all(torch.equal(a, b) for a, b in zip(seen["teacher"], seen["student"], strict=True))
    assert math.isfinite(result.history[-1]["loss"]) and result.skipped_steps == 0


def test_cached_teacher_logits_on_cuda_change_nothing():
    gpu = torch.device("cuda")
    runs = []
    for cached in (False, True):
        student, teacher = _models()
        cfg = DistillConfig(epochs=2, batch_size=64, method="kd", cache_teacher=cached, amp="off", augment="none",
                            mix="none")
        runs.append(train(student, _data(), cfg, gpu, 0, teacher=TorchTeacher(teacher, [], gpu, False)).model)
    for (k, a), b in zip(runs[0].state_dict().items(), runs[1].state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3, msg=lambda m, k=k: f"{k}: {m}")


def test_loader_workers_from_a_memory_mapped_set_match_the_set_on_the_device(tmp_path):
    gpu = torch.device("cuda")
    data = _data()
    np_path = tmp_path / "x.npy"
    np.save(np_path, data.x)
    mapped = TrainData(np.load(np_path, mmap_mode="r"), data.y, data.scale, data.mean, data.std)
    runs = []
    for d, limit in ((data, 2048), (mapped, 0)):  # on the GPU whole; gathered by 3 worker threads
        student, teacher = _models()
        cfg = DistillConfig(epochs=2, batch_size=64, method="kd", augment="shift", amp="off", loader_workers=3,
                            loader_device_max_mb=limit)
        runs.append(train(student, d, cfg, gpu, 0, teacher=TorchTeacher(teacher, [], gpu, False)).model)
    for (k, a), b in zip(runs[0].state_dict().items(), runs[1].state_dict().values(), strict=True):
        # cuDNN's weight-gradient kernels add in a varying order (1e-4 apart after 2 epochs on an H100); a batch
        # gathered wrongly would differ by orders of magnitude more
        torch.testing.assert_close(a, b, atol=5e-4, rtol=1e-2, msg=lambda m, k=k: f"{k}: {m}")


def test_real_cuda_out_of_memory_halves_the_batch():
    gpu = torch.device("cuda", torch.cuda.current_device())  # the memory cap needs an indexed device
    total = torch.cuda.get_device_properties(gpu).total_memory
    # Cap this process at 1.5 GiB whatever the card, so the sizes below are sure to run out: batch 4096 of
    # 3x224x224 is 2.4 GB as float32 before any activation; halving reaches a batch that fits.
    torch.cuda.set_per_process_memory_fraction(1.5 * 2 ** 30 / total, gpu)
    try:
        batch, side = 4096, 224
        raw = torch.randint(0, 256, (batch, 3, side, side), dtype=torch.uint8).numpy()
        data = TrainData(raw, (torch.arange(batch) % 10).numpy(), 255.0, (0.5,) * 3, (0.25,) * 3)
        torch.manual_seed(0)
        student = create_model(STUDENT, 3, 10, (side, side))
        cfg = DistillConfig(epochs=1, batch_size=batch, method="ce", max_oom_retries=12)
        result = train(student, data, cfg, gpu, 0)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, gpu)
        torch.cuda.empty_cache()
    assert result.oom_retries >= 1 and result.batch_size == batch >> result.oom_retries
    assert result.history[-1]["batch_size"] == result.batch_size and math.isfinite(result.history[-1]["loss"])


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL DDP needs two GPUs (gloo on CPU: test_ddp.py)")
def test_nccl_ddp_launch(tmp_path):
    from conftest import cli

    out = tmp_path / "run"
    arch = '{"family": "resnet", "widths": [4, 8, 16], "blocks": [1, 1, 1]}'
    result = cli("distill", "--out", out, "--arch", arch, "--epochs", "1", "--device", "cuda",
                 "--nproc-per-node", "2", "--set", "budgets.max_accuracy_drop=100")
    assert result.exit_code == 0, result.output + result.stderr
    assert (out / "distill" / "student.safetensors").is_file()
