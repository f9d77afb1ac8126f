"""Turn a network into a list of kernels with their FLOPs and bytes, from ONNX or from torch.

Both extractors produce the same `Kernel` records, so the search (torch candidates, thousands of them)
and the budget check (the exported ONNX) are priced by one model. A kernel is what a runtime launches:
a convolution with its folded batch-norm and fused activation counts once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
# Nodes that runtimes fold away or that only rewrite shape metadata: no kernel launched.
FREE_OPS = {"Constant", "Identity", "Shape", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Dropout",
            "QuantizeLinear", "DequantizeLinear"}
# Activations a runtime fuses into the convolution or GEMM that feeds them.
FUSABLE_ACTIVATIONS = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu"}


@dataclass(frozen=True)
class Kernel:
    kind: str  # conv, dwconv, gemm, pool, eltwise, other
    flops: float
    activation_elems: float  # input + output activations, elements
    weight_elems: float
    output_elems: float


def _conv(out_elems: float, cin_per_group: int, k: int, groups: int, cin: int, w_elems: float,
          in_elems: float) -> Kernel:
    kind = "dwconv" if groups > 1 and groups == cin else "conv"
    return Kernel(kind, 2.0 * out_elems * cin_per_group * k, in_elems + out_elems, w_elems, out_elems)


# ----------------------------------------------------------------------------- ONNX
def _inferred_shapes(model, batch: int):
    """A copy of the model with symbolic dims set to `batch`, and every fully known tensor shape."""
    import onnx
    from onnx import shape_inference

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


def kernels_from_onnx(model, batch: int = 1) -> list[Kernel]:
    """Kernels of an ONNX ModelProto at a fixed batch size (symbolic dims become `batch`)."""
    from onnx import numpy_helper

    model, shapes = _inferred_shapes(model, batch)
    weights = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
    shapes.update(weights)
    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    producer = {out: node.op_type for node in model.graph.node for out in node.output}

    def elems(name: str) -> float:
        return float(np.prod(shapes.get(name, (0,))))

    kernels = []
    for node in model.graph.node:
        op = node.op_type
        if op in FREE_OPS:
            continue
        out = elems(node.output[0])
        acts = [i for i in node.input if i and i not in weights]
        w = sum(elems(i) for i in node.input if i in weights)
        a_in = sum(elems(i) for i in acts)
        if op in FUSABLE_ACTIVATIONS and acts and producer.get(acts[0]) in ("Conv", "Gemm", "MatMul") \
                and consumers.get(acts[0]) == 1:
            continue  # fused into the producing kernel
        if op == "Conv":
            attrs = {a.name: a for a in node.attribute}
            group = attrs["group"].i if "group" in attrs else 1
            wshape = shapes.get(node.input[1], (1, 1, 1, 1))
            cin = shapes.get(node.input[0], (0, wshape[1] * group))[1]
            kernels.append(_conv(out, wshape[1], int(np.prod(wshape[2:])), group, cin, w, a_in))
        elif op in ("Gemm", "MatMul"):
            k = shapes.get(node.input[0], (0,))[-1]  # reduction dim (torch exports Gemm with transA=0)
            kernels.append(Kernel("gemm", 2.0 * out * k, a_in + out, w, out))
        elif op in ("GlobalAveragePool", "AveragePool", "MaxPool", "ReduceMean", "GlobalMaxPool"):
            kernels.append(Kernel("pool", a_in, a_in + out, 0, out))
        else:
            kernels.append(Kernel("eltwise", max(out, a_in), a_in + out, w, out))
    return kernels


def liveness_peak_elems(model, batch: int = 1) -> float:
    """Peak number of activation elements alive at once, walking the graph in its (topological) order."""
    model, shapes = _inferred_shapes(model, batch)
    size = {name: float(np.prod(shape)) for name, shape in shapes.items()}
    initializers = {t.name for t in model.graph.initializer}
    last_use = {}
    for i, node in enumerate(model.graph.node):
        for name in node.input:
            last_use[name] = i
    outputs = {o.name for o in model.graph.output}
    live = {v.name for v in model.graph.input if v.name not in initializers}
    peak = sum(size.get(n, 0) for n in live)
    for i, node in enumerate(model.graph.node):
        live |= {o for o in node.output if o}
        peak = max(peak, sum(size.get(n, 0) for n in live))
        live = {n for n in live if last_use.get(n, -1) > i or n in outputs}
    return peak


# ----------------------------------------------------------------------------- torch
def kernels_from_torch(module, input_shape: tuple[int, ...]) -> tuple[list[Kernel], float]:
    """Kernels of a torch module by forward hooks, and its peak activation elements (approximate).

    Batch-norm and activations are folded into the convolution before them, as the exported ONNX and
    the runtimes do; residual additions are counted from the blocks that perform them.
    """
    import torch
    from torch import nn
    from torchvision.models.mobilenetv2 import InvertedResidual
    from torchvision.models.resnet import BasicBlock

    kernels: list[Kernel] = []
    peak = [0.0]

    def on_conv(m: nn.Conv2d, inp, out):
        o, i = float(out.numel()), float(inp[0].numel())
        k = m.kernel_size[0] * m.kernel_size[1]
        kernels.append(_conv(o, m.in_channels // m.groups, k, m.groups, m.in_channels, float(m.weight.numel()), i))
        peak[0] = max(peak[0], i + o)

    def on_linear(m: nn.Linear, inp, out):
        o = float(out.numel())
        kernels.append(Kernel("gemm", 2.0 * o * m.in_features, inp[0].numel() + o, float(m.weight.numel()), o))

    def on_pool(m, inp, out):
        kernels.append(Kernel("pool", float(inp[0].numel()), inp[0].numel() + out.numel(), 0, float(out.numel())))

    def on_residual(m, inp, out):
        if isinstance(m, BasicBlock) or getattr(m, "use_res_connect", False):
            o = float(out.numel())
            kernels.append(Kernel("eltwise", o, 3 * o, 0, o))
            peak[0] = max(peak[0], 3 * o)  # block input kept alive for the skip

    hooks = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(on_conv))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(on_linear))
        elif isinstance(m, (nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.MaxPool2d)):
            hooks.append(m.register_forward_hook(on_pool))
        elif isinstance(m, (BasicBlock, InvertedResidual)):
            hooks.append(m.register_forward_hook(on_residual))
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            module(torch.zeros(input_shape))
    finally:
        module.train(was_training)
        for h in hooks:
            h.remove()
    return kernels, peak[0]
