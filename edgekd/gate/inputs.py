"""What `edgekd check` is given, validated before anything is measured: the model's input, the
evaluation data shaped for it, and the baseline report. Every problem is an InputError (exit 2) that
names the file or option."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from pydantic import ValidationError

from edgekd.config import MAX_INPUT_VALUES, Preprocess, format_validation_error
from edgekd.data import load_data
from edgekd.errors import InputError
from edgekd.optional import require
from edgekd.report import SCHEMA, read_report_json

INT8_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}


@dataclass(frozen=True)
class ModelInput:
    """The single input of a model: its name and dims (None where dynamic)."""

    path: Path
    name: str
    dims: tuple[int | None, ...]
    precision: str  # fp32 | fp16 | int8, read from the graph
    preprocessing: dict | None  # what edgekd's exporter recorded in the ONNX metadata, if anything
    # Text encoders (edgekd/text): the int64 token inputs fed together (input_ids, attention_mask, ...); dims are
    # input_ids' (batch, sequence), and the sequence is timed at `max_length` (the export's, else 128).
    token_inputs: tuple[str, ...] = ()
    max_length: int = 128

    def feeds_shape(self, batch: int):
        """What the memory probe and the timing pool feed: one shape, or {token input: (batch, max_length)}."""
        if self.token_inputs:
            return {n: (batch, self.max_length) for n in self.token_inputs}
        return self.shape(batch, None)

    def shape(self, batch: int, input_size: tuple[int, int] | None) -> tuple[int, ...]:
        """Concrete (batch, ...) shape to run: dynamic batch -> the target's, dynamic H, W -> input_size."""
        dims = list(self.dims)
        if self.token_inputs:
            return (batch, dims[1] or self.max_length)
        if dims[0] is not None and dims[0] != batch:
            raise InputError(f"MODEL '{self.path}': input '{self.name}' has a fixed batch of {dims[0]} but the "
                             f"target runs batch {batch}; export it with a dynamic or matching batch")
        dims[0] = batch
        if input_size is not None and len(dims) == 4:
            fixed = [d for d in dims[2:] if d is not None]
            if fixed and tuple(dims[2:]) != tuple(input_size):
                raise InputError(f"--input-size {input_size[0]},{input_size[1]}: MODEL '{self.path}' takes "
                                 f"{_dims(self.dims[1:])} inputs")
            dims[2:] = input_size
        if any(d is None for d in dims):
            raise InputError(f"MODEL '{self.path}': input '{self.name}' has dynamic dims {_dims(self.dims)}; "
                             "pass --input-size H,W (image models) or export it with fixed sizes")
        if math.prod(dims) > MAX_INPUT_VALUES:
            raise InputError(f"MODEL '{self.path}': input '{self.name}' of {_dims(dims)} is far larger than an "
                             "edge model takes; check its fixed dims or --input-size")
        return tuple(dims)


TOKEN_INPUTS = {"input_ids", "attention_mask", "token_type_ids"}
DEFAULT_MAX_LENGTH = 128


def _max_length(meta: dict, dims: tuple) -> int:
    """The sequence length to time a text model at: fixed in the graph, else the export's --max-length."""
    if len(dims) > 1 and dims[1]:
        return int(dims[1])
    try:
        return int(json.loads(meta["tokenization"])["max_length"])
    except (KeyError, ValueError, TypeError):
        return DEFAULT_MAX_LENGTH


def token_pool(model: ModelInput, batch: int, n: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Feeds for a text model without --data: token ids 5..99 (inside any vocabulary past the special
    tokens), every position attended, at the timed sequence length."""
    rng = np.random.default_rng(seed)
    shape = (batch, model.max_length)
    out = []
    for _ in range(n):
        feed = {name: np.ones(shape, np.int64) for name in model.token_inputs}
        feed["input_ids"] = rng.integers(5, 100, size=shape).astype(np.int64)
        if "token_type_ids" in feed:
            feed["token_type_ids"][:] = 0
        out.append(feed)
    return out


def _dims(dims) -> str:
    return "x".join("?" if d is None else str(d) for d in dims)


def inspect_model(path: Path, option: str = "MODEL") -> ModelInput | None:
    """The input of an ONNX model or OpenVINO IR; None for a TensorRT engine (not readable without TensorRT)."""
    suffix = path.suffix.lower()
    if suffix in (".onnx", ".ort"):
        return _inspect_onnx(path, option)
    if suffix == ".xml":
        return _inspect_ir(path, option)
    return None


def _inspect_onnx(path: Path, option: str) -> ModelInput:
    try:
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(str(path))  # by path: also checks models with external weights
    except Exception as e:  # DecodeError, ValidationError, ... on a file that is not a sound ONNX model
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise InputError(f"{option} '{path}': not a valid ONNX model ({type(e).__name__}: {first}); "
                         "give an .onnx exported by torch.onnx / tf2onnx, or an OpenVINO .xml") from None
    weights = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    meta = {p.key: p.value for p in model.metadata_props}
    names = tuple(i.name for i in inputs)
    if names and set(names) <= TOKEN_INPUTS and "input_ids" in names and all(
            i.type.tensor_type.elem_type == onnx.TensorProto.INT64 for i in inputs):
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                     for d in inputs[names.index("input_ids")].type.tensor_type.shape.dim)
        ops = {n.op_type for n in model.graph.node}
        precision = "int8" if ops & INT8_OPS else "fp32"
        return ModelInput(path, "input_ids", dims, precision, None, names, _max_length(meta, dims))
    if len(inputs) != 1:
        raise InputError(f"{option} '{path}': expected one input, found {len(inputs)} "
                         f"({', '.join(i.name for i in inputs)}); edgekd check feeds a single tensor")
    tensor = inputs[0].type.tensor_type
    if tensor.elem_type != onnx.TensorProto.FLOAT:
        raise InputError(f"{option} '{path}': input '{inputs[0].name}' is "
                         f"{onnx.TensorProto.DataType.Name(tensor.elem_type).lower()}; edgekd check feeds float32")
    dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim)
    if not dims:
        raise InputError(f"{option} '{path}': input '{inputs[0].name}' has no shape; export it with one")
    ops = {n.op_type for n in model.graph.node}
    if ops & INT8_OPS:
        precision = "int8"
    elif any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        precision = "fp16"
    else:
        precision = "fp32"
    try:
        preprocessing = json.loads(meta["preprocessing"]) if "preprocessing" in meta else None
    except json.JSONDecodeError:
        preprocessing = None
    return ModelInput(path, inputs[0].name, dims, precision, preprocessing)


def _inspect_ir(path: Path, option: str) -> ModelInput:
    ov = require("openvino", f"reading the OpenVINO model {option}")
    try:
        model = ov.Core().read_model(str(path))
    except Exception as e:  # RuntimeError with a long OpenVINO message on a damaged IR
        raise InputError(f"{option} '{path}': not a readable OpenVINO IR ({str(e).strip().splitlines()[0]}); "
                         "the .bin must sit beside the .xml") from None
    names = tuple(port.get_any_name() for port in model.inputs)
    if names and set(names) <= TOKEN_INPUTS and "input_ids" in names:
        shape = model.inputs[names.index("input_ids")].get_partial_shape()
        dims = tuple(d.get_length() if d.is_static else None for d in shape)
        return ModelInput(path, "input_ids", dims, "fp32", None, names, _max_length({}, dims))
    if len(model.inputs) != 1:
        raise InputError(f"{option} '{path}': expected one input, found {len(model.inputs)}")
    port = model.inputs[0]
    if port.get_element_type() != ov.Type.f32:
        raise InputError(f"{option} '{path}': input is {port.get_element_type()}; edgekd check feeds float32")
    dims = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return ModelInput(path, port.get_any_name(), dims, "fp32", None)


# ----------------------------------------------------------------------------- data
def preprocess_for(model: ModelInput, input_size, mean, std) -> Preprocess:
    """Options first, then what the model's own metadata records (edgekd exports carry it), validated as the
    options are: a metadata input size of 10^6 or a NaN mean is the model file's fault, named as such."""
    meta = model.preprocessing if isinstance(model.preprocessing, dict) else {}
    size = input_size or meta.get("input_size")
    try:
        return Preprocess(input_size=tuple(size) if isinstance(size, (list, tuple)) else size,
                          mean=mean or meta.get("mean"), std=std or meta.get("std"))
    except ValidationError as e:
        raise InputError(format_validation_error(f"MODEL '{model.path}' metadata 'preprocessing'", e)) from None


def load_eval_split(spec: str, model: ModelInput, preprocess: Preprocess, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The held-out split of --data (the same split `edgekd build` evaluates on), shaped for the model.

    Images are resized only when --input-size (or the model's metadata) asks for it and never converted
    between grey and colour: a gate must not make a mismatched data set fit silently.
    """
    data = load_data(spec, preprocess, seed)
    x, y = data.split("val")
    want = model.dims[1:]
    got = x.shape[1:]
    if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got, strict=False)):
        hint = ("pass --input-size H,W to resize them" if len(want) == 3 and want[0] == got[0]
                else "give data with the model's input layout")
        raise InputError(f"--data '{spec}': gives {_dims(got)} inputs but MODEL '{model.path}' takes "
                         f"{_dims(want)}; {hint}")
    return np.ascontiguousarray(x), y


# ----------------------------------------------------------------------------- baseline
@dataclass(frozen=True)
class Baseline:
    path: Path
    latency_ms: float | None
    latency_source: str | None
    statistic: str
    memory_mb: float | None
    memory_source: str | None
    host: str
    profile: str
    runtime: str | None  # how its latency was measured, compared with this check's (gate/plan.py)
    precision: str | None
    threads: int | None
    method: str | None  # latency_timing.method: "interleaved blocks" for the build and this check


def _number(d: dict, key: str, where: str) -> float | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise InputError(f"{where}: field '{key}' is {v!r}; expected a positive number")
    return float(v)


def load_baseline(path: Path) -> Baseline:
    """The model figures of an earlier `edgekd check --json` or `edgekd build` report, and how they were
    measured."""
    where = f"--baseline '{path}'"
    report = read_report_json(path, where)
    if report.get("schema") != SCHEMA:
        found = report.get("schema")
        raise InputError(f"{where}: not an edgekd report (schema {found!r}, expected '{SCHEMA}')")
    student = report.get("student")
    if not isinstance(student, dict):
        raise InputError(f"{where}: field 'student' is missing or not an object")
    latency, memory = _number(student, "latency_ms", f"{where} student"), _number(student, "memory_mb",
                                                                                   f"{where} student")
    if latency is None and memory is None:
        raise InputError(f"{where}: has neither student.latency_ms nor student.memory_mb to compare against")
    stats = student.get("latency_stats") if isinstance(student.get("latency_stats"), dict) else {}
    host = report.get("environment", {}).get("host", "") if isinstance(report.get("environment"), dict) else ""
    target = report.get("target") if isinstance(report.get("target"), dict) else {}
    session = student.get("session") if isinstance(student.get("session"), dict) else {}
    timing = student.get("latency_timing") if isinstance(student.get("latency_timing"), dict) else {}
    threads = session.get("threads", session.get("INFERENCE_NUM_THREADS"))  # OpenVINO reads it back as text
    threads = int(threads) if isinstance(threads, (int, str)) and str(threads).isdigit() else threads
    return Baseline(path, latency, student.get("latency_source"), stats.get("statistic", "p50"), memory,
                    student.get("memory_source"), host, target.get("profile", ""), target.get("runtime"),
                    target.get("precision"), threads, timing.get("method"))
