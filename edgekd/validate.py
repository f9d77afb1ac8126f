"""Check a model file before any command uses it, so a damaged file is bad input (exit 2, one line) and never
passes a lint, ships from compile, or reaches a runtime that would fail with a traceback.

    check_model_file(Path("student.onnx"))           # raises InputError naming the file and what is wrong

The array files commands take beside a model (`bench --eval`, `compile --calibration`) are read the same way:
load_input_arrays.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
from onnx.external_data_helper import _get_all_tensors, uses_external_data

from edgekd.errors import InputError
from edgekd.optional import require

FORMATS = ".onnx, .ort, OpenVINO .xml (with its .bin), or TensorRT .engine"


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return (text.splitlines()[0][:300] if text else "") or type(e).__name__


def check_model_file(path: Path, option: str = "MODEL") -> None:
    """The file exists, is not empty and reads as the format its suffix names."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{option} '{path}': is a directory; give the model file inside it ({FORMATS})")
    if not path.is_file():
        raise InputError(f"{option} '{path}': file not found")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise InputError(f"{option} '{path}': cannot be read ({e.strerror or e})") from None
    if size == 0:
        raise InputError(f"{option} '{path}': is empty (0 bytes); re-export or copy the model again")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        check_onnx(path, option)
    elif suffix == ".ort":
        # ORT format is a flatbuffer whose file identifier "ORTM" sits at bytes 4..8
        if head[4:8] != b"ORTM":
            raise InputError(f"{option} '{path}': not an ORT-format model (no ORTM identifier); "
                             "convert it again with `edgekd compile --mobile`")
    elif suffix == ".xml":
        check_openvino(path, option)
    elif suffix in (".engine", ".plan"):
        check_engine_header(path, head, size, option)


def read_onnx(path: Path, option: str = "MODEL"):
    """The ModelProto (external weights not loaded) of a file that parses as ONNX and holds a graph, with any
    external weights inside the model's folder; an InputError otherwise."""
    if path.stat().st_size == 0:
        raise InputError(f"{option} '{path}': is empty (0 bytes); re-export or copy the model again")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001  (DecodeError, RuntimeError, ... on a damaged file)
        raise InputError(f"{option} '{path}': not a valid ONNX model ({type(e).__name__}: {_first_line(e)}); "
                         "re-export it") from None
    if model.ir_version < 1 or not model.HasField("graph") or not model.graph.node:
        raise InputError(f"{option} '{path}': not an ONNX model (no IR version or no graph); re-export it")
    _external_data_inside(path, model, option)
    return model


def onnx_checker_problem(path: Path, full: bool = True) -> str | None:
    """What onnx.checker says is wrong with the file (by path, so external weights are checked too), with
    the full check (strict shape inference) when `full`; None when it passes."""
    try:
        onnx.checker.check_model(str(path), full_check=full)
    except Exception as e:  # noqa: BLE001  (ValidationError, InferenceError, ...)
        return f"{type(e).__name__}: {_first_line(e)}"
    return None


def check_onnx(path: Path, option: str = "MODEL", full: bool = True) -> None:
    read_onnx(path, option)
    problem = onnx_checker_problem(path, full)
    if problem:
        raise InputError(f"{option} '{path}': not a valid ONNX model ({problem}); re-export it")


def _external_data_inside(path: Path, model, option: str) -> None:
    """Weights stored beside the model must resolve inside its folder, also through symbolic links (the
    checker looks at the names, not where a link leads)."""
    folder = path.resolve().parent
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (path.parent / location).resolve()
        if not target.is_relative_to(folder) or not target.is_file():
            raise InputError(f"{option} '{path}': weights of tensor '{tensor.name}' point to '{location}', "
                             "which is not a file inside the model's folder")


def _openvino_reason(e: Exception) -> str:
    """OpenVINO's message minus its source locations ("Exception from src/...", "Check '...' failed at")."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    said = [ln for ln in lines if not ln.startswith(("Exception from", "Check '"))]
    return (said[-1] if said else _first_line(e))[:300]


def check_openvino(path: Path, option: str = "MODEL") -> None:
    ov = require("openvino", f"reading the OpenVINO model {option}")

    # The root element must be <net> before OpenVINO sees the file: otherwise it offers the bytes to every
    # frontend it has (TensorFlow's logs parse errors straight to the terminal) and says little about why.
    with open(path, "rb") as f:
        head = f.read(4096)
    root = re.search(rb"<(?![?!])([A-Za-z_][\w.-]*)", head)
    if root is None or root.group(1) != b"net":
        raise InputError(f"{option} '{path}': not an OpenVINO IR (the XML's root element must be <net>); "
                         "convert the model with `edgekd compile --runtime openvino`")
    try:
        ov.Core().read_model(str(path))
    except Exception as e:  # noqa: BLE001  (RuntimeError with a long message on a damaged IR)
        raise InputError(f"{option} '{path}': not a readable OpenVINO IR ({_openvino_reason(e)}); "
                         "the .bin must sit beside the .xml") from None


def check_engine_header(path: Path, head: bytes, size: int, option: str = "MODEL") -> None:
    """What can be told without TensorRT (which checks the rest when it loads the engine): a serialized
    engine is binary and far larger than a header, and is none of the formats users confuse it with."""
    others = {b"PK": "a zip archive (a torch file?)", b"<?xml": "an XML file (an OpenVINO IR?)",
              b"\x08": "an ONNX model (compile it for TensorRT first)"}
    for magic, what in others.items():
        if head.startswith(magic):
            raise InputError(f"{option} '{path}': looks like {what}, not a TensorRT engine")
    if size < 1024:
        raise InputError(f"{option} '{path}': {size} bytes is too small for a TensorRT engine; rebuild it")
    try:
        head.decode("ascii")
    except UnicodeDecodeError:
        return
    raise InputError(f"{option} '{path}': is text, not a TensorRT engine; rebuild it")


# ONNX domains a stock runtime knows: the standard ones, ONNX Runtime's contrib ops and OpenVINO's own.
KNOWN_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training", "com.microsoft", "com.microsoft.nchwc",
                 "org.openvinotoolkit"}


def refuse_custom_ops(path: Path, option: str = "MODEL", model=None) -> None:
    """A node in a custom domain (one the model's own functions do not define) needs a plugin that onnxruntime
    and OpenVINO do not have: refused by name here, not as a runtime's traceback when a session opens."""
    model = model if model is not None else read_onnx(path, option)
    local = {(f.domain, f.name) for f in model.functions}
    for node in model.graph.node:
        if node.domain not in KNOWN_DOMAINS and (node.domain, node.op_type) not in local:
            raise InputError(f"{option} '{path}': node '{node.name or node.op_type}' is the custom op "
                             f"'{node.domain}:{node.op_type}', which onnxruntime and OpenVINO do not implement; "
                             "export the model with standard ONNX ops")


def load_input_arrays(path: Path, option: str, labels: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Preprocessed inputs x (N, C, H, W) as float32, and with `labels` their integer classes y (N,), from an
    .npz (x, y) or, without labels, a bare .npy; an InputError naming `option` and the file otherwise.

    Read like a model file: a device, pipe or empty file, a damaged archive, no samples, NaN pixels or a label
    below 0 are bad input, never an EOFError or a quantizer fed NaN."""
    path = Path(path)
    where = f"{option} '{path}'"
    need = "an .npz with float x (N, C, H, W) and integer y (N,)" if labels else \
        "an .npy (N, C, H, W) or an .npz with x"
    if not path.exists():
        raise InputError(f"{where}: file not found")
    if not path.is_file():
        raise InputError(f"{where}: not a regular file (a folder, device or pipe); give {need}")
    if path.stat().st_size == 0:
        raise InputError(f"{where}: is empty (0 bytes); give {need}")
    try:
        with open(path, "rb") as f:
            zipped = f.read(2) == b"PK"
            f.seek(0)
            if zipped:
                with np.load(f, allow_pickle=False) as z:
                    missing = [k for k in ("x", "y")[: 1 + labels] if k not in z.files]
                    if missing:
                        raise InputError(f"{where}: missing array '{missing[0]}' (has {sorted(z.files)}); "
                                         f"give {need}")
                    x, y = z["x"], z["y"] if labels else None
            elif labels:
                raise InputError(f"{where}: not an .npz archive; give {need}")
            else:
                x, y = np.load(f, allow_pickle=False), None
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001  (EOFError, BadZipFile, ValueError, ... on a damaged file)
        raise InputError(f"{where}: not readable ({type(e).__name__}: {_first_line(e)}); give {need}") from None
    if not np.issubdtype(x.dtype, np.integer) and not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"{where}: x holds {x.dtype} values; give {need}")
    if x.ndim != 4 or len(x) == 0:
        raise InputError(f"{where}: x has shape {x.shape}; need (N, C, H, W) with N >= 1")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).reshape(len(x), -1).any(1).sum())
        raise InputError(f"{where}: x holds NaN or infinite values in {bad} of {len(x)} samples; fix or drop them")
    if labels:
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
            raise InputError(f"{where}: y ({y.dtype}, shape {y.shape}) must be {len(x)} non-negative integer "
                             "class ids, one per sample of x")
        y = y.astype(np.int64)
    return x, y


def check_input_shape(x: np.ndarray, sample_shape: tuple, where: str, model: Path) -> None:
    """The arrays' samples are what the model takes (dims it leaves dynamic match anything)."""
    fixed = all(isinstance(d, int) and d > 0 for d in sample_shape)
    if len(x.shape[1:]) != len(sample_shape) or (fixed and tuple(x.shape[1:]) != tuple(sample_shape)):
        raise InputError(f"{where}: samples are {'x'.join(map(str, x.shape[1:]))} but MODEL '{model}' takes "
                         f"{'x'.join(str(d) for d in sample_shape)}; prepare them as the model was exported")


def check_labels_in_range(y: np.ndarray, logits: np.ndarray, where: str, model: Path) -> None:
    """Labels must name one of the model's outputs: accuracy against a label it cannot predict is no figure."""
    if logits.ndim != 2:
        raise InputError(f"MODEL '{model}': output has shape {logits.shape}; accuracy needs (N, classes) logits")
    if len(y) and int(y.max()) >= logits.shape[1]:
        raise InputError(f"{where}: label {int(y.max())} is outside the model's {logits.shape[1]} classes "
                         f"(0..{logits.shape[1] - 1}); give labels the model predicts")
