"""The --remote address is parsed strictly: nothing in it can reach ssh as an option (no sshd needed)."""

from __future__ import annotations

import shutil

import pytest

from edgekd.errors import InputError
from edgekd.remote import RemoteSpec, _ssh, parse_remote, run_remote


def test_out_of_range_port_says_so():
    with pytest.raises(InputError, match="port 99999 is out of range 1..65535"):
        parse_remote("ssh://pi@host:99999")


def test_destination_comes_after_double_dash():
    argv = _ssh(parse_remote("ssh://nvidia@orin.local:2222"), "true")
    assert argv[argv.index("--") + 1:] == ["nvidia@orin.local", "true"]
    assert argv[0] == "ssh" and argv.index("--") == len(argv) - 3


@pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH client not installed")
def test_spec_made_in_code_is_checked_before_the_real_ssh_runs(tmp_path, monkeypatch):
    """A RemoteSpec built directly (not parsed) with an option for a user: if it reached ssh unchecked and
    without "--", ssh would run the ProxyCommand and create the sentinel."""
    monkeypatch.chdir(tmp_path)
    spec = RemoteSpec(host="127.0.0.1", user=f"-oProxyCommand=touch {tmp_path / 'SENTINEL'}", connect_timeout_s=2)
    with pytest.raises(InputError, match="not a valid login name"):
        run_remote(spec, ["true"], edgekd=False)
    assert not (tmp_path / "SENTINEL").exists()


def test_uploaded_file_starting_with_dash_is_not_an_option(tmp_path):
    from edgekd.remote import _uploads

    f = tmp_path / "-V.onnx"
    f.write_bytes(b"x")
    assert "-V.onnx" in _uploads([f])  # the remote argv names it ./-V.onnx (see run_remote)


@pytest.mark.parametrize("env", ["A=1 B;rm=2", "$(x)=1"])
def test_remote_env_names_are_checked(env, monkeypatch):
    monkeypatch.setenv("EDGEKD_REMOTE_ENV", env)
    with pytest.raises(InputError, match="EDGEKD_REMOTE_ENV"):
        _ssh(parse_remote("ssh://pi@host"), "true")
