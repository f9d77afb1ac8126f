"""A hostile --remote address is refused by the commands before ssh runs (no sshd needed)."""

from __future__ import annotations

import pytest
from conftest import cli

HOSTILE = ["ssh://-oProxyCommand=touch${IFS}SENTINEL@host", "ssh://-V@host", "ssh://-V", "ssh://host:99999",
           "ssh://host:0", "ssh://u@-oProxyCommand=touch${IFS}SENTINEL", "ssh://u;touch${IFS}SENTINEL@host",
           "ssh://u@host;touch${IFS}SENTINEL", "ssh://u@$(touch${IFS}SENTINEL)", "ssh://u@[-V]", "ssh://u:pw@host"]


@pytest.mark.parametrize("url", HOSTILE)
def test_hostile_addresses_are_refused_before_ssh_runs(url, tiny_onnx, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where `touch SENTINEL` would land if the address reached a shell or ssh
    r = cli("bench", tiny_onnx, "--runtime", "onnxruntime", "--remote", url)
    assert r.exit_code == 2, r.output
    assert "--remote" in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert not (tmp_path / "SENTINEL").exists()


def test_build_refuses_a_bad_remote_before_any_work(tmp_path):
    r = cli("build", "--remote", "ssh://-V@host", "--out", tmp_path / "run")
    assert r.exit_code == 2 and "--remote" in r.stderr and not (tmp_path / "run").exists()
