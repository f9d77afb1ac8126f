"""TensorRT compatibility lint: what TensorRT's ONNX parser would refuse, found here, before anyone
reaches the device. Runs anywhere (onnx only).

Checked against the parser's published operator list (tensorrt_operators.yaml): opset range, operators
without an importer, custom domains (need a plugin), the data type of each node's main input, the
attribute and constant-input restrictions of the list's "Restrictions" column, dynamic dimensions the
optimization profile (the batch, and a token input's sequence) cannot cover, and INT64 tensors
(TensorRT < 10, i.e. JetPack 5, casts INT64 down to INT32 and clamps; UINT8 is allowed only at the
network's edges).

    findings = lint_tensorrt(onnx.load("student.onnx"), batch=1, max_batch=64)
    errors = [f for f in findings if f.severity == "error"]    # the build would fail
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import numpy as np
import onnx
import yaml
from onnx import numpy_helper, shape_inference

from edgekd.errors import InputError
from edgekd.validate import check_model_file, read_onnx

TYPE_NAMES = {1: "FP32", 2: "UINT8", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 10: "FP16", 11: "DOUBLE",
              16: "BF16", 17: "FP8", 18: "FP8", 19: "FP8", 20: "FP8", 22: "INT4"}
INT32_RANGE = (-(2**31), 2**31 - 1)
POOLS = ("AveragePool", "MaxPool", "LpPool")
REDUCES = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
           "ReduceProd", "ReduceSum", "ReduceSumSquare")
# Inputs the list says must be initializers (constants), by op: {op: {input index: name}}.
CONSTANT_INPUTS = {**{op: {1: "axes"} for op in REDUCES}, "Slice": {3: "axes"}, "Squeeze": {1: "axes"},
                   "Unsqueeze": {1: "axes"}, "Pad": {3: "axes"}, "CumSum": {1: "axis"}, "TopK": {1: "K"},
                   "OneHot": {1: "depth"}, "Dropout": {2: "training_mode"}}


@dataclass(frozen=True)
class Finding:
    severity: str  # error (the parser or builder would fail) | warning (builds, but see why)
    node: str
    op: str
    why: str

    def line(self) -> str:
        return f"{self.severity:7s} {self.node} ({self.op}): {self.why}"

    def to_dict(self) -> dict:
        return asdict(self)


@cache
def operator_table() -> dict:
    return yaml.safe_load((Path(__file__).with_name("tensorrt_operators.yaml")).read_text())


class _Graph:
    """Types, shapes and constants of every tensor of a model (after ONNX shape inference)."""

    def __init__(self, model):
        # A model shape inference cannot handle is still linted, with fewer types known.
        with contextlib.suppress(Exception):
            model = shape_inference.infer_shapes(model, data_prop=True)
        self.model = model
        self.types: dict[str, int] = {}
        for v in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
            if v.type.tensor_type.elem_type:
                self.types[v.name] = v.type.tensor_type.elem_type
        self.constants: dict[str, np.ndarray] = {}
        for t in model.graph.initializer:
            self.types[t.name] = t.data_type
            self.constants[t.name] = numpy_helper.to_array(t)
        for n in model.graph.node:
            if n.op_type == "Constant" and n.output:
                for a in n.attribute:
                    if a.name == "value":
                        self.constants[n.output[0]] = numpy_helper.to_array(a.t)
                        self.types[n.output[0]] = a.t.data_type
        self.used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
        self.onnx = onnx

    def attr(self, node, name, default=None):
        for a in node.attribute:
            if a.name == name:
                return self.onnx.helper.get_attribute_value(a)
        return default

    def const(self, node, index: int):
        """(present, value or None if not a constant) of a node's input."""
        if index >= len(node.input) or not node.input[index]:
            return False, None
        return True, self.constants.get(node.input[index])


def _as_str(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _restrictions(g: _Graph, node) -> list[str]:
    """The "Restrictions" column of the operator list, as checks."""
    op, why = node.op_type, []
    for index, name in CONSTANT_INPUTS.get(op, {}).items():
        present, value = g.const(node, index)
        if present and value is None:
            why.append(f"input '{name}' must be an initializer (a constant), but is computed at run time")
    if op in POOLS:
        kernel = g.attr(node, "kernel_shape") or []
        if len(kernel) not in (2, 3):
            why.append(f"only 2D or 3D pooling is supported, kernel_shape is {list(kernel)}")
        if any(d != 1 for d in g.attr(node, "dilations") or []):
            why.append("dilations must be empty or all ones")
    if op == "MaxPool" and len(node.output) > 1 and node.output[1] in g.used:
        why.append("the Indices output is not supported")
    if op in ("QuantizeLinear", "DequantizeLinear"):
        _, zero = g.const(node, 2)
        if zero is not None and np.any(zero != 0):
            why.append("zero point must be 0 (symmetric quantization); quantize with symmetric activations and weights")
        if g.const(node, 1)[1] is None and g.const(node, 1)[0]:
            why.append("the scale must be a constant")
    if op == "Resize":
        checks = {"coordinate_transformation_mode": ({"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn",
                                                      "asymmetric", "align_corners"}, "half_pixel"),
                  "mode": ({"nearest", "linear"}, "nearest"),
                  "nearest_mode": ({"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}, "round_prefer_floor"),
                  "keep_aspect_ratio_policy": ({"stretch"}, "stretch")}
        for name, (allowed, default) in checks.items():
            value = _as_str(g.attr(node, name, default))
            if value not in allowed:
                why.append(f"{name}='{value}' is not supported (supported: {', '.join(sorted(allowed))})")
        if g.attr(node, "antialias", 0):
            why.append("antialiasing is not supported")
    if op == "TopK":
        if g.attr(node, "sorted", 1) != 1:
            why.append("sorted must be 1")
        _, k = g.const(node, 1)
        if k is not None and int(np.max(k)) >= 3840:
            why.append(f"K must be less than 3840, is {int(np.max(k))}")
    if op == "Dropout":
        _, training = g.const(node, 2)
        if training is not None and bool(np.any(training)):
            why.append("training_mode must evaluate to False")
    if op == "LSTM" and (g.attr(node, "input_forget", 0) or g.attr(node, "layout", 0)):
        why.append("input_forget and layout must be 0")
    if op == "LayerNormalization" and any(o in g.used for o in node.output[1:]):
        why.append("only the first output (Y) is supported")
    if op == "Constant" and any(a.name in ("sparse_value", "value_string", "value_strings") for a in node.attribute):
        why.append("sparse_value, value_string and value_strings are not supported")
    if op == "ScatterND" and _as_str(g.attr(node, "reduction", "none")) != "none":
        why.append("the reduction attribute is not supported")
    return why


def profile_shapes(dims: tuple[int | None, ...], batch: int, max_batch: int,
                   sequence: int | None = None) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | str:
    """The (min, opt, max) shapes of the optimization profile edgekd builds for one input whose `dims` hold
    an int per fixed axis and None per dynamic one: the batch spans 1..max_batch (opt: the target's batch);
    a token input's sequence axis (2-D, `sequence` given) spans 1..sequence tokens (opt and max: `sequence`,
    the length latency is timed at). A string says why an axis cannot be covered. TensorRT's engine builder
    (tensorrt_backend.py) and the lint read the same answer, so the lint's verdict is the build's."""
    spans = []  # (min, opt, max) per axis
    for axis, d in enumerate(dims):
        if axis == 0 and d is not None and d != batch:
            return f"batch dimension is fixed to {d} but the target runs batch {batch}; export with a dynamic batch"
        if d is not None:
            spans.append((d, d, d))
        elif axis == 0:
            spans.append((1, batch, max(batch, max_batch)))
        elif axis == 1 and len(dims) == 2 and sequence is not None:
            spans.append((1, sequence, sequence))
        else:
            covered = f"the batch (1..{max_batch})" + (f" and a token input's sequence (1..{sequence})"
                                                        if sequence is not None else "")
            return (f"dimension {axis} is dynamic; the optimization profile covers only {covered}: export with a "
                    "fixed input size" + ("" if sequence is not None else
                                          " (a text model: give its --max-length)" if len(dims) == 2 else ""))
    lo, opt, hi = (tuple(s[i] for s in spans) for i in range(3))
    return lo, opt, hi


def _input_findings(g: _Graph, batch: int, max_batch: int, sequence: int | None) -> list[Finding]:
    """Dynamic dimensions against the one optimization profile edgekd builds (profile_shapes)."""
    out = []
    for v in g.model.graph.input:
        if v.name in g.constants:
            continue
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim)
        shapes = profile_shapes(dims, batch, max_batch, sequence)
        if isinstance(shapes, str):
            out.append(Finding("error", v.name, "input", shapes))
        if v.type.tensor_type.elem_type not in (1, 10, 16):
            name = TYPE_NAMES.get(v.type.tensor_type.elem_type, str(v.type.tensor_type.elem_type))
            out.append(Finding("warning", v.name, "input", f"network input is {name}; the engine's input binding "
                               "will be that type, not float"))
    return out


def _int64_findings(g: _Graph) -> list[Finding]:
    out = []
    for name, value in g.constants.items():
        if value.dtype == np.int64 and value.size and (value.min() < INT32_RANGE[0] or value.max() > INT32_RANGE[1]):
            out.append(Finding("warning", name, "initializer", "INT64 values outside the INT32 range: TensorRT < 10 "
                               "(JetPack 5) casts INT64 to INT32 and clamps them"))
    for v in g.model.graph.output:
        if v.type.tensor_type.elem_type == 7:
            out.append(Finding("warning", v.name, "output", "INT64 network output: TensorRT < 10 (JetPack 5) "
                               "returns it as INT32"))
    return out


def lint_tensorrt(model, batch: int = 1, max_batch: int = 64, sequence: int | None = None) -> list[Finding]:
    """Every finding for an ONNX ModelProto, errors first; `sequence`: a text model's tokens per input."""
    table = operator_table()
    g = _Graph(model)
    findings = _input_findings(g, batch, max_batch, sequence)
    lo, hi = table["opset"]
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and not lo <= imp.version <= hi:
            findings.append(Finding("error", "(model)", "opset", f"opset {imp.version} is outside the parser's "
                                    f"range {lo}..{hi} ({table['source']}); export with an opset in range"))
    for i, node in enumerate(model.graph.node):
        name = node.name or f"#{i}"
        if node.domain not in ("", "ai.onnx"):
            findings.append(Finding("error", name, f"{node.domain}.{node.op_type}", "custom-domain operator: "
                                    "TensorRT needs a plugin for it"))
            continue
        entry = table["ops"].get(node.op_type, "missing")
        if entry == "missing" or entry is None:
            listed = "is not in" if entry == "missing" else "is listed as unsupported in"
            findings.append(Finding("error", name, node.op_type, f"{node.op_type} {listed} the TensorRT ONNX "
                                    f"parser's operator list ({table['source']})"))
            continue
        data_type = g.types.get(node.input[0]) if node.input and node.input[0] else None
        type_name = TYPE_NAMES.get(data_type) if data_type else None
        if type_name == "DOUBLE" and "DOUBLE" not in entry["types"]:
            findings.append(Finding("warning", name, node.op_type, "DOUBLE input: TensorRT casts it down to FP32 "
                                    "and clamps values to +-FLT_MAX"))
        elif type_name and type_name not in entry["types"]:
            findings.append(Finding("error", name, node.op_type, f"input '{node.input[0]}' is {type_name}; the "
                                    f"parser supports {node.op_type} on {', '.join(entry['types'])}"))
        findings += [Finding("error", name, node.op_type, why) for why in _restrictions(g, node)]
    findings += _int64_findings(g)
    return sorted(findings, key=lambda f: f.severity != "error")


def lint_file(path: Path, batch: int = 1, max_batch: int = 64, sequence: int | None = None) -> list[Finding]:
    if path.is_dir() or not path.is_file():
        check_model_file(path)  # says which: a directory, or no such file
    if path.suffix.lower() != ".onnx":
        raise InputError(f"MODEL '{path}': lint reads .onnx models; give the ONNX the artifact was built from")
    read_onnx(path)  # an empty or damaged file is bad input, never a clean lint
    # The lint reports schema problems itself, node by node; onnx.checker's strict pass is left to the
    # commands that run the model (compile, bench, check), so a lint still lists every finding.
    return lint_tensorrt(onnx.load(str(path)), batch, max_batch, sequence)

