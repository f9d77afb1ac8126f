"""Regression corpus of hostile or broken inputs, each rebuilt as files in tmp_path and run through the CLI as a
user would: the contract is exit 2 with one line on stderr naming the file/field/option, and no traceback.

Property tests (hypothesis) then throw generated inputs at the loaders behind those commands: the remote
address, .npz data, and YAML targets/configs. Each either loads or raises InputError, never anything else.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import cli, digits_like_npz, matmul_with_external_weight
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgekd.errors import InputError

SENTINEL = "SENTINEL"


class Files:
    """Broken and hostile files, made on demand in one folder."""

    def __init__(self, root: Path, tiny_onnx: Path):
        self.root, self.tiny = root, tiny_onnx

    def write(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def empty(self, name): return self.write(name, b"")  # noqa: E704
    def random(self, name, n=600): return self.write(name, os.urandom(n))  # noqa: E704

    def truncated(self, name="truncated.onnx"):
        data = self.tiny.read_bytes()
        return self.write(name, data[: len(data) // 2])

    def folder(self, name):
        (self.root / name).mkdir(parents=True, exist_ok=True)
        return self.root / name

    def external_outside(self):
        self.write("secret.bin", np.ones(16, np.float32).tobytes())
        (self.root / "m").mkdir(exist_ok=True)
        onnx.save(matmul_with_external_weight("../secret.bin"), str(self.root / "m" / "ext.onnx"))
        return self.root / "m" / "ext.onnx"

    def npz(self, name, **arrays):
        path = self.root / name
        np.savez(path, **arrays)
        return path

    def data(self):
        return digits_like_npz(self.root / "d10.npz", n=200, classes=10)

    def images(self, name, empty_class=True):
        from PIL import Image

        for c in ("a", "b"):
            (self.root / name / c).mkdir(parents=True, exist_ok=True)
            for i in range(4):
                Image.fromarray(np.zeros((8, 8), np.uint8)).save(self.root / name / c / f"{i}.png")
        if empty_class:
            (self.root / name / "c").mkdir()
        return self.root / name

    def text(self, name, text):
        return self.write(name, text.encode())

    def earlier_run(self):
        out = self.root / "run"
        out.mkdir(exist_ok=True)
        (out / "report.json").write_text("{}")
        return out

    def eval_npz(self, name, n=20, size=8, labels=None, fill=None):
        x = np.random.default_rng(0).standard_normal((n, 1, size, size)).astype(np.float32)
        if fill is not None:
            x[:] = fill
        return self.npz(name, x=x, y=np.arange(n) % 10 if labels is None else labels)

    def with_metadata(self, name, **preprocessing):
        """The tiny model, its recorded preprocessing replaced (what an edited or foreign export carries)."""
        import json

        model = onnx.load(str(self.tiny))
        del model.metadata_props[:]
        model.metadata_props.add(key="preprocessing", value=json.dumps(preprocessing))
        onnx.save(model, str(self.root / name))
        return self.root / name

    def custom_op(self, name="custom.onnx"):
        from onnx import TensorProto, helper

        graph = helper.make_graph([helper.make_node("Evil", ["x"], ["y"], domain="com.evil")], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                          helper.make_opsetid("com.evil", 1)]), str(self.root / name))
        return self.root / name

    def feature_map_teacher(self, name="rank4.onnx"):
        """A conv whose output is (N, 10, 8, 8): a feature map, not logits."""
        from onnx import TensorProto, helper, numpy_helper

        w = numpy_helper.from_array(np.ones((10, 1, 3, 3), np.float32), "w")
        graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10, 8, 8])], [w])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(self.root / name))
        return self.root / name

    def scripted_features(self, name="features.pt"):
        """A TorchScript conv whose output is a feature map: only running it tells."""
        import torch

        torch.jit.script(torch.nn.Conv2d(1, 10, 3, padding=1)).save(str(self.root / name))
        return self.root / name

    def fifo_images(self, name):
        """An ImageFolder whose class 'c' holds only a FIFO named x.png (a read would block forever)."""
        root = self.images(name)
        os.mkfifo(root / "c" / "x.png")
        return root

    def bomb_images(self, name):
        from PIL import Image

        root = self.images(name, empty_class=False)
        Image.new("1", (20000, 20000)).save(root / "a" / "bomb.png")  # 400 Mpixel, a few KB on disk
        return root

    def report(self, name="report.json", **latency):
        import json

        budget = {"name": "latency_ms", "limit": 5.0, "value": 1.0, "source": "measured", "passed": True,
                  "interval": [0.9, 1.1], "verdict": "pass"} | latency
        return self.text(name, json.dumps({"schema": "edgekd.report/1", "target": {"name": "host-cpu"},
                                           "budgets": [budget], "stages": []}))

    def wrong_weights(self):
        import torchvision
        from safetensors.torch import save_file

        m = torchvision.models.get_model("resnet18", weights=None, num_classes=4)
        return _save(save_file, m, self.root / "w.safetensors")


def _save(save_file, model, path):
    save_file(model.state_dict(), str(path))
    return path


def _build(f: Files, *args):
    return ["build", "--out", f.root / "out", *args]


def _teacher(f: Files, path):
    return _build(f, "--teacher", path, "--data", f.data())


def _data(f: Files, path):
    return _build(f, "--teacher", f.tiny, "--data", path)


# name -> (argv builder, text the one line must contain)
CASES = {
    # --remote: nothing in the address may reach ssh as an option
    "remote ProxyCommand user": (lambda f: ["bench", f.tiny, "--remote", "ssh://-oProxyCommand=touch${IFS}"
                                            f"{SENTINEL}@host"], "not a valid login name"),
    "remote ProxyCommand host": (lambda f: ["bench", f.tiny, "--remote", "ssh://u@-oProxyCommand=touch${IFS}"
                                            f"{SENTINEL}"], "not a valid host name"),
    "remote -V user": (lambda f: ["bench", f.tiny, "--remote", "ssh://-V@host"], "not a valid login name"),
    "remote shell in host": (lambda f: ["bench", f.tiny, "--remote", f"ssh://u@$(touch${{IFS}}{SENTINEL})"],
                             "--remote"),
    "remote port 99999": (lambda f: ["bench", f.tiny, "--remote", "ssh://u@host:99999"], "out of range 1..65535"),
    "remote password": (lambda f: ["bench", f.tiny, "--remote", "ssh://u:pw@host"], "password"),
    "remote not ssh": (lambda f: ["bench", f.tiny, "--remote", "http://host"], "not an ssh:// address"),
    "build remote -V": (lambda f: _build(f, "--remote", "ssh://-V@host"), "--remote"),
    # models: lint, compile, bench, check never pass a damaged file
    "lint empty": (lambda f: ["lint", f.empty("empty.onnx")], "is empty (0 bytes)"),
    "lint truncated": (lambda f: ["lint", f.truncated()], "not a valid ONNX model"),
    "lint random": (lambda f: ["lint", f.random("random.onnx")], "not a valid ONNX model"),
    "lint directory": (lambda f: ["lint", f.folder("dir.onnx")], "is a directory"),
    "compile truncated ort": (lambda f: ["compile", f.truncated(), "--runtime", "onnxruntime", "--out",
                                         f.root / "c"], "not a valid ONNX model"),
    "compile random openvino": (lambda f: ["compile", f.random("random.onnx"), "--runtime", "openvino", "--out",
                                           f.root / "c"], "not a valid ONNX model"),
    "compile empty": (lambda f: ["compile", f.empty("empty.onnx"), "--runtime", "onnxruntime", "--out",
                                 f.root / "c"], "is empty"),
    "compile out under a file": (lambda f: ["compile", f.tiny, "--runtime", "onnxruntime", "--out",
                                            f.text("file", "x") / "c"], "is a file"),
    "bench empty": (lambda f: ["bench", f.empty("empty.onnx")], "is empty"),
    "bench truncated": (lambda f: ["bench", f.truncated()], "not a valid ONNX model"),
    "bench external data outside": (lambda f: ["bench", f.external_outside()], "not a file inside the model"),
    "bench random xml": (lambda f: ["bench", f.random("random.xml")], "not an OpenVINO IR"),
    "bench text engine": (lambda f: ["bench", f.text("t.engine", "text " * 400)], "not a TensorRT engine"),
    "bench directory": (lambda f: ["bench", f.folder("dir.onnx")], "is a directory"),
    "bench unknown suffix": (lambda f: ["bench", f.random("m.bin")], "unknown model format"),
    "check truncated": (lambda f: ["check", f.truncated(), "--target", "host-cpu"], "not a valid ONNX model"),
    "check baseline not json": (lambda f: ["check", f.tiny, "--target", "host-cpu", "--baseline",
                                           f.random("b.json")], "--baseline"),
    "check baseline wrong schema": (lambda f: ["check", f.tiny, "--target", "host-cpu", "--baseline",
                                               f.text("b.json", '{"schema": "x"}')], "not an edgekd report"),
    # teachers
    "teacher garbage .pt": (lambda f: _teacher(f, f.random("t.pt")), "not a model file torch can read"),
    "teacher garbage .pt trusted": (lambda f: [*_teacher(f, f.write("t.pt", b"\x80" + os.urandom(300))),
                                               "--trust-pickle"], "cannot be loaded even with --trust-pickle"),
    "teacher garbage .pt2": (lambda f: _teacher(f, f.random("t.pt2")), "not a torch.export archive"),
    "teacher zip .pt2": (lambda f: _teacher(f, _zip(f.root / "z.pt2")), "not a readable torch.export archive"),
    "teacher empty .pt2": (lambda f: _teacher(f, f.empty("e.pt2")), "is empty"),
    "teacher directory": (lambda f: _teacher(f, f.folder("t.onnx")), "is a directory"),
    "teacher truncated onnx": (lambda f: _teacher(f, f.truncated()), "not a valid ONNX model"),
    "teacher external data outside": (lambda f: _teacher(f, f.external_outside()), "not a file inside the model"),
    "teacher weights wrong shape": (lambda f: _build(f, "--teacher", "torchvision:resnet34", "--teacher-weights",
                                                     f.wrong_weights(), "--data", f.data()), "mismatched key"),
    # data
    "data empty class folder": (lambda f: _data(f, f.images("imgs")), "class folder 'c' holds no images"),
    "data NaN pixels": (lambda f: _data(f, f.npz("nan.npz", x=np.full((20, 8, 8), np.nan, np.float32),
                                                 y=np.arange(20) % 2)), "NaN"),
    "data y out of range": (lambda f: _data(f, f.npz("r.npz", x=np.zeros((20, 8, 8), np.uint8),
                                                     y=np.arange(20) % 4, classes=np.array(["a", "b", "c"]))),
                            "out of range"),
    "data y with a gap": (lambda f: _data(f, f.npz("g.npz", x=np.zeros((20, 8, 8), np.uint8),
                                                   y=np.where(np.arange(20) % 2, 3, 0))), "none is 1"),
    "data object array": (lambda f: _data(f, f.npz("o.npz", x=np.array([object()] * 3, dtype=object),
                                                   y=np.arange(3))), "without pickled objects"),
    "data zero samples": (lambda f: _data(f, f.npz("z0.npz", x=np.zeros((0, 8, 8), np.uint8),
                                                   y=np.zeros(0, np.int64))), "holds no samples"),
    "check custom-domain op": (lambda f: ["check", f.custom_op(), "--target", "host-cpu", "--latency-ms", "5"],
                               "custom op 'com.evil:Evil'"),
    "data missing y": (lambda f: _data(f, f.npz("m.npz", x=np.zeros((20, 8, 8), np.uint8))), "missing array 'y'"),
    "data npz not a zip": (lambda f: _data(f, f.random("r.npz")), "--data"),
    "data missing": (lambda f: _data(f, f.root / "nope"), "no such file or folder"),
    # configs and targets
    "config bad yaml": (lambda f: _build(f, "--config", f.text("c.yaml", "a: [1, 2\n")), "not valid YAML"),
    "config python tag": (lambda f: _build(f, "--config", f.text("c.yaml", "seed: !!python/object/apply:os.system"
                                                                 f" ['touch {SENTINEL}']\n")), "not valid YAML"),
    "config a list": (lambda f: _build(f, "--config", f.text("c.yaml", "- 1\n- 2\n")), "expected a mapping"),
    "config unknown field": (lambda f: _build(f, "--config", f.text("c.yaml", "sed: 1\n")), "unknown field"),
    "config binary": (lambda f: _build(f, "--config", f.random("c.yaml")), "c.yaml"),
    "config directory": (lambda f: _build(f, "--config", f.folder("cdir")), "cdir"),
    "target bad field": (lambda f: _build(f, "--target", f.text("t.yaml", "name: t\nprofile: host\nruntime: x\n")),
                         "t.yaml"),
    # evaluation and calibration arrays (bench --eval, compile --calibration): read like model files
    "eval /dev/null": (lambda f: ["bench", f.tiny, "--eval", "/dev/null"], "--eval '/dev/null': not a regular file"),
    "eval empty": (lambda f: ["bench", f.tiny, "--eval", f.empty("e.npz")], "is empty (0 bytes)"),
    "eval not an archive": (lambda f: ["bench", f.tiny, "--eval", f.random("r.npz")], "--eval"),
    "eval labels outside the classes": (lambda f: ["bench", f.tiny, "--eval", f.eval_npz("l.npz",
                                                                                          labels=np.arange(20) + 50)],
                                        "outside the model's 10 classes"),
    "eval zero samples": (lambda f: ["bench", f.tiny, "--eval", f.eval_npz("z.npz", n=0, labels=np.zeros(0, int))],
                          "N >= 1"),
    "eval wrong shape": (lambda f: ["bench", f.tiny, "--eval", f.eval_npz("s.npz", size=4)], "samples are 1x4x4"),
    "eval NaN": (lambda f: ["bench", f.tiny, "--eval", f.eval_npz("n.npz", fill=np.nan)], "NaN"),
    "calibration /dev/null": (lambda f: ["compile", f.tiny, "--runtime", "onnxruntime", "--precision", "int8",
                                         "--calibration", "/dev/null", "--out", f.root / "c"], "--calibration"),
    "calibration empty": (lambda f: ["compile", f.tiny, "--runtime", "onnxruntime", "--precision", "int8",
                                     "--calibration", f.empty("c.npy"), "--out", f.root / "c"], "is empty"),
    "calibration NaN": (lambda f: ["compile", f.tiny, "--runtime", "openvino", "--precision", "int8",
                                   "--calibration", f.eval_npz("cn.npz", fill=np.nan), "--out", f.root / "c"], "NaN"),
    "calibration wrong shape": (lambda f: ["compile", f.tiny, "--runtime", "onnxruntime", "--precision", "int8",
                                           "--calibration", f.eval_npz("cs.npz", size=4), "--out", f.root / "c"],
                                "samples are 1x4x4"),
    "bench absurd batch": (lambda f: ["bench", f.tiny, "--batch", "1000000000"], "--batch 1000000000"),
    "check absurd input size": (lambda f: ["check", f.tiny, "--target", "host-cpu", "--input-size", "99999,99999"],
                                "--input-size"),
    "check absurd metadata size": (lambda f: ["check", f.with_metadata("m.onnx", input_size=[10**6, 10**6]),
                                              "--target", "host-cpu"], "metadata 'preprocessing'"),
    "check NaN metadata mean": (lambda f: ["check", f.with_metadata("m.onnx", mean=[float("nan")]),
                                           "--target", "host-cpu"], "metadata 'preprocessing'"),
    "check latency inf": (lambda f: ["check", f.tiny, "--target", "host-cpu", "--latency-ms", "inf"], "finite"),
    "check mean nan": (lambda f: ["check", f.tiny, "--target", "host-cpu", "--mean", "nan"], "--mean"),
    "check std 0": (lambda f: ["check", f.tiny, "--target", "host-cpu", "--std", "0"], "--std"),
    "check baseline nested JSON": (lambda f: ["check", f.tiny, "--target", "host-cpu", "--baseline",
                                              f.text("b.json", "[" * 100_000)], "nested too deeply"),
    "check --json under /proc": (lambda f: ["check", f.tiny, "--target", "host-cpu", "--json", "/proc/edgekd/r.json"],
                                 "--json '/proc/edgekd/r.json'"),
    "bench --logits under /proc": (lambda f: ["bench", f.tiny, "--eval", f.eval_npz("ok.npz"), "--logits",
                                              "/proc/edgekd/l.npy"], "--logits '/proc/edgekd/l.npy'"),
    "bench custom-domain op": (lambda f: ["bench", f.custom_op()], "custom op 'com.evil:Evil'"),
    # budgets: a NaN or infinite limit passes every comparison the wrong way
    "build min-speedup inf": (lambda f: _build(f, "--min-speedup", "inf"), "budgets.min_speedup"),
    "build latency nan": (lambda f: _build(f, "--latency-ms", "nan"), "budgets.latency_ms"),
    "build mean nan": (lambda f: _build(f, "--mean", "nan"), "preprocess.mean"),
    "build std 0": (lambda f: _build(f, "--std", "0"), "preprocess.std"),
    "build absurd input size": (lambda f: _build(f, "--input-size", "99999,8"), "preprocess.input_size"),
    "config alias bomb": (lambda f: _build(f, "--config", f.text("c.yaml", ALIAS_BOMB)), "alias bomb"),
    "config recursive alias": (lambda f: _build(f, "--config", f.text("c.yaml", "distill:\n  assistant_arch: "
                                                                      "&a {x: *a}\n")), "recursive"),
    "target absurd batch": (lambda f: _build(f, "--target", f.text("t.yaml", "name: t\ndescription: t\nprofile: "
                                                                   "host\nruntime: onnxruntime\nprecision: fp32\n"
                                                                   "batch_size: 1000000000\nbudgets: {}\n")),
                            "batch_size"),
    # teachers whose outputs are not logits, or need a plugin
    "teacher custom-domain op": (lambda f: _teacher(f, f.custom_op()), "custom op 'com.evil:Evil'"),
    "teacher rank-4 output": (lambda f: _teacher(f, f.feature_map_teacher()), "has rank 4"),
    "teacher TorchScript feature map": (lambda f: _teacher(f, f.scripted_features()), "gives outputs of shape"),
    # ImageFolder data
    "data FIFO named png": (lambda f: _data(f, f.fifo_images("fifo")), "class folder 'c' holds no images"),
    "data decompression bomb": (lambda f: _data(f, f.bomb_images("bomb")), "bomb.png"),
    # report.json given to edgekd report
    "report nested JSON": (lambda f: ["report", f.text("report.json", "[" * 100_000)], "nested too deeply"),
    "report NaN latency": (lambda f: ["report", f.report(value=float("nan"))], "not a finite number"),
    "report infinite limit": (lambda f: ["report", f.report(limit=float("inf"))], "not a finite number"),
    "report a list": (lambda f: ["report", f.text("report.json", "[1]")], "not an edgekd report"),
    # run folders
    "out holds another run": (lambda f: ["build", "--out", f.earlier_run()], "holds an earlier run"),
    "out under a file": (lambda f: ["build", "--out", f.text("file", "x") / "run"], "is a file"),
}


ALIAS_BOMB = "distill:\n  assistant_arch:\n    a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"    {b}: &{b} [{', '.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True))


def _zip(path: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"not a program")
    return path


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_is_one_line_exit_2(name, tmp_path, tiny_onnx, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where an injected `touch SENTINEL` would land
    files = Files(tmp_path / "in", tiny_onnx)
    files.root.mkdir()
    make, expected = CASES[name]
    argv = make(files)
    before = _tree(files.root)
    r = cli(*argv)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in r.output + r.stderr, f"{name}: traceback\n{r.stderr}"
    assert r.exit_code == 2, f"{name}: exit {r.exit_code}\n{r.output}{r.stderr}"
    assert len(lines) == 1, f"{name}: {len(lines)} lines\n{r.stderr}"
    assert expected in r.stderr.replace("\n", ""), f"{name}: {r.stderr}"
    assert len(r.stderr) < 600, f"{name}: a {len(r.stderr)}-character line"
    assert not list(tmp_path.rglob(SENTINEL + "*")), f"{name}: injected command ran"
    assert _tree(files.root) == before, f"{name}: inputs changed"  # nothing overwritten or deleted


def _tree(root: Path) -> dict:
    return {str(p): p.stat().st_size for p in root.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- properties
FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(st.text(max_size=60) | st.builds(lambda u, h, p: f"ssh://{u}@{h}:{p}", st.text(max_size=12),
                                         st.text(max_size=12), st.text(max_size=6)))
def test_remote_address_parses_or_is_refused(url):
    from edgekd.remote import parse_destination

    try:
        user, host, port = parse_destination(url)
    except InputError as e:
        assert "\n" not in str(e).strip() or "\n" in url
        return
    assert not host.startswith("-") and not (user or "").startswith("-") and 1 <= port <= 65535
    assert not any(c in (user or "") + host for c in " \t\n;$`'\"\\|&<>(){}")


@FAST
@given(st.from_regex(r"ssh://([a-z_][a-z0-9_.-]{0,8}@)?[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(:[1-9][0-9]{0,3})?",
                     fullmatch=True))
def test_valid_remote_addresses_parse(url):
    from edgekd.remote import parse_destination

    user, host, port = parse_destination(url)
    assert host in url and (user is None or url.startswith(f"ssh://{user}@"))


arrays = hnp.arrays(dtype=st.sampled_from([np.uint8, np.float32, np.float64, np.int64, np.int8, np.bool_]),
                    shape=hnp.array_shapes(min_dims=0, max_dims=4, max_side=6),
                    elements=None)


@FAST
@given(x=arrays, y=arrays, with_classes=st.booleans())
def test_npz_loader_loads_or_refuses(tmp_path, x, y, with_classes):
    from edgekd.data.loaders import load_npz

    path = tmp_path / "d.npz"
    extra = {"classes": np.array(["a", "b"])} if with_classes else {}
    np.savez(path, x=x, y=y, **extra)
    try:
        raw = load_npz(path)
    except InputError as e:
        assert str(e).startswith(f"--data '{path}'") and "\n" not in str(e)
        return
    assert raw.x.ndim == 4 and len(raw.x) == len(raw.y) and np.isfinite(raw.x.astype(np.float64)).all()


yaml_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=3), max_leaves=8)
FIELDS = ["target", "teacher", "data", "preprocess", "budgets", "search", "distill", "seed", "device", "remote"]


@FAST
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
       doc=st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), yaml_values, max_size=4))
def test_yaml_config_and_target_load_or_refuse(tmp_path, text, doc):
    import yaml

    from edgekd.config import load_build_config, load_target

    for body in (text, yaml.safe_dump(doc)):
        path = tmp_path / "c.yaml"
        path.write_text(body, encoding="utf-8", errors="surrogateescape")
        for load in (lambda p: load_build_config(p, {}, []), lambda p: load_target(str(p))):
            try:
                load(path)
            except InputError as e:
                assert "\n" not in str(e), str(e)


def test_teacher_tensor_files_never_unpickle(tmp_path):
    """A pickle that would run code (os.system) is refused without --trust-pickle and runs nothing."""
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / SENTINEL}",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump(Evil(), f)
    from edgekd.config import TeacherSpec
    from edgekd.models.teacher import load_teacher

    with pytest.raises(InputError):
        load_teacher(TeacherSpec(source=str(path)))
    assert not (tmp_path / SENTINEL).exists()


# ----------------------------------------------------------------------------- verdicts from figures
@pytest.mark.parametrize(("budget", "verdict", "code"), [
    ({"value": 999.0, "interval": [990.0, 1010.0]}, "fail", 1),  # edited to 999 ms, still marked passed
    ({"value": 5.2, "interval": [4.8, 5.6]}, "inconclusive", 3),  # straddles the 5 ms limit
    ({"value": 5.2, "interval": [4.8, 5.6], "detail": "the interval straddles the limit; counted as pass by "
      "--inconclusive pass"}, "pass", 0),  # the policy the gate applied is kept
    ({"value": 1.0, "source": "predicted", "detail": "predicted, and --require-measured counts only measured "
      "values"}, "fail", 1),
    ({"value": 1.0, "interval": [0.9, 1.1]}, "pass", 0),  # figures that agree: unchanged, no note
])
def test_report_recomputes_each_verdict_from_its_figures(tmp_path, budget, verdict, code):
    """`edgekd report` does not trust the stored verdict (`passed: true`, `verdict: pass`): the exit code and
    the redrawn views follow value, limit and interval by the gate's rule, and say where they differ."""
    import json
    from xml.etree import ElementTree as ET

    f = Files(tmp_path, None)
    report = f.report(**budget)
    r = cli("report", report)
    assert r.exit_code == code, r.output + r.stderr
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert suite.find("testcase/properties/property[@name='verdict']").get("value") == verdict
    changed = json.loads(report.read_text())["budgets"][0]["verdict"] != verdict
    assert ("the verdict is recomputed" in " ".join(r.output.split())) == changed
    assert ("the verdict is recomputed" in (tmp_path / "report.md").read_text()) == changed


def test_text_data_files_load_or_refuse(tmp_path):
    """Text data for hf: teachers: bytes that are not UTF-8, a field past csv's limit, a label of 1e400 (infinite)
    or a JSON line nested past recursion are each one line naming the file."""
    from edgekd.text.data import load_text_data

    cases = {"latin1.csv": (b"text,label\n" + "caf\xe9 au lait,0\n".encode("latin-1") * 20, "not UTF-8"),
             "latin1.jsonl": ('{"text": "caf\xe9", "label": 0}\n'.encode("latin-1") * 20, "not UTF-8"),
             "huge.csv": (b'text,label\n"' + b"a" * 200_000 + b'",0\n', "not a readable CSV"),
             "inf.csv": (b"text,label\n" + b"some text,1e400\n" * 20, "label '1e400'"),
             "nested.jsonl": (b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", "nests too deeply")}
    for name, (data, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(InputError, match=re.escape(expected)) as e:
            load_text_data(str(path), None, "classification", ["neg", "pos"], 16, 0, "t")
        assert str(e.value).startswith(f"--data '{path}'") and "\n" not in str(e.value), name
