"""The one way to import an optional SDK (tensorrt, openvino, nncf, transformers): inside the function that
needs it, so `import edgekd` stays light and a missing SDK is one line naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from edgekd.errors import MissingDependency

# module -> what `pip install` takes to get it
EXTRAS = {"tensorrt": "edgekd[tensorrt]", "openvino": "openvino", "nncf": "nncf",
          "onnxruntime": "onnxruntime", "transformers": "edgekd[hf]", "tokenizers": "edgekd[hf]"}


def require(module: str, purpose: str) -> ModuleType:
    """The module, or MissingDependency (exit 2) saying what to install for `purpose`."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(module, EXTRAS.get(module, module), purpose) from None


def installed(module: str) -> ModuleType | None:
    """The module where it imports here, else None (for facts such as versions and availability)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None
