"""Turn a network into the kernels a runtime launches, with their FLOPs, bytes and shapes, from ONNX or torch.

Both extractors produce the same `Kernel` records, so the search (torch candidates, thousands of them)
and the budget check (the exported ONNX) are priced by one model. A kernel is what a CPU runtime runs as
one fused node; ONNX Runtime and OpenVINO both fuse, and edgekd prices them by the same rules:
  - a convolution or GEMM absorbs the batch-norm, bias and activation that follow it;
  - a residual Add of a convolution's output absorbs into that convolution (the later of the two when
    both inputs are convolutions: the one that runs when the other operand already exists), together
    with the activation after the Add (ORT's NCHWc Conv+Sum+Relu, OpenVINO's eltwise post-ops);
  - shape-only nodes (Reshape, Flatten, ...) launch nothing.
The calibrated predictors (calibration.py) are fitted on kernels timed as these same fused patterns.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper, shape_inference
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.resnet import BasicBlock, Bottleneck

ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
KINDS = ("conv", "dwconv", "gemm", "pool", "eltwise", "other")
# Nodes that runtimes fold away or that only rewrite shape metadata: no kernel launched.
FREE_OPS = {"Constant", "Identity", "Shape", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Dropout",
            "QuantizeLinear", "DequantizeLinear"}
# Activations a runtime fuses into the convolution or GEMM that feeds them.
FUSABLE_ACTIVATIONS = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu"}
# Per-channel affine ops folded into a convolution when their other operand is a constant.
FOLDABLE_AFFINE = {"BatchNormalization", "Add", "Mul", "Sub", "Div"}
TIMED_ALONE = ("conv", "dwconv", "gemm", "pool", "eltwise")  # kinds calibration times as one-kernel models
POOL_OPS = {"GlobalAveragePool", "AveragePool", "MaxPool", "ReduceMean", "GlobalMaxPool", "ReduceMax"}


@dataclass(frozen=True)
class Kernel:
    kind: str  # one of KINDS
    flops: float
    activation_elems: float  # activations read + written (inputs, residual operand, output), elements
    weight_elems: float
    output_elems: float
    # The launch's shape: what calibrated predictors key on (per-channel blocking, im2col vs direct, ...).
    cin: int = 0
    cout: int = 0
    hw_in: int = 1  # input height x width (1 for a GEMM)
    hw_out: int = 1
    k: int = 1  # kernel side
    stride: int = 1
    batch: int = 1
    act: str = ""  # fused activation (ONNX op name), "" for none
    residual: bool = False  # a residual Add fused into this kernel
    # Tensor names, for the liveness pass over kernels (peak_activation_elems).
    inputs: tuple[str, ...] = field(default=(), compare=False)
    output: str = field(default="", compare=False)


def _conv_kernel(n: int, cin: int, cout: int, groups: int, k: int, stride: int, hw_in: int, hw_out: int,
                 weight_elems: float, inputs: tuple[str, ...], output: str) -> Kernel:
    out = float(n * cout * hw_out)
    kind = "dwconv" if groups > 1 and groups == cin else "conv"
    return Kernel(kind, 2.0 * out * (cin // groups) * k * k, float(n * cin * hw_in) + out, weight_elems, out,
                  cin, cout, hw_in, hw_out, k, stride, n, inputs=inputs, output=output)


def fuse_residual(kernel: Kernel, other: str, act: str) -> Kernel:
    """`kernel` with a residual Add of tensor `other` (same shape as its output) and then `act` fused in."""
    return replace(kernel, residual=True, act=act, activation_elems=kernel.activation_elems + kernel.output_elems,
                   inputs=(*kernel.inputs, other))


def peak_activation_elems(kernels: list[Kernel], input_elems: dict[str, float]) -> float:
    """Peak number of activation elements alive at once when the kernels run in order.

    `input_elems` sizes the network's inputs; every other tensor is some kernel's output. A tensor dies
    after its last reader; the last kernel's output stays.
    """
    size = dict(input_elems)
    size.update({k.output: k.output_elems for k in kernels})
    last_use: dict[str, int] = {}
    for i, k in enumerate(kernels):
        for name in k.inputs:
            last_use[name] = i
    live = set(input_elems)
    peak = sum(input_elems.values())
    for i, k in enumerate(kernels):
        live.add(k.output)
        peak = max(peak, sum(size.get(n, 0.0) for n in live))
        live = {n for n in live if last_use.get(n, -1) > i or n == kernels[-1].output}
    return peak


# ----------------------------------------------------------------------------- single kernels
def make_kernel(kind: str, cin: int, cout: int, side: int, k: int = 1, stride: int = 1, act: str = "",
                residual: bool = False, batch: int = 1) -> Kernel:
    """A kernel record for a launch shape, priced exactly as the extractors price one inside a network."""
    if kind in ("conv", "dwconv"):
        groups = cin if kind == "dwconv" else 1
        cout = cin if kind == "dwconv" else cout
        side_out = (side + 2 * (k // 2) - k) // stride + 1
        kern = _conv_kernel(batch, cin, cout, groups, k, stride, side * side, side_out * side_out,
                            float(cout * (cin // groups) * k * k + cout), ("x",), "y")
        kern = replace(kern, act=act)
        return fuse_residual(kern, "r", act) if residual else kern
    if kind == "gemm":
        o = float(batch * cout)
        return Kernel("gemm", 2.0 * o * cin, batch * cin + o, float(cin * cout + cout), o, cin, cout, 1, 1, 1, 1,
                      batch, act, inputs=("x",), output="y")
    if kind == "pool":
        n_in, o = float(batch * cin * side * side), float(batch * cin)
        return Kernel("pool", n_in, n_in + o, 0, o, cin, cin, side * side, 1, 1, 1, batch, inputs=("x",), output="y")
    if kind == "eltwise":
        o = float(batch * cin * side * side)
        return Kernel("eltwise", 2 * o, 3 * o, 0, o, cin, cin, side * side, side * side, 1, 1, batch, "Add",
                      inputs=("x", "r"), output="y")
    raise ValueError(kind)


def side_of(hw: int) -> int:
    return max(1, round(hw ** 0.5))


def from_network_kernel(k: Kernel) -> Kernel | None:
    """The stand-alone version of a kernel seen in a network (None for kinds not timed alone)."""
    if k.kind not in TIMED_ALONE:
        return None
    act = k.act if k.act in ("", "Relu", "Clip") else "Relu"
    return make_kernel(k.kind, k.cin, k.cout, side_of(k.hw_in), k.k, k.stride, act, k.residual, k.batch)


# ----------------------------------------------------------------------------- ONNX
def _inferred_shapes(model, batch: int):
    """A copy of the model with symbolic dims set to `batch`, and every fully known tensor shape."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for value in model.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.dim_value = batch
    model = shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, tuple[int, ...]] = {}
    for v in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        dims = v.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[v.name] = tuple(d.dim_value for d in dims)
    return model, shapes


def _graph_inputs(model, shapes) -> dict[str, float]:
    initializers = {t.name for t in model.graph.initializer}
    return {v.name: float(np.prod(shapes.get(v.name, (0,)))) for v in model.graph.input if v.name not in initializers}


def _hw(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape[2:])) if len(shape) > 2 else 1


def _onnx_kernels(model, shapes) -> list[Kernel]:
    constants = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
    constants.update({n.output[0]: () for n in model.graph.node if n.op_type == "Constant"})
    readers: dict[str, int] = {o.name: 1 for o in model.graph.output}
    for node in model.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    alias: dict[str, str] = {}  # free node outputs -> the tensor they view
    made: dict[str, int] = {}  # tensor -> index of the kernel whose output it currently is

    def real(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    def elems(name: str) -> float:
        return float(np.prod(shapes.get(name, (0,))))

    kernels: list[Kernel] = []
    for node in model.graph.node:
        op, out = node.op_type, node.output[0]
        raw = [i for i in node.input if i and i not in constants]
        acts = [real(i) for i in raw]
        if op in FREE_OPS:
            if acts:
                alias[out] = acts[0]
            continue
        # the single activation input comes straight from a kernel nothing else reads: fusion candidates
        owner = made.get(acts[0]) if len(acts) == 1 and readers.get(acts[0]) == 1 else None
        if owner is not None and kernels[owner].kind in ("conv", "dwconv", "gemm"):
            k = kernels[owner]
            if op in FOLDABLE_AFFINE and not k.act and not k.residual:
                kernels[owner] = replace(k, output=out)  # batch-norm / bias: folded into the weights
                made[out] = owner
                continue
            if op in FUSABLE_ACTIVATIONS and not k.act:
                kernels[owner] = replace(k, act=op, output=out)
                made[out] = owner
                continue
        if op == "Add" and len(raw) == 2 and shapes.get(raw[0]) == shapes.get(raw[1]):
            fusable = [made[a] for a in acts if a in made and readers.get(a) == 1
                       and kernels[made[a]].kind in ("conv", "dwconv") and not kernels[made[a]].act
                       and not kernels[made[a]].residual]
            if fusable:
                owner = max(fusable)
                other = acts[1] if made.get(acts[0]) == owner else acts[0]
                kernels[owner] = replace(fuse_residual(kernels[owner], other, ""), output=out)
                made[out] = owner
                continue
        n_out = elems(out)
        a_in = sum(elems(a) for a in acts)
        w = sum(float(np.prod(constants[i])) for i in node.input if i in constants)
        in_shape = shapes.get(raw[0], ()) if raw else ()
        out_shape = shapes.get(out, ())
        n = int(in_shape[0]) if in_shape else 1
        if op == "Conv":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            wshape = constants.get(node.input[1]) or shapes.get(node.input[1], (1, 1, 1, 1))
            group = int(attrs.get("group", 1))
            stride = int(attrs.get("strides", [1])[0])
            cin = int(in_shape[1]) if len(in_shape) > 1 else int(wshape[1] * group)
            kern = _conv_kernel(n, cin, int(wshape[0]), group, int(wshape[2]) if len(wshape) > 2 else 1, stride,
                                _hw(in_shape), _hw(out_shape), w, tuple(acts), out)
        elif op in ("Gemm", "MatMul"):
            red = int(in_shape[-1]) if in_shape else 0  # reduction dim (torch exports Gemm with transA=0)
            kern = Kernel("gemm", 2.0 * n_out * red, a_in + n_out, w, n_out, red,
                          int(out_shape[-1]) if out_shape else 0, 1, 1, 1, 1, n, inputs=tuple(acts), output=out)
        elif op in POOL_OPS:
            kern = Kernel("pool", a_in, a_in + n_out, 0, n_out, int(in_shape[1]) if len(in_shape) > 1 else 0,
                          int(out_shape[1]) if len(out_shape) > 1 else 0, _hw(in_shape), _hw(out_shape),
                          1, 1, n, inputs=tuple(acts), output=out)
        else:
            kind = "eltwise" if op in FUSABLE_ACTIVATIONS or op in FOLDABLE_AFFINE else "other"
            c = int(out_shape[1]) if len(out_shape) > 1 else 0
            kern = Kernel(kind, max(n_out, a_in), a_in + n_out, w, n_out, c, c, _hw(in_shape), _hw(out_shape),
                          1, 1, n, act=op if kind == "eltwise" else "", inputs=tuple(acts), output=out)
        made[out] = len(kernels)
        kernels.append(kern)
    return kernels


def kernels_from_onnx(model, batch: int = 1) -> list[Kernel]:
    """Fused kernels of an ONNX ModelProto at a fixed batch size (symbolic dims become `batch`)."""
    model, shapes = _inferred_shapes(model, batch)
    return _onnx_kernels(model, shapes)


def onnx_kernels_and_peak(model, batch: int = 1) -> tuple[list[Kernel], float]:
    """Fused kernels and their liveness peak of activation elements, from one shape inference."""
    model, shapes = _inferred_shapes(model, batch)
    kernels = _onnx_kernels(model, shapes)
    return kernels, peak_activation_elems(kernels, _graph_inputs(model, shapes))


def liveness_peak_elems(model, batch: int = 1) -> float:
    """Peak number of activation elements alive at once, over the fused kernels in graph order."""
    return onnx_kernels_and_peak(model, batch)[1]


# ----------------------------------------------------------------------------- torch
TORCH_ACTIVATIONS = {"ReLU": "Relu", "ReLU6": "Clip", "Hardtanh": "Clip", "SiLU": "Sigmoid", "Sigmoid": "Sigmoid",
                     "Hardswish": "HardSwish", "Hardsigmoid": "HardSigmoid", "LeakyReLU": "LeakyRelu",
                     "Tanh": "Tanh", "ELU": "Elu", "GELU": "Gelu"}


def _param_elems(m) -> float:
    return float(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0))


class _TorchTracer:
    """Forward hooks that build the fused kernel list while the module runs once.

    Tensors are named by their storage: in-place activations and `out += identity` keep it, so an
    activation finds the kernel whose output it reads. Residual blocks (torchvision BasicBlock,
    Bottleneck, InvertedResidual) add their skip functionally, so their hooks apply the fusion rule.
    """

    def __init__(self, input_name: str):
        self.kernels: list[Kernel] = []
        self.names: dict[int, str] = {}
        self.made: dict[str, int] = {}
        self.blocks: list[tuple[int, str]] = []
        self.input_name = input_name

    def name(self, t) -> str:
        return self.names.get(t.data_ptr(), self.input_name)

    def emit(self, kern: Kernel, out) -> None:
        name = f"t{len(self.kernels)}"
        self.kernels.append(replace(kern, output=name))
        self.names[out.data_ptr()] = name
        self.made[name] = len(self.kernels) - 1

    def retarget(self, owner: int, out, **changes) -> None:
        self.kernels[owner] = replace(self.kernels[owner], **changes)
        self.names[out.data_ptr()] = self.kernels[owner].output

    def on_conv(self, m, inp, out):
        x = inp[0]
        kern = _conv_kernel(x.shape[0], m.in_channels, m.out_channels, m.groups, m.kernel_size[0], m.stride[0],
                            x.shape[2] * x.shape[3], out.shape[2] * out.shape[3], _param_elems(m),
                            (self.name(x),), "")
        self.emit(kern, out)

    def on_linear(self, m, inp, out):
        n, o = inp[0].shape[0], float(out.numel())
        self.emit(Kernel("gemm", 2.0 * o * m.in_features, inp[0].numel() + o, _param_elems(m), o,
                         m.in_features, m.out_features, 1, 1, 1, 1, n, inputs=(self.name(inp[0]),)), out)

    def on_pool(self, m, inp, out):
        x = inp[0]
        self.emit(Kernel("pool", float(x.numel()), float(x.numel() + out.numel()), 0, float(out.numel()),
                         x.shape[1], out.shape[1], x.shape[2] * x.shape[3], out.shape[2] * out.shape[3], 1, 1,
                         x.shape[0], inputs=(self.name(x),)), out)

    def _owner(self, x) -> int | None:
        owner = self.made.get(self.name(x))
        if owner is not None and self.kernels[owner].kind in ("conv", "dwconv", "gemm"):
            return owner
        return None

    def on_norm(self, m, inp, out):
        owner = self._owner(inp[0])
        if owner is not None and not self.kernels[owner].act:
            self.retarget(owner, out)
        else:
            o = float(out.numel())
            self.emit(Kernel("eltwise", o, 2 * o, 2 * out.shape[1], o, out.shape[1], out.shape[1],
                             inputs=(self.name(inp[0]),)), out)

    def on_act(self, m, inp, out):
        op = TORCH_ACTIVATIONS[type(m).__name__]
        owner = self._owner(inp[0])
        if owner is not None and not self.kernels[owner].act:
            self.retarget(owner, out, act=op)
        else:
            x, o = inp[0], float(out.numel())
            hw = x.shape[2] * x.shape[3] if x.dim() == 4 else 1
            self.emit(Kernel("eltwise", o, 2 * o, 0, o, x.shape[1], x.shape[1], hw, hw, 1, 1, x.shape[0], act=op,
                             inputs=(self.name(x),)), out)

    def on_block_start(self, m, inp):
        self.blocks.append((len(self.kernels), self.name(inp[0])))

    def on_block_end(self, m, inp, out):
        start, block_in = self.blocks.pop()
        if not (getattr(m, "use_res_connect", True)):
            return
        convs = [i for i in range(start, len(self.kernels)) if self.kernels[i].kind in ("conv", "dwconv")]
        downsample = getattr(m, "downsample", None) is not None
        target = convs[-1]
        act = "" if hasattr(m, "use_res_connect") else "Relu"  # ResNet blocks: relu after the add
        if downsample:  # add(main path, downsample conv): fused into the downsample conv, which runs last
            main = convs[-2]
            self.kernels[main] = replace(self.kernels[main], act="")
            other = self.kernels[main].output
        else:
            other = block_in
        fused = fuse_residual(replace(self.kernels[target], act=""), other, act)
        self.kernels[target] = fused
        self.names[out.data_ptr()] = fused.output


def kernels_from_torch(module, input_shape: tuple[int, ...]) -> tuple[list[Kernel], float]:
    """Fused kernels of a torch module by forward hooks, and their liveness peak of activation elements."""
    tracer = _TorchTracer("input")
    hooks = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(tracer.on_conv))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(tracer.on_linear))
        elif isinstance(m, (nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
            hooks.append(m.register_forward_hook(tracer.on_pool))
        elif isinstance(m, nn.BatchNorm2d):
            hooks.append(m.register_forward_hook(tracer.on_norm))
        elif type(m).__name__ in TORCH_ACTIVATIONS:
            hooks.append(m.register_forward_hook(tracer.on_act))
        elif isinstance(m, (BasicBlock, Bottleneck, InvertedResidual)):
            hooks.append(m.register_forward_pre_hook(tracer.on_block_start))
            hooks.append(m.register_forward_hook(tracer.on_block_end))
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            module(torch.zeros(input_shape))
    finally:
        module.train(was_training)
        for h in hooks:
            h.remove()
    kernels = tracer.kernels
    return kernels, peak_activation_elems(kernels, {"input": float(np.prod(input_shape))})
