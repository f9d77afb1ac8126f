"""A build and a check make no network connection and no DNS query (docs/architecture.md, "No network"): both
run as a user runs them, in a fresh process under strace, with none of the switches edgekd sets inherited from
this process; any connect/send to an address that is not loopback, or to port 53 anywhere, fails the test."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, digits_like_npz

from edgekd.offline import ENVIRONMENT

# What the tracer sees of an address: inet_addr("10.0.0.1") or inet_pton(AF_INET6, "::1", ...), and its port.
ADDRESS = re.compile(r'sin6?_port=htons\((?P<port>\d+)\).*?(?:inet_addr\("|inet_pton\(AF_INET6, ")(?P<ip>[^"]+)"')
# The process's own opt-outs and CI markers (OpenVINO's telemetry stays quiet where CI=true) are not passed on:
# the child must be quiet because of edgekd, as on a user's machine.
NOT_INHERITED = {*ENVIRONMENT, "CI", "TF_BUILD", "JENKINS_URL", "NNCF_CI", "NNCF_DEV", "DO_NOT_TRACK",
                 "DISABLE_TELEMETRY"}
STRACE = [shutil.which("strace") or "strace", "-f", "-qq", "--seccomp-bpf",
          "-e", "trace=connect,sendto,sendmsg,sendmmsg"]


def _require_strace(tmp_path: Path) -> None:
    why = ""
    if shutil.which("strace") is None:
        why = "strace is not installed (apt-get install strace; .ci/run does)"
    elif subprocess.run([*STRACE, "-o", str(tmp_path / "probe"), "true"], capture_output=True).returncode:
        why = "strace cannot trace here (ptrace or seccomp refused)"
    if why:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why)  # in CI this test must run: a skip would hide that nobody looked
        pytest.skip(why)


def attempts(trace: Path) -> list[str]:
    """The traced calls that reach for the network: an IP address that is not loopback, or DNS's port 53."""
    found = []
    for line in trace.read_text().splitlines():
        m = ADDRESS.search(line)
        if m and (m["port"] == "53" or not ipaddress.ip_address(m["ip"]).is_loopback):
            found.append(line)
    return found


def _edgekd(tmp_path: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    # HOME and the cache are the test's: what a library would write there (client ids, queued events) is seen
    env |= {"PYTHONPATH": str(REPO), "HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "COLUMNS": "200"}
    trace = tmp_path / f"{name}.trace"
    run = subprocess.run([*STRACE, "-o", str(trace), sys.executable, "-m", "edgekd", *args], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert attempts(trace) == [], f"edgekd {name} reached for the network:\n" + "\n".join(attempts(trace)[:5])
    return run


def test_attempts_are_recognised(tmp_path):
    """The parser itself: the lines strace writes for a DNS query, a loopback ssh and an IPv6 connect."""
    (tmp_path / "t").write_text(
        '7 connect(8, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, 16) = 0\n'
        '7 connect(8, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("127.0.0.53")}, 16) = 0\n'
        '7 connect(9, {sa_family=AF_INET, sin_port=htons(2222), sin_addr=inet_addr("127.0.0.1")}, 16) = 0\n'
        '7 connect(9, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), '
        'inet_pton(AF_INET6, "2a00:1450::1", &sin6_addr), sin6_scope_id=0}, 28) = -1 ENETUNREACH\n'
        '7 connect(9, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT\n')
    assert [line.split('"')[1] for line in attempts(tmp_path / "t")] == ["10.255.255.53", "127.0.0.53",
                                                                          "2a00:1450::1"]


@pytest.mark.slow
def test_a_build_and_a_check_make_no_connection(tmp_path):
    _require_strace(tmp_path)
    from edgekd.models.families import create_model
    from edgekd.onnx_export import export_onnx

    (tmp_path / "home").mkdir()
    torch.manual_seed(0)
    # a teacher that small students beat, so the search picks one at once; mobile-cpu is predicted, not timed
    teacher = create_model({"family": "resnet", "widths": [32, 64, 128], "blocks": [2, 2, 2]}, 1, 10, (8, 8))
    export_onnx(teacher.eval(), (1, 8, 8), tmp_path / "teacher.onnx", {"test": True})
    digits_like_npz(tmp_path / "d.npz", n=200, classes=10)
    _edgekd(tmp_path, "build", "build", "--target", "mobile-cpu", "--teacher", "teacher.onnx", "--data", "d.npz",
            "--out", "run", "--epochs", "1", "--set", "search.max_candidates=2", "--set", "search.population=2",
            "--set", "search.spaces=[resnet]", "--min-speedup", "1", "--latency-ms", "1000", "--memory-mb", "4096",
            "--max-accuracy-drop", "100")
    # OpenVINO is what `import nncf` / `import openvino` phoned home through; the check measures through it here
    _edgekd(tmp_path, "check", "check", "run/export/student.onnx", "--target", "openvino", "--latency-ms", "1000",
            "--memory-mb", "4096", "--max-seconds", "1")
    # nor did a library leave a client id or queued events for a later upload
    assert not (tmp_path / "home" / "intel").exists()
    assert not (tmp_path / "cache" / "Microsoft").exists()
