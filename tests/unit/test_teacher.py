import pytest
import torch
import torchvision
from safetensors.torch import save_file

from edgekd.config import TeacherSpec
from edgekd.errors import InputError
from edgekd.models.families import create_model
from edgekd.models.teacher import load_teacher


def test_onnx_teacher_runs_through_onnxruntime(tiny_onnx):
    t = load_teacher(TeacherSpec(source=str(tiny_onnx)))
    assert t.in_channels == 1 and t.num_classes == 10 and t.module is None and t.params > 0
    assert t.logits(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


def test_corrupt_onnx_is_refused(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(InputError, match="not a valid ONNX model"):
        load_teacher(TeacherSpec(source=str(bad)))


def test_missing_teacher_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_teacher(TeacherSpec(source=str(tmp_path / "nope.onnx")))


def test_pickled_module_needs_trust(tmp_path, tiny_arch):
    path = tmp_path / "whole.pt"
    torch.save(create_model(tiny_arch, 1, 10, (8, 8)), path)
    with pytest.raises(InputError, match="pickled Python object.*--trust-pickle"):
        load_teacher(TeacherSpec(source=str(path)))
    t = load_teacher(TeacherSpec(source=str(path), trust_pickle=True))
    assert t.logits(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_state_dict_file_points_to_teacher_weights(tmp_path, tiny_arch):
    path = tmp_path / "sd.pt"
    torch.save(create_model(tiny_arch, 1, 10, (8, 8)).state_dict(), path)
    with pytest.raises(InputError, match="--teacher-weights"):
        load_teacher(TeacherSpec(source=str(path)))


def test_torchscript_and_torch_export_teachers(tmp_path, tiny_arch):
    model = create_model(tiny_arch, 1, 10, (8, 8)).eval()
    torch.jit.trace(model, torch.zeros(1, 1, 8, 8)).save(str(tmp_path / "m.ts"))
    ts = load_teacher(TeacherSpec(source=str(tmp_path / "m.ts")))
    torch.export.save(torch.export.export(model, (torch.zeros(2, 1, 8, 8),)), str(tmp_path / "m.pt2"))
    ep = load_teacher(TeacherSpec(source=str(tmp_path / "m.pt2")))
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(ts.logits(x), model(x))
    torch.testing.assert_close(ep.logits(x), model(x))


def test_torchvision_teacher_from_safetensors(tmp_path):
    model = torchvision.models.get_model("resnet18", weights=None, num_classes=4)
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    t = load_teacher(TeacherSpec(source="torchvision:resnet18", weights=tmp_path / "w.safetensors"))
    assert t.num_classes == 4 and t.in_channels == 3 and t.default_norm is not None
    with pytest.raises(InputError, match="did you mean 'resnet18'"):
        load_teacher(TeacherSpec(source="torchvision:resnet19", weights=tmp_path / "w.safetensors"))
    with pytest.raises(InputError, match="needs --teacher-weights"):
        load_teacher(TeacherSpec(source="torchvision:resnet18"))
    with pytest.raises(InputError, match="do not fit torchvision:resnet34"):
        load_teacher(TeacherSpec(source="torchvision:resnet34", weights=tmp_path / "w.safetensors"))


def test_the_embedded_teacher_takes_the_data_sets_channels(tmp_path):
    """A colour set keeps its colour for the embedded teacher (it used to be turned grey, losing what tells a
    shape from its background); a grey set stays grey."""
    import numpy as np

    from edgekd.config import Preprocess
    from edgekd.data import load_data

    channels = load_teacher(TeacherSpec()).in_channels
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "rgb.npz", x=rng.integers(0, 256, (20, 3, 8, 8), dtype=np.uint8), y=np.arange(20) % 2)
    assert load_data(str(tmp_path / "rgb.npz"), Preprocess(), 0, channels=channels).preprocessing.channels == 3
    assert load_data("digits", Preprocess(), 0, channels=channels).preprocessing.channels == 1


def test_the_embedded_teacher_trains_the_same_on_every_first_use(tmp_path, monkeypatch):
    """Two first uses (empty caches, the global generator in different states, as two fresh processes have it)
    train the same weights: a fresh machine reproduces the teacher the README's figures were measured with."""
    from edgekd.config import DistillConfig, Preprocess
    from edgekd.data import load_data
    from edgekd.models import embedded_teacher as et

    tiny = ({"family": "resnet", "widths": [4, 8, 8], "blocks": [1, 1, 1]},
            DistillConfig(method="ce", epochs=1, batch_size=256, lr=0.05, augment="none", mix="none"))
    monkeypatch.setitem(et.RECIPES, "digits", tiny)
    data = load_data("digits", Preprocess(input_size=(8, 8)), 0)
    weights = []
    for i in range(2):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / str(i)))
        torch.manual_seed(1000 + i)
        model = et.embedded_teacher(data, 0, torch.device("cpu"))
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_the_default_teacher_ships_in_the_package(tmp_path, monkeypatch):
    """The README's first command trains no teacher: the digits teacher for the default seed and preprocessing
    is in the package under its recipe's key (a recipe changed without `python -m edgekd.models.embedded_teacher
    digits` fails here, not as a slow first run), loads from an empty cache without writing to it, and scores on
    the held-out split what its file says it scored when it was made."""
    from edgekd.config import Preprocess
    from edgekd.data import load_data
    from edgekd.distill.trainer import accuracy
    from edgekd.models import embedded_teacher as et

    data = load_data("digits", Preprocess(), 0)
    shipped = et.SHIPPED / et.teacher_key(data, 0)
    assert shipped.is_file(), f"{shipped.name} is not in {et.SHIPPED}: run python -m edgekd.models.embedded_teacher"
    assert shipped.stat().st_size < 1024 * 1024
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model = et.embedded_teacher(data, 0, torch.device("cpu"))
    assert not list((tmp_path / "edgekd").glob("teacher-*"))
    x, y = data.split("val")
    assert accuracy(model, x, y, torch.device("cpu")) == pytest.approx(et.shipped_accuracy(shipped), abs=1e-4)
    assert et.shipped_accuracy(shipped) > 0.95
