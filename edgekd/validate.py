"""Check a model file before any command uses it, so a damaged file is bad input (exit 2, one line) and never
passes a lint, ships from compile, or reaches a runtime that would fail with a traceback.

    check_model_file(Path("student.onnx"))           # raises InputError naming the file and what is wrong
"""

from __future__ import annotations

import re
from pathlib import Path

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
