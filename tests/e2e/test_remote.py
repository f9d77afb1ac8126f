"""The remote runner against a real OpenSSH server that this module starts on 127.0.0.1 (host and user keys
made in a temporary folder); the "device" runs this checkout's edgekd with the real runtimes."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, cli

from edgekd.errors import InputError, StageFailed
from edgekd.remote import RemoteSpec, parse_remote, remote_bench, run_remote
from edgekd.runtimes import artifact_from_path, create_backend, evaluate_accuracy

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory, xdg_cache):
    if not Path(SSHD).is_file() or not shutil.which("ssh-keygen"):
        why = "OpenSSH server not installed (apt-get install openssh-server; .ci/run does)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why)  # in CI the remote tests must run: a skip there would hide that they did not
        pytest.skip(why)
    d = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    shutil.copy(d / "user_key.pub", d / "authorized_keys")
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation folder sshd insists on as root
    with open(d / "sshd.log", "w") as log:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=log)
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {(d / 'host_key.pub').read_text()}")
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited: {(d / 'sshd.log').read_text()}")
            time.sleep(0.1)
    spec = RemoteSpec(host="127.0.0.1", user=getpass.getuser(), port=port, identity=d / "user_key",
                      known_hosts=d / "known_hosts", python=sys.executable,
                      env={"PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(xdg_cache)})
    yield spec
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture()
def remote_env(sshd, monkeypatch):
    """The CLI reads per-machine ssh settings from the environment."""
    monkeypatch.setenv("EDGEKD_SSH_KEY", str(sshd.identity))
    monkeypatch.setenv("EDGEKD_SSH_KNOWN_HOSTS", str(sshd.known_hosts))
    monkeypatch.setenv("EDGEKD_REMOTE_PYTHON", sshd.python)
    monkeypatch.setenv("EDGEKD_REMOTE_ENV", " ".join(f"{k}={v}" for k, v in sshd.env.items()))
    return sshd.url


def test_parse_remote_urls_and_bad_ones(monkeypatch):
    monkeypatch.setenv("EDGEKD_REMOTE_ENV", "A=1 B='two words'")
    spec = parse_remote("ssh://nvidia@orin.local:2222")
    assert (spec.user, spec.host, spec.port, spec.python) == ("nvidia", "orin.local", 2222, "python3")
    assert spec.env == {"A": "1", "B": "two words"} and parse_remote("ssh://pi").port == 22
    for bad in ("http://host", "ssh://", "ssh://u:secret@host", "ssh://host:99999", "ssh://host/path"):
        with pytest.raises(InputError, match="--remote"):
            parse_remote(bad)


def test_copies_runs_fetches_and_records_the_device(sshd, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("hello device")
    script = 'cat in.txt > out.txt; pwd > where.txt; echo \'{"ok": 1}\''
    r = run_remote(sshd, ["sh", "-c", script], files=[src], fetch=["out.txt", "where.txt"], into=tmp_path / "back",
                   edgekd=False)
    assert r.returncode == 0 and r.result == {"ok": 1}
    assert (tmp_path / "back" / "out.txt").read_text() == "hello device"
    workdir = Path((tmp_path / "back" / "where.txt").read_text().strip())
    assert workdir.name.startswith("edgekd-") and not workdir.exists()  # the remote folder is removed
    for when in ("before", "after"):
        state = r.device_state[when]
        assert state["machine"] and "cpu_governor" in state and "temperatures_c" in state


def test_device_failure_carries_its_stderr(sshd):
    cmd = ["sh", "-c", "echo 'no such model here' >&2; exit 3"]
    with pytest.raises(StageFailed, match="exited 3: no such model here"):
        run_remote(sshd, cmd, edgekd=False)
    assert run_remote(sshd, cmd, edgekd=False, check=False).returncode == 3
    with pytest.raises(InputError, match="on the device|exited 2"):  # edgekd's bad-input exit stays exit 2
        run_remote(sshd, ["bench", "missing.onnx"])


def test_unreachable_device_is_one_clear_line(sshd):
    closed = RemoteSpec(host="127.0.0.1", port=_free_port(), identity=sshd.identity, known_hosts=sshd.known_hosts,
                        connect_timeout_s=3)
    with pytest.raises(InputError, match="ssh could not connect .*check host, port, user and key"):
        run_remote(closed, ["true"], edgekd=False)


def _artifact(runtime, tiny_onnx, tmp_path):
    if runtime == "onnxruntime":
        return artifact_from_path(tiny_onnx, runtime)
    from edgekd.compile import compile_model

    return compile_model(tiny_onnx, tmp_path / "ir", "openvino", "fp16")  # .xml + .bin + record


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_remote_bench_measures_and_evaluates_on_the_device(runtime, sshd, tiny_onnx, tmp_path):
    artifact = _artifact(runtime, tiny_onnx, tmp_path)
    x = np.random.default_rng(0).standard_normal((40, 1, 8, 8)).astype(np.float32)
    session = create_backend(runtime).load(artifact, 1)
    y = np.arange(40) % 10
    local_acc, local_logits = evaluate_accuracy(session, x, y)
    np.savez(tmp_path / "heldout.npz", x=x, y=y)
    res = remote_bench(sshd, artifact.path, runtime, threads=1, eval_npz=tmp_path / "heldout.npz", logits=True,
                       into=tmp_path / "back")
    assert res["artifact"]["runtime"] == runtime and res["latency_source"] == "measured"
    lo, hi = res["latency_interval"]
    assert 0 < lo <= res["latency_ms"] <= hi and res["memory_mb"] > 0
    assert res["accuracy"] == local_acc and res["eval_samples"] == 40
    assert np.allclose(np.load(res["logits_path"]), local_logits, atol=1e-4)
    assert res["device_state"]["before"]["machine"] and res["session"]["threads" if runtime == "onnxruntime"
                                                                       else "INFERENCE_NUM_THREADS"] in (1, "1")


def test_bench_command_over_remote(remote_env, tiny_onnx, tmp_path):
    artifact = _artifact("openvino", tiny_onnx, tmp_path)
    result = cli("bench", artifact.path, "--remote", remote_env, "--json", "--threads", "1", "--against", tiny_onnx)
    assert result.exit_code == 0, result.stderr
    res = json.loads(result.stdout)
    assert res["artifact"]["precision"] == "fp16" and res["session"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert "before" in res["device_state"]
    pair = res["speedup_over"]  # the fp16 IR and its ONNX timed as a pair on the device
    assert pair["interval"][0] <= pair["value"] <= pair["interval"][1] and pair["rounds"] >= 12
    table = cli("bench", tiny_onnx, "--runtime", "onnxruntime", "--remote", remote_env, "--threads", "1")
    assert table.exit_code == 0 and "latency p50" in table.stdout


def test_compile_command_over_remote_brings_the_artifact_back(remote_env, tiny_onnx, tmp_path):
    out = tmp_path / "built"
    result = cli("compile", tiny_onnx, "--runtime", "openvino", "--precision", "fp16", "--out", out, "--json",
                 "--remote", remote_env)
    assert result.exit_code == 0, result.stderr
    artifact = artifact_from_path(out / "tiny-fp16.xml")  # through the build record written beside it
    assert artifact.settings["remote"].endswith(str(remote_env.rsplit(":", 1)[1]))
    assert (out / "tiny-fp16.bin").is_file() and artifact.settings["built_on"]["machine"]
    x = np.zeros((2, 1, 8, 8), np.float32)
    assert create_backend("openvino").load(artifact, 1).run(x).shape == (2, 10)


@pytest.mark.slow
def test_build_measures_on_the_remote_device(remote_env, tmp_path):
    out = tmp_path / "ov-remote"
    result = cli("build", "--target", "openvino", "--out", out, "--epochs", "1", "--remote", remote_env,
                 "--max-accuracy-drop", "100")
    report = json.loads((out / "report.json").read_text())
    # one epoch: the verdict is not this test's question; the exit code must be the one the budgets give
    # (the speed-up timed as a pair on the device has an interval, which may straddle its limit: exit 3)
    open_ = [b for b in report["budgets"] if b["verdict"] != "pass"]
    expected = 0 if report["passed"] else 3 if open_ and all(b["verdict"] == "inconclusive" for b in open_) else 1
    assert result.exit_code == expected, result.stderr
    guard = report["student"]["compile"]["precision_guard"]
    for c in guard["candidates"].values():  # evaluated and timed on the device, with its state recorded
        assert c["latency_source"] == "measured" and c["device_state"]["before"]["machine"]
    student = report["student"]
    assert student["remote"] == remote_env and student["evaluated_with"].endswith(f"on {remote_env}")
    assert abs(student["accuracy"] - guard["candidates"][guard["shipped"]]["accuracy"]) < 1e-9
    assert {b["source"] for b in report["budgets"]} == {"measured"}
    assert report["teacher"]["remote"] == remote_env and report["teacher"]["latency_ms"] > 0
    speedup = next(b for b in report["budgets"] if b["name"] == "speedup")  # timed as a pair on the device
    assert speedup["source"] == "measured" and speedup["interval"][0] <= speedup["value"] <= speedup["interval"][1]


@pytest.mark.slow
def test_calibrate_over_remote_brings_the_device_calibration_back(remote_env, tmp_path, monkeypatch):
    """A device profile the other side does not know (it travels as a file), calibrated there, used here."""
    import yaml

    from edgekd.config import load_profile
    from edgekd.cost.calibration import load_calibration
    from edgekd.cost.ops import make_kernel
    from edgekd.cost.roofline import predict_kernels

    spec = yaml.safe_load((REPO / "profiles" / "intel-x86-cpu.yaml").read_text())
    spec.update(name="edge-x86-test", threads=1, runtimes=["onnxruntime"])
    profile_path = tmp_path / "edge-x86-test.yaml"
    profile_path.write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("EDGEKD_CALIBRATION_DIR", str(tmp_path / "calibration"))
    result = cli("calibrate", "--profile", profile_path, "--runtime", "onnxruntime", "--remote", remote_env,
                 "--kernels", "12", "--rounds", "0", "--networks", "4", "--refine", "0", "--memory-networks", "2")
    assert result.exit_code == 0, result.stdout + result.stderr
    cal = load_calibration(tmp_path / "calibration" / "edge-x86-test-onnxruntime.json")
    assert cal.profile == "edge-x86-test" and cal.threads == 1 and cal.network.networks == 4
    assert cal.versions["onnxruntime"] and cal.host["key"]  # the device's versions and identity
    kernels = [make_kernel("conv", 16, 32, 16, 3, 1, "Relu")]
    latency, memory = predict_kernels(kernels, 16 * 16 * 48, load_profile(str(profile_path)), "fp32", "onnxruntime")
    assert latency.detail.startswith("calibrated") and "edge-x86-test-onnxruntime.json" in latency.detail
    assert memory.detail.startswith("calibrated")


def test_check_gates_on_the_remote_device(remote_env, tiny_onnx, tmp_path):
    """`edgekd check --remote`: accuracy, latency and memory all measured by the device's bench; the
    --reference is evaluated here on the same held-out split; a budget the device misses fails (exit 1)."""
    common = (tiny_onnx, "--target", "host-cpu", "--remote", remote_env, "--data", "digits",
              "--reference", tiny_onnx, "--max-accuracy-drop", "0")
    passing = cli("check", *common, "--latency-ms", "10000", "--memory-mb", "10000", "--json", tmp_path / "ok.json")
    assert passing.exit_code == 0, passing.stdout + passing.stderr
    report = json.loads((tmp_path / "ok.json").read_text())
    student = report["student"]
    assert {b["source"] for b in report["budgets"]} == {"measured"}
    assert {b["name"] for b in report["budgets"]} == {"latency_ms", "memory_mb", "accuracy_drop"}
    assert student["evaluated_with"].startswith(f"onnxruntime fp32 on {remote_env}")
    assert student["accuracy"] == report["teacher"]["accuracy"]  # same model here and there: zero drop
    assert student["device_state"]["before"]["machine"] and student["memory_mb"] > 0
    audits = {s["name"]: s["status"] for s in report["stages"]}
    assert audits["outputs-match"] == "skipped" and audits["latency"] == "passed"
    failing = cli("check", *common, "--latency-ms", str(student["latency_interval"][0] / 10))
    assert failing.exit_code == 1, failing.stdout + failing.stderr


def test_ab_check_times_both_models_interleaved_on_the_device(remote_env, tiny_onnx, tmp_path):
    """`edgekd check MODEL --baseline OLD.onnx --remote`: one call, the device's own gate times OLD and MODEL
    interleaved there; the unchanged model (a copy of OLD) passes a 5% regression limit."""
    old = tmp_path / "old.onnx"
    old.write_bytes(tiny_onnx.read_bytes())
    r = cli("check", tiny_onnx, "--target", "host-cpu", "--remote", remote_env, "--baseline", old,
            "--max-regression", "5%", "--max-seconds", "120", "--json", tmp_path / "ab.json")
    report = json.loads((tmp_path / "ab.json").read_text())
    reg = next(b for b in report["budgets"] if b["name"] == "latency_regression")
    assert r.exit_code == 0 and reg["verdict"] == "pass", r.stdout + r.stderr
    assert reg["detail"].endswith(f"on {remote_env}") and "timed interleaved" in reg["detail"]
    assert report["baseline_mode"] == "a/b" and f"interleaved on {remote_env}" in report["notes"][0]
    assert report["student"]["device_state"]["before"]["machine"]
    assert report["student"]["latency_timing"]["method"] == "interleaved blocks"
    stages = {s["name"]: s for s in report["stages"]}
    assert stages["latency"]["reason"].startswith(f"on {remote_env}: ") and stages["remote"]["status"] == "passed"
