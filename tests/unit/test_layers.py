"""The import layers docs/architecture.md promises: what runs on a device, and the CLI's start, import no torch."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("modules", [
    # the remote runner and the memory probe run where only a runtime is installed; the probe's baseline
    # would also carry torch's libraries
    "edgekd.runtimes, edgekd.runtimes.memprobe, edgekd.remote, edgekd.compile, edgekd.measure",
    "edgekd.cli",  # `edgekd --help` answers without paying torch's import
])
def test_device_side_and_cli_import_no_torch(modules):
    code = f"import sys, {modules}; print(sorted(m for m in sys.modules if m == 'torch'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"{modules} imported torch"
