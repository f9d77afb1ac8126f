import json

import numpy as np
import onnx
import pytest

from edgekd.config import load_profile
from edgekd.cost.calibration import (
    calibration_dir,
    find_calibration,
    host_identity,
    load_calibration,
    save_calibration,
)
from edgekd.cost.forest import export_forest, fit_forest, predict_forest
from edgekd.cost.ops import make_kernel
from edgekd.cost.roofline import predict_onnx
from edgekd.errors import InputError

COMMITTED = sorted(calibration_dir().glob("*.json"))


def test_stored_forest_predicts_what_sklearn_predicts():
    rng = np.random.default_rng(0)
    x = rng.random((200, 5))
    y = np.sin(3 * x[:, 0]) + x[:, 1] ** 2
    model = fit_forest(x, y, trees=10)
    stored = json.loads(json.dumps(export_forest(model)))  # through JSON, as the file is
    test = rng.random((50, 5))
    assert np.allclose(predict_forest(stored, test), model.predict(test), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ('{"schema": "other/1"}', "field 'schema' is 'other/1'"),
    ('{"schema": "edgekd.calibration/1", "profile": "host"}', "field 'runtime'"),
])
def test_broken_calibration_files_are_one_clear_line(tmp_path, text, message):
    path = tmp_path / "host-onnxruntime.json"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as e:
        load_calibration(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_committed_calibrations_record_runtime_versions_and_host(path):
    cal = load_calibration(path)
    assert path.name == f"{cal.profile}-{cal.runtime}.json"
    assert cal.versions[cal.runtime] and cal.versions["edgekd"] and cal.host["cpu"] and cal.host["key"]
    assert cal.network.networks >= 100 and set(cal.kernels) >= {"conv", "dwconv"}
    lo, hi = cal.network.ratio_interval
    assert lo < 1 < hi


def test_host_calibrations_for_both_runtimes_are_committed():
    assert {p.name for p in COMMITTED} >= {"host-onnxruntime.json", "host-openvino.json"}


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_a_calibration_from_another_machine_is_not_used(tmp_path, monkeypatch, tiny_onnx, path):
    cal = load_calibration(path)
    moved = cal.model_copy(update={"host": {**cal.host, "cpu": "Some Other CPU", "key": "0" * 16}})
    save_calibration(moved, tmp_path / path.name)
    monkeypatch.setenv("EDGEKD_CALIBRATION_DIR", str(tmp_path))
    profile = load_profile(cal.profile)
    found, why = find_calibration(profile, cal.runtime, "fp32")
    assert found is None and "another machine (Some Other CPU" in why
    lat, _ = predict_onnx(onnx.load(str(tiny_onnx)), profile, "fp32", runtime=cal.runtime)
    assert "roofline" in lat.detail and "uncalibrated" in lat.detail and "another machine" in lat.detail


def test_calibration_applies_only_to_the_precisions_it_timed(monkeypatch, tmp_path):
    from edgekd.cost.calibration import Calibration

    data = {"schema": "edgekd.calibration/1", "profile": "host", "runtime": "onnxruntime", "precisions": ["fp32"],
            "threads": load_profile("host").threads, "created": "2026-01-01T00:00:00+00:00",
            "versions": {"onnxruntime": "0"}, "host": host_identity(),
            "roofline": {"peak_gops": 10, "bandwidth_gbs": 10, "overhead_us": 1}, "call_overhead_us": 1.0,
            "vector_block": 16,
            "kernels": {}, "network": {"coef": {}, "intercept_us": 1.0, "ratio_interval": [0.9, 1.1],
                                       "within_10pct": 1.0, "networks": 1},
            "memory": {"weights": 1, "activations": 1, "constant_mb": 1, "ratio_interval": [0.9, 1.1],
                       "networks": 1}}
    save_calibration(Calibration.model_validate(data), tmp_path / "host-onnxruntime.json")
    monkeypatch.setenv("EDGEKD_CALIBRATION_DIR", str(tmp_path))
    host = load_profile("host")
    assert find_calibration(host, "onnxruntime", "fp32")[0] is not None
    found, why = find_calibration(host, "onnxruntime", "int8")
    assert found is None and "covers fp32, not int8" in why


def test_kernel_timer_feeds_residual_kernels_on_openvino():
    from edgekd.cost.calibrate import KernelTimer
    from edgekd.runtimes import create_backend

    timer = KernelTimer(create_backend("openvino"), 1, "x86_64")
    try:
        small = timer(make_kernel("conv", 8, 8, 4, 1, 1, "", residual=True))[0]
        big = timer(make_kernel("conv", 64, 64, 32, 3, 1, "Relu", residual=True))[0]
    finally:
        timer.close()
    assert 0 < small < big
