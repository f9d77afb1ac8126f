"""Property tests of the loaders that test_hostile_inputs.py's four properties (remote address, --data .npz,
config and target YAML) leave out: ImageFolder trees, --eval / --calibration arrays, profile YAML, baseline
and report JSON, hf: folders and text data. Each loader either returns sound data or raises InputError (exit
2) with one line; any other exception is a traceback for the user. Bounded to seconds each: few examples,
and a deadline per example.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from rich.console import Console

from edgekd.config import load_profile
from edgekd.data.loaders import load_folder
from edgekd.errors import InputError
from edgekd.gate.inputs import load_baseline
from edgekd.report import print_summary
from edgekd.rerender import rerender
from edgekd.text.data import load_text_data
from edgekd.text.hf import _check_pooling, check_folder, read_config, resolve_task
from edgekd.validate import load_input_arrays

# The loaders are imported here, not inside the tests: a first example that pays for importing scikit-learn or
# plotly would count against its deadline. 20 s per example leaves room for a loaded CI runner.
BOUNDED = settings(max_examples=25, deadline=20_000,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _fresh(tmp_path: Path, name: str) -> Path:
    """One folder per example (the function-scoped tmp_path is shared by all of them)."""
    path = tmp_path / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _refused_in_one_line(e: InputError) -> None:
    assert str(e).strip() and "\n" not in str(e).strip(), str(e)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4), max_leaves=10)


# ----------------------------------------------------------------------------- ImageFolder trees
def _png(size, mode) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, size).save(buf, "PNG")
    return buf.getvalue()


image_files = st.one_of(
    st.builds(_png, st.tuples(st.integers(1, 12), st.integers(1, 12)), st.sampled_from(["L", "RGB", "RGBA", "1",
                                                                                        "P", "I;16"])),
    st.binary(max_size=64))
class_names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1,
                      max_size=8).filter(lambda n: n not in (".", ".."))


@BOUNDED
@given(tree=st.dictionaries(class_names, st.lists(st.tuples(st.sampled_from([".png", ".jpg", ".txt", ".PNG"]),
                                                            image_files), max_size=3), max_size=3),
       size=st.none() | st.tuples(st.integers(1, 16), st.integers(1, 16)))
def test_image_folder_loads_or_refuses(tmp_path, tree, size):
    root = _fresh(tmp_path, "imgs")
    for name, files in tree.items():
        (root / name).mkdir(exist_ok=True)
        for i, (suffix, data) in enumerate(files):
            (root / name / f"{i}{suffix}").write_bytes(data)
    try:
        raw = load_folder(root, size)
    except InputError as e:  # may quote a generated name with a newline in it: the CLI joins it into one line
        assert str(e).startswith("--data"), str(e)
        return
    assert raw.x.ndim == 4 and raw.x.dtype == np.uint8 and len(raw.x) == len(raw.y) > 0
    assert len(raw.classes) >= 2 and set(raw.y.tolist()) <= set(range(len(raw.classes)))
    if size is not None:
        assert raw.x.shape[2:] == size


# ----------------------------------------------------------------------------- --eval / --calibration arrays
arrays = hnp.arrays(dtype=st.sampled_from([np.uint8, np.float32, np.float64, np.int64, np.bool_, np.complex64,
                                           np.dtype("U2")]),
                    shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4))


@BOUNDED
@given(x=arrays, y=arrays, labels=st.booleans(), form=st.sampled_from(["npz", "npy", "bytes"]),
       junk=st.binary(max_size=40))
def test_eval_and_calibration_arrays_load_or_refuse(tmp_path, x, y, labels, form, junk):
    path = tmp_path / ("a.npz" if form != "npy" else "a.npy")
    if form == "npz":
        np.savez(path, x=x, y=y)
    elif form == "npy":
        np.save(path, x)
    else:
        path.write_bytes(junk)
    option = "--eval" if labels else "--calibration"
    try:
        xa, ya = load_input_arrays(path, option, labels=labels)
    except InputError as e:
        _refused_in_one_line(e)
        assert str(e).startswith(f"{option} '{path}'")
        return
    assert xa.dtype == np.float32 and xa.ndim == 4 and len(xa) > 0 and np.isfinite(xa).all()
    if labels:
        assert ya.dtype == np.int64 and ya.shape == (len(xa),) and (ya >= 0).all()


# ----------------------------------------------------------------------------- profile YAML
PROFILE_FIELDS = ["name", "description", "arch", "device", "runtimes", "threads", "cores", "ram_mb",
                  "memory_bandwidth_gbs", "peak_gops", "dispatch_overhead_us", "detect", "measurable_on"]


@BOUNDED
@given(doc=st.dictionaries(st.sampled_from(PROFILE_FIELDS), json_values, max_size=6),
       text=st.text(max_size=120))
def test_profile_yaml_loads_or_refuses(tmp_path, doc, text):
    for body in (yaml.safe_dump(doc), text, "a: &a [*a]\n"):
        path = tmp_path / "p.yaml"
        path.write_text(body, encoding="utf-8", errors="surrogateescape")
        try:
            profile = load_profile(str(path))
        except InputError as e:
            _refused_in_one_line(e)
            continue
        assert profile.cores.value > 0 and set(profile.peak_gops) == {"fp32", "fp16", "int8"}


# ----------------------------------------------------------------------------- baseline and report JSON
def _valid_report() -> dict:
    return {"schema": "edgekd.report/1", "target": {"name": "host-cpu", "profile": "host"},
            "teacher": {"accuracy": 0.9, "latency_ms": 4.0}, "environment": {"host": "h"},
            "student": {"latency_ms": 1.0, "latency_source": "measured", "memory_mb": 9.0, "memory_source": "measured",
                        "accuracy": 0.85},
            "budgets": [{"name": "latency_ms", "limit": 5.0, "value": 1.0, "source": "measured", "passed": True,
                         "interval": [0.9, 1.1], "verdict": "pass"}],
            "stages": [{"name": "check", "status": "passed", "seconds": 1.0}], "seed": 0}


def _mutate(report: dict, path: list, value):
    """`report` with the value at `path` (keys, then indices, as far as they reach) replaced by `value`."""
    node = report
    for key in path[:-1]:
        if isinstance(node, dict) and node:
            node = node[sorted(node)[key % len(node)]] if isinstance(key, int) else node.setdefault(key, {})
        elif isinstance(node, list) and node:
            node = node[key % len(node)] if isinstance(key, int) else node[0]
    last = path[-1] if path else "schema"
    if isinstance(node, dict):
        node[last if isinstance(last, str) else sorted(node)[last % len(node)] if node else "x"] = value
    elif isinstance(node, list) and node:
        node[last % len(node) if isinstance(last, int) else 0] = value
    return report


reports = st.one_of(
    json_values,
    st.builds(_mutate, st.builds(_valid_report), st.lists(st.integers(0, 9) | st.sampled_from(
        ["budgets", "student", "value", "limit", "interval", "passed", "verdict", "detail", "stages", "name"]),
        min_size=1, max_size=4), json_values))


@BOUNDED
@given(report=reports, raw=st.sampled_from(["", "[" * 5000, "NaN", "{\"schema\": NaN}"]))
def test_baseline_and_report_json_load_or_refuse(tmp_path, report, raw):
    folder = _fresh(tmp_path, "run")
    for text in (json.dumps(report), raw):
        path = folder / "report.json"
        path.write_text(text)
        try:
            baseline = load_baseline(path)
            assert baseline.latency_ms is not None or baseline.memory_mb is not None
        except InputError as e:
            _refused_in_one_line(e)
        try:
            redrawn = rerender(path)
        except InputError as e:
            _refused_in_one_line(e)
            continue
        assert redrawn.verdict in ("pass", "fail", "inconclusive")
        print_summary(redrawn, Console(file=io.StringIO()))  # what `edgekd report` prints of it
        assert (folder / "report.md").is_file() and (folder / "junit.xml").is_file()


# ----------------------------------------------------------------------------- hf: folders
@BOUNDED
@given(config=json_values | st.dictionaries(st.sampled_from(["model_type", "architectures", "id2label"]),
                                            st.sampled_from(["bert", "gpt2", None, 3]) | json_values, max_size=3),
       pooling=st.none() | json_values, task=st.sampled_from(["auto", "embedding", "classification"]))
def test_hf_folder_config_loads_or_refuses(tmp_path, config, pooling, task):
    """What edgekd reads of an hf: folder itself before transformers sees it: config.json, 1_Pooling."""
    folder = _fresh(tmp_path, "hf")
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"")
    (folder / "tokenizer.json").write_text("{}")
    if pooling is not None:
        (folder / "1_Pooling").mkdir()
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    try:
        checked = check_folder(f"hf:{folder}")
        cfg = read_config(checked, "--teacher")
        resolved = resolve_task(cfg, task, "--teacher")
        if resolved == "embedding":
            _check_pooling(checked, "--teacher")
    except InputError as e:
        _refused_in_one_line(e)
        return
    assert resolved in ("embedding", "classification") and isinstance(cfg, dict)


# ----------------------------------------------------------------------------- text data
@BOUNDED
@given(body=st.binary(max_size=300) | st.text(max_size=300).map(str.encode),
       rows=st.lists(st.dictionaries(st.sampled_from(["text", "label", "sentence", "x"]), json_values, max_size=3),
                     max_size=30),
       suffix=st.sampled_from([".txt", ".csv", ".jsonl"]), task=st.sampled_from(["embedding", "classification"]))
def test_text_data_loads_or_refuses(tmp_path, body, rows, suffix, task):


    path = tmp_path / f"d{suffix}"
    bodies = [body]
    if suffix == ".jsonl":
        bodies.append("\n".join(json.dumps(r) for r in rows).encode())
    elif suffix == ".csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["text", "label"])
        writer.writerows([[r.get("text", ""), r.get("label", "")] for r in rows])
        bodies.append(buf.getvalue().encode())
    for data in bodies:
        path.write_bytes(data)
        try:
            d = load_text_data(str(path), None, task, ["neg", "pos"], 16, 0, "t")
        except InputError as e:
            _refused_in_one_line(e)
            assert str(e).startswith(f"--data '{path}'")
            continue
        assert len(d.texts) >= 2 and len(d.val_idx) >= 2
        if task == "classification":
            assert d.y is not None and len(d.y) == len(d.texts) and set(d.y.tolist()) <= {0, 1}
