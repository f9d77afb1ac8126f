"""The trainer on real digits and real models: shared augmentation, teacher-logit caching, checkpoints and
resume, NaN/Inf skipping and stopping, out-of-memory halving, schedules and optimizers."""

import io
import math
import time

import numpy as np
import pytest
import torch
from rich.console import Console

from edgekd.config import DistillConfig
from edgekd.data.loaders import load_digits
from edgekd.distill import augment, checkpoint
from edgekd.distill.losses import REGISTRY, Method
from edgekd.distill.stage import teacher_share
from edgekd.distill.taps import TorchTeacher
from edgekd.distill.trainer import Schedule, TrainData, train
from edgekd.errors import InputError, StageFailed
from edgekd.models.families import create_model

STUDENT = {"family": "resnet", "widths": [4, 8, 16], "blocks": [1, 1, 1]}
TEACHER = {"family": "resnet", "widths": [8, 16, 32], "blocks": [1, 1, 1]}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data():
    raw = load_digits()
    return TrainData(raw.x[:512], raw.y[:512], raw.scale, (0.3,), (0.4,))


def student():
    torch.manual_seed(0)
    return create_model(STUDENT, 1, 10, (8, 8))


def teacher_runner():
    torch.manual_seed(1)
    return TorchTeacher(create_model(TEACHER, 1, 10, (8, 8)), [], CPU, channels_last=False)


def cfg(**kw):
    # kd unless a test says otherwise: the trainer takes a concrete method (the distill stage resolves `auto`)
    return DistillConfig(**{"method": "kd", "epochs": 1, "batch_size": 64, "lr": 0.05, "augment": "none",
                            "mix": "none", **kw})


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _inputs_seen(data, **settings) -> dict[str, list[torch.Tensor]]:
    """Every batch the teacher and the student were fed during one short KD run."""
    seen = {"teacher": [], "student": []}
    t, s = teacher_runner(), student()
    t.module.register_forward_pre_hook(lambda m, a: seen["teacher"].append(a[0].clone()))
    s.register_forward_pre_hook(lambda m, a: seen["student"].append(a[0].clone()))
    train(s, data, cfg(method="kd", **settings), CPU, 0, teacher=t)
    return seen


def test_teacher_and_student_see_the_same_augmented_batch(data):
    seen = _inputs_seen(data, augment="shift")
    assert len(seen["teacher"]) == len(seen["student"]) == 8
    assert all(torch.equal(a, b) for a, b in zip(seen["teacher"], seen["student"], strict=True))
    # and it was augmented: most images are no stored image (1 in 9 draws the zero shift at 8x8)
    plain = (torch.from_numpy(data.x).float() / data.scale - 0.3) / 0.4
    first = seen["student"][0]
    assert sum(any(torch.equal(first[i], p) for p in plain) for i in range(16)) < 8


def test_teacher_and_student_see_the_same_mixed_batch(data):
    seen = _inputs_seen(data, mix="mixup_cutmix")
    assert all(torch.equal(a, b) for a, b in zip(seen["teacher"], seen["student"], strict=True))
    plain = (torch.from_numpy(data.x).float() / data.scale - 0.3) / 0.4
    first = seen["student"][0]
    assert sum(any(torch.equal(first[i], p) for p in plain) for i in range(16)) < 8  # mixed: no stored image


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mixing_blends_each_image_with_its_partner_and_returns_its_share(kind):
    x = torch.stack([torch.full((1, 8, 8), float(i)) for i in range(4)])
    out, partner, share = augment.mix(x, (kind, 0.7, 5))
    assert partner.tolist() == [1, 2, 3, 0]  # rolled by 5 % 4
    kept = (out - x[partner]) / (x - x[partner])  # per pixel: 1 where the image's own value stayed, 0 where pasted
    assert kept.mean(dim=(1, 2, 3)).tolist() == pytest.approx([share] * 4, abs=1e-6)
    assert 0.5 <= share <= 1
    if kind == "mixup":
        assert share == 0.7 and torch.allclose(out, 0.7 * x + 0.3 * x[partner])
    else:  # a pasted box of side round(8 sqrt(0.3)) = 4: every pixel is either the image's or its partner's
        assert set(kept.unique().tolist()) == {0.0, 1.0} and share == pytest.approx(1 - 4 * 4 / 64)


def test_mixed_labels_weight_both_classes_by_their_shares():
    from edgekd.distill.losses import LossInputs, label_ce

    z = torch.randn(4, 3)
    y, yp = torch.tensor([0, 1, 2, 0]), torch.tensor([1, 2, 0, 0])
    mixed = label_ce(LossInputs(z, None, y, partner_targets=yp, mix_share=0.75))
    ce = torch.nn.functional.cross_entropy
    assert float(mixed) == pytest.approx(float(0.75 * ce(z, y) + 0.25 * ce(z, yp)))
    assert float(label_ce(LossInputs(z, None, y))) == pytest.approx(float(ce(z, y)))


def test_mixing_draws_replay_from_the_generator():
    c = cfg(mix="mixup_cutmix", mix_alpha=0.5)
    a = [augment.draw_mix(c, torch.Generator().manual_seed(3)) for _ in range(2)]
    assert a[0] == a[1] and a[0][0] in ("mixup", "cutmix") and 0.5 <= a[0][1] <= 1
    assert augment.draw_mix(cfg(), torch.Generator()) is None
    with pytest.raises(InputError, match="distill.mix"):
        train(student(), TrainData(np.zeros((4, 1, 8, 8), np.float32), np.arange(4) % 2),
              cfg(method="kd", augment="none", mix="mixup", cache_teacher=True), CPU, 0, teacher=teacher_runner())


def test_shift_and_flip_move_pixels_where_asked():
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4).repeat(2, 1, 1, 1)
    out = augment.apply(x, torch.tensor([[1, -1, 0], [0, 0, 1]]), max_px=1)
    # down 1, left 1, zero fill
    assert out[0, 0].tolist() == [[0, 0, 0, 0], [1, 2, 3, 0], [5, 6, 7, 0], [9, 10, 11, 0]]
    assert out[1, 0].tolist() == x[1, 0].flip(1).tolist()


def test_logit_cache_only_when_inputs_repeat_and_it_changes_nothing(data):
    calls = []
    t = teacher_runner()
    t.module.register_forward_pre_hook(lambda m, a: calls.append(len(a[0])))
    cached = train(student(), data, cfg(epochs=3, cache_teacher=True), CPU, 0, teacher=t).model
    assert sum(calls) == len(data.y)  # the teacher ran over the data once, not three times
    plain = train(student(), data, cfg(epochs=3), CPU, 0, teacher=teacher_runner()).model
    for a, b in zip(cached.state_dict().values(), plain.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # fixed views (FKD style) repeat too: at most views x images teacher evaluations
    calls.clear()
    train(student(), data, cfg(epochs=4, augment="shift", augment_views=2, cache_teacher=True), CPU, 0, teacher=t)
    assert len(data.y) < sum(calls) <= 2 * len(data.y)
    with pytest.raises(InputError, match="random augmentation never repeats"):
        train(student(), data, cfg(augment="shift", cache_teacher=True), CPU, 0, teacher=t)


def test_the_teachers_forward_time_is_recorded_per_epoch(data):
    t = teacher_runner()
    calls = []

    def slow(_module, _args):  # a teacher slowed by 20 ms a call: its recorded time must cover the sleeps
        calls.append(1)
        time.sleep(0.02)

    t.module.register_forward_pre_hook(slow)
    history = train(student(), data, cfg(method="kd", epochs=2), CPU, 0, teacher=t).history
    assert len(calls) == 2 * math.ceil(len(data.y) / 64)
    for h in history:
        assert 0.02 * len(calls) / 2 <= h["teacher_s"] < h["seconds"]
    assert 0.02 * len(calls) / sum(h["seconds"] for h in history) <= teacher_share(history) < 1
    alone = train(student(), data, cfg(method="ce"), CPU, 0).history
    assert alone[0]["teacher_s"] == 0 and teacher_share(alone) is None


def test_out_of_memory_halves_the_batch_and_records_it(data):
    s = student()

    def oom_above_16(module, args):
        if len(args[0]) > 16:  # what a GPU that fits 16 images would do; the real exception type
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    hook = s.register_forward_pre_hook(oom_above_16)
    result = train(s, data, cfg(method="ce"), CPU, 0)
    assert result.batch_size == 16 and result.oom_retries == 2
    assert result.history[-1]["batch_size"] == 16 and math.isfinite(result.history[-1]["loss"])
    hook.remove()
    s.register_forward_pre_hook(oom_above_16)
    with pytest.raises(StageFailed, match="out of memory at batch 32 after 1 halvings"):
        train(s, data, cfg(method="ce", max_oom_retries=1), CPU, 0)


@pytest.fixture()
def nan_loss():
    """A loss that is NaN on chosen steps (a test-only registry entry, removed afterwards)."""
    state = {"step": 0, "bad": set()}

    def fn(b, c):
        state["step"] += 1
        loss = torch.nn.functional.cross_entropy(b.student, b.targets)
        return loss * float("nan") if state["step"] in state["bad"] else loss

    REGISTRY.register("nan_test")(Method(fn, labels=True, teacher=False))
    yield state
    REGISTRY._items.pop("nan_test")  # a test-only method, unregistered


def test_nan_steps_are_skipped_up_to_a_bound(data, nan_loss, tmp_path):
    nan_loss["bad"] = {3, 5}
    s = student()
    result = train(s, data, cfg(method="nan_test", epochs=2), CPU, 0, checkpoints=tmp_path)
    assert result.skipped_steps == 2 and result.history[-1]["skipped_steps"] == 2
    assert all(torch.isfinite(p).all() for p in s.parameters())


def test_persistent_nan_stops_naming_the_step_and_keeps_the_last_good_checkpoint(data, nan_loss, tmp_path):
    nan_loss["bad"] = set(range(20, 1000))  # 8 steps per epoch: epochs 1-2 are clean, then NaN from step 20
    with pytest.raises(StageFailed, match=r"NaN/Inf at step 23 \(epoch 3.*last good checkpoint .*epoch-0002.pt"):
        train(student(), data, cfg(method="nan_test", epochs=4, max_nonfinite_steps=3), CPU, 0,
              checkpoints=tmp_path)
    state = checkpoint.load(tmp_path / "epoch-0002.pt")
    assert state["epoch"] == 2 and all(torch.isfinite(v).all() for v in state["model"].values()
                                       if v.is_floating_point())
    assert not (tmp_path / "epoch-0003.pt").exists()


def test_resume_skips_a_truncated_checkpoint_and_matches_an_uninterrupted_run(data, tmp_path):
    c = cfg(epochs=3, augment="shift", method="kd")
    full = train(student(), data, c, CPU, 0, teacher=teacher_runner(), checkpoints=tmp_path / "a",
                 fingerprint={"run": 1})
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["epoch-0002.pt", "epoch-0003.pt"]  # keep 2, no tmp
    newest = tmp_path / "a" / "epoch-0003.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a torn write from a crash
    console = Console(file=io.StringIO(), width=300)
    resumed = train(student(), data, c, CPU, 0, teacher=teacher_runner(), checkpoints=tmp_path / "a", resume=True,
                    fingerprint={"run": 1}, console=console)
    assert resumed.resumed_from_epoch == 2
    assert "epoch-0003.pt: unreadable" in console.file.getvalue()
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # RNG, optimizer and schedule restored: bit for bit the same run
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    with pytest.raises(InputError, match="--resume: .* was written with run=1, this run has 2"):
        train(student(), data, c, CPU, 0, teacher=teacher_runner(), checkpoints=tmp_path / "a", resume=True,
              fingerprint={"run": 2})


def test_schedules_follow_training_progress():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    cos = Schedule(opt, cfg())
    cos.set(0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    step = Schedule(opt, cfg(schedule="step", step_milestones_fraction=[0.5, 0.75], step_gamma=0.1))
    for p, lr in ((0.1, 1.0), (0.6, 0.1), (0.8, 0.01)):
        step.set(p)
        assert opt.param_groups[0]["lr"] == pytest.approx(lr)


def test_adamw_step_schedule_bf16_autocast_and_clipping_train(data):
    result = train(student(), data, cfg(epochs=2, optimizer="adamw", lr=3e-3, schedule="step", amp="bf16",
                                        grad_clip_norm=5.0, method="dkd"), CPU, 0, teacher=teacher_runner())
    h = result.history
    assert h[1]["loss"] < h[0]["loss"] and (h[0]["lr"], h[1]["lr"]) == pytest.approx((3e-4, 3e-5))  # at the epoch ends
    assert {"kl", "kl_bcd", "kl_scd", "kl_wcd", "term_dkd"} <= set(h[0])
    assert "kl" not in train(student(), data, cfg(method="ce"), CPU, 0).history[0]  # no teacher, no diagnostic


def test_a_teacher_method_without_a_teacher_is_refused(data):
    with pytest.raises(InputError, match="needs a teacher"):
        train(student(), data, cfg(method="kd"), CPU, 0)


def test_checkpoint_writes_are_atomic_and_foreign_files_are_refused(tmp_path):
    path = checkpoint.save(tmp_path, 1, {"fingerprint": {}, "model": {"w": torch.ones(2)}, "optimizer": {},
                                         "scheduler": {}, "rng": {}}, keep=2)
    assert checkpoint.load(path)["model"]["w"].sum() == 2 and list(tmp_path.iterdir()) == [path]
    torch.save({"anything": np.zeros(2)}, tmp_path / "epoch-0009.pt")  # not loadable with weights_only
    state, found, problems = checkpoint.latest(tmp_path)
    assert found == path and "epoch-0009.pt: unreadable" in problems[0]
