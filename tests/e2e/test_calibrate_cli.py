"""`edgekd calibrate` as a command: what it refuses, and a calibration end to end."""

from __future__ import annotations

import onnx
import pytest
from conftest import cli

from edgekd.config import load_profile
from edgekd.cost.calibration import (
    load_calibration,
)
from edgekd.cost.roofline import predict_onnx


@pytest.mark.parametrize("args, message", [
    (["--profile", "host", "--runtime", "onnxruntime", "--remote", "ssh://pi@device"],
     "--remote ssh://pi@device: profile 'host' is the machine edgekd runs on"),
    (["--profile", "raspberry-pi-5", "--runtime", "onnxruntime", "--remote", "http://pi"], "expected ssh://"),
    (["--profile", "jetson-orin-nano", "--runtime", "tensorrt"], "is not a jetson-orin-nano"),
    (["--profile", "raspberry-pi-5", "--runtime", "openvino"], "--runtime openvino: profile 'raspberry-pi-5' runs"),
    (["--profile", "nope", "--runtime", "onnxruntime"], "unknown profile 'nope'"),
])
def test_calibrate_refuses_what_it_cannot_time(args, message):
    result = cli("calibrate", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_calibrate_end_to_end_then_predict_with_it(tmp_path, monkeypatch):
    """A tiny real calibration on onnxruntime; predictions then use it, with its band and its label."""
    monkeypatch.setenv("EDGEKD_CALIBRATION_DIR", str(tmp_path))
    result = cli("calibrate", "--profile", "host", "--runtime", "onnxruntime", "--kernels", "12", "--rounds", "1",
                 "--networks", "4", "--refine", "0", "--memory-networks", "2")
    assert result.exit_code == 0, result.output + result.stderr
    cal = load_calibration(tmp_path / "host-onnxruntime.json")
    assert cal.network.networks == 4 and cal.versions["onnxruntime"] and cal.samples["kernel_times_us"]
    net = cal.samples["networks"][0]
    from edgekd.cost.samples import exported_network, network_cache

    model = onnx.load(str(exported_network(net["arch"], tuple(net["input_shape"]), network_cache())))
    lat, mem = predict_onnx(model, load_profile("host"), "fp32", runtime="onnxruntime")
    assert lat.source == "predicted" and lat.detail.startswith("calibrated") and "host-onnxruntime.json" in lat.detail
    lo, hi = cal.network.ratio_interval
    assert lat.interval == pytest.approx((lat.value * lo, lat.value * hi))
    assert net["measured_ms"] / 3 < lat.value < net["measured_ms"] * 3
    assert mem.detail.startswith("calibrated") and mem.value > 0
