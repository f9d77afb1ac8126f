import numpy as np
import pytest
from conftest import digits_like_npz
from PIL import Image

from edgekd.config import Preprocess
from edgekd.data import load_data
from edgekd.errors import InputError


def _folder(root, sizes, classes=("a", "b")):
    for c in classes:
        (root / c).mkdir(parents=True)
        for i, size in enumerate(sizes):
            Image.fromarray(np.full((size, size, 3), 40 * i, np.uint8)).save(root / c / f"{i}.png")
    return root


def test_digits_splits_are_disjoint_and_calibration_comes_from_train():
    d = load_data("digits", Preprocess(), seed=0)
    assert d.num_classes == 10 and d.x.shape[1:] == (1, 8, 8)
    assert not set(d.val_idx) & set(d.train_idx)
    assert set(d.calib_idx) <= set(d.train_idx) and not set(d.calib_idx) & set(d.val_idx)
    x, y = d.split("val")
    assert x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1 and len(x) == len(y)


def test_preprocessing_resizes_and_normalizes():
    d = load_data("digits", Preprocess(input_size=(16, 12), mean=[0.5], std=[0.25]), seed=0)
    x, _ = d.split("calib")
    assert x.shape[1:] == (1, 16, 12)
    assert d.preprocessing.as_dict()["mean"] == [0.5]
    raw = d.x[d.calib_idx].astype(np.float32) / d.scale
    np.testing.assert_allclose(x, (raw - 0.5) / 0.25, rtol=1e-5)


def test_split_is_deterministic_per_seed():
    a, b, c = (load_data("digits", Preprocess(), seed=s) for s in (0, 0, 1))
    assert (a.val_idx == b.val_idx).all() and not (a.val_idx == c.val_idx).all()


def test_npz_and_channel_conversion(tmp_path):
    path = digits_like_npz(tmp_path / "d.npz")
    d = load_data(str(path), Preprocess(), seed=0, channels=3)
    assert d.x.shape[1] == 3 and d.num_classes == 3 and d.scale == 255


def test_npz_missing_array_is_named(tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(InputError, match="missing array 'y'"):
        load_data(str(tmp_path / "bad.npz"), Preprocess(), seed=0)


def test_image_folder_loads_and_keeps_train_val_split(tmp_path):
    root = tmp_path / "imgs"
    _folder(root / "train", [8] * 6)
    _folder(root / "val", [8] * 2)
    d = load_data(str(root), Preprocess(), seed=0)
    assert d.classes == ["a", "b"] and len(d.train_idx) == 12 and len(d.val_idx) == 4
    assert d.x.shape[1:] == (3, 8, 8)


def test_folder_with_one_class_is_refused(tmp_path):
    root = _folder(tmp_path / "one", [8, 8], classes=("only",))
    with pytest.raises(InputError, match="one class \\('only'\\).*at least 2 classes"):
        load_data(str(root), Preprocess(), seed=0)


def test_mixed_image_sizes_need_input_size(tmp_path):
    root = _folder(tmp_path / "mixed", [8, 12, 8, 8, 8])
    with pytest.raises(InputError, match="different sizes.*--input-size"):
        load_data(str(root), Preprocess(), seed=0)
    d = load_data(str(root), Preprocess(input_size=(10, 10)), seed=0)
    assert d.x.shape[2:] == (10, 10)


def test_missing_data_path(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        load_data(str(tmp_path / "nope"), Preprocess(), seed=0)


def test_npz_val_mask_fixes_the_held_out_split(tmp_path):
    x = np.zeros((40, 8, 8), np.uint8)
    y = np.arange(40) % 4
    mask = np.arange(40) >= 32
    np.savez(tmp_path / "s.npz", x=x, y=y, val_mask=mask, classes=np.array(list("abcd")))
    d = load_data(str(tmp_path / "s.npz"), Preprocess(), seed=3)
    assert d.classes == list("abcd") and list(d.val_idx) == list(range(32, 40))
    np.savez(tmp_path / "bad.npz", x=x, y=y, val_mask=np.ones(40, bool))
    with pytest.raises(InputError, match="'val_mask'"):
        load_data(str(tmp_path / "bad.npz"), Preprocess(), seed=0)


def test_fonts_set_is_deterministic_and_split_by_font():
    from edgekd.data import fonts

    files = fonts.font_files()
    assert len(files) >= 20 and fonts.TEST_FONTS <= {f.stem for f in files}
    a = fonts.render(files[0], "A", np.random.default_rng([0, 1]))
    b = fonts.render(files[0], "A", np.random.default_rng([0, 1]))
    c = fonts.render(files[0], "B", np.random.default_rng([0, 1]))
    assert a.shape == (32, 32) and a.dtype == np.uint8 and (a == b).all() and not (a == c).all()
    n_train = (len(files) - len(fonts.TEST_FONTS)) * len(fonts.CLASSES) * fonts.TRAIN_PER_GLYPH
    assert n_train >= 10_000 and len(fonts.CLASSES) >= 20


def test_shapes_set_is_deterministic_colour_and_loads_by_name(monkeypatch, tmp_path):
    from edgekd.data import shapes

    a = shapes.render(3, np.random.default_rng([0, 1]))
    b = shapes.render(3, np.random.default_rng([0, 1]))
    c = shapes.render(4, np.random.default_rng([0, 1]))
    assert a.shape == (3, 32, 32) and a.dtype == np.uint8 and (a == b).all() and not (a == c).all()
    assert not (a[0] == a[1]).all()  # colour, not grey
    # `--data shapes` reads the generated file from the cache (a small stand-in here: generating takes ~20 s)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(shapes, "TRAIN_PER_CLASS", 6)
    monkeypatch.setattr(shapes, "TEST_PER_CLASS", 2)
    d = load_data("shapes", Preprocess(), seed=0)
    assert d.classes == shapes.CLASSES and d.x.shape == (80, 3, 32, 32)
    assert len(d.train_idx) == 60 and len(d.val_idx) == 20 and d.preprocessing.channels == 3


def test_image_folder_is_decoded_once_into_a_memory_mapped_cache(tmp_path, monkeypatch):
    import os

    from edgekd.data import loaders

    root = _folder(tmp_path / "imgs", [8] * 5)
    reads = []
    real = loaders._read_images
    monkeypatch.setattr(loaders, "_read_images", lambda files, size: reads.append(len(files)) or real(files, size))
    first = load_data(str(root), Preprocess(), seed=0)
    again = load_data(str(root), Preprocess(), seed=0)
    assert reads == [10]  # the second load decoded nothing
    assert isinstance(again.x, np.memmap) and again.x.dtype == np.uint8 and (again.x == first.x).all()
    # a rewritten image (new content and time), or another size, decodes afresh
    Image.fromarray(np.full((8, 8, 3), 250, np.uint8)).save(root / "a" / "0.png")
    os.utime(root / "a" / "0.png", ns=(1, 1))
    changed = load_data(str(root), Preprocess(), seed=0)
    assert reads == [10, 10] and changed.x[0].min() == 250
    load_data(str(root), Preprocess(input_size=(6, 6)), seed=0)
    assert reads == [10, 10, 10]
