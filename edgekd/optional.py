"""The one way to import a heavy SDK late (tensorrt, openvino, nncf, transformers; torch where a device-side
module needs it): inside the function that needs it, so `import edgekd` stays light and a missing SDK is one line
naming what to install. docs/architecture.md ("Imports") says which imports come this way."""

from __future__ import annotations

import importlib
from types import ModuleType

from edgekd.errors import MissingDependency

# module -> what `pip install` takes to get it
EXTRAS = {"tensorrt": "edgekd[tensorrt]", "openvino": "openvino", "nncf": "nncf",
          "onnxruntime": "onnxruntime", "transformers": "edgekd[hf]", "tokenizers": "edgekd[hf]", "torch": "torch"}


def require(module: str, purpose: str) -> ModuleType:
    """The module, or MissingDependency (exit 2) saying what to install for `purpose`."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise MissingDependency(package, EXTRAS.get(package, package), purpose) from None


def installed(module: str) -> ModuleType | None:
    """The module where it imports here, else None (for facts such as versions and availability)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None
