"""No connection unless `--remote` asks for one: the telemetry of the libraries edgekd drives is switched off
before they load, in this process only (docs/architecture.md, "No network").

edgekd/__init__.py calls `no_telemetry()` first, so every edgekd process (the CLI, the memory probe, DDP
workers, edgekd on a --remote device) has run it before torch, onnxruntime, openvino or transformers load; the
environment variables also reach the processes edgekd starts. The user's global settings (opt-out files in
their home) are neither read for this nor written, and a variable the user set explicitly is kept.

- ONNX Runtime (Linux builds too) queues 1DS events (model names, errors, CPU, a device id) in
  $XDG_CACHE_HOME/Microsoft and uploads them to mobile.events.data.microsoft.com from every process that
  loads it; ORT_DISABLE_TELEMETRY, read when its environment is created, turns both off.
- OpenVINO sends a Google Analytics event at `import openvino` (openvino.tools.ovc), and NNCF another at use,
  through the openvino_telemetry package, which also writes a client id and usage counts under ~/intel. It
  has no switch but CI detection (CI=true, which means more than that to other tools); both libraries fall
  back to their own no-op stubs when the package cannot be imported, which is what edgekd arranges.
- huggingface_hub and transformers (`hf:` teachers): offline, and their telemetry off.
"""

from __future__ import annotations

import os
import sys

ENVIRONMENT = {"ORT_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1"}
NO_IMPORT = ("openvino_telemetry",)  # None in sys.modules: `import` raises ImportError, the stubs take over


def no_telemetry() -> None:
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    for module in NO_IMPORT:
        sys.modules.setdefault(module, None)  # already loaded (by the caller's own code): too late, left as is
