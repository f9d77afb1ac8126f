"""Sampled networks from the search spaces, and single fused kernels as ONNX models, for calibration and
for scoring the cost model (benchmarks/cost_accuracy.py).

Networks are exported with edgekd's own exporter (so the graphs are what `edgekd build` ships) and
cached by architecture in the XDG cache: an export costs seconds, timing it a fraction of that.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch
from onnx import TensorProto, helper, numpy_helper

from edgekd.cost.ops import Kernel
from edgekd.hostinfo import cache_dir
from edgekd.models.families import create_model
from edgekd.onnx_export import export_onnx

INPUT_SHAPES = [(1, 8, 8), (3, 16, 16), (3, 32, 32), (3, 64, 64)]
NUM_CLASSES = 10


def sample_arch(family: str, rng: np.random.Generator) -> dict:
    """A random member of a search-space family (wider than the search's first grid, same builders)."""
    if family == "resnet":
        stages = int(rng.integers(2, 5))
        widths = [int(rng.choice([8, 16, 24, 32, 48, 64]))]
        for _ in range(stages - 1):
            widths.append(min(512, max(8, int(widths[-1] * rng.choice([1.0, 1.5, 2.0])) // 8 * 8)))
        return {"family": "resnet", "widths": widths, "blocks": [int(rng.integers(1, 4)) for _ in range(stages)]}
    if family == "mobilenetv2":
        return {"family": "mobilenetv2", "width": float(rng.choice([0.25, 0.35, 0.5, 0.75, 1.0])),
                "depth": float(rng.choice([0.25, 0.5, 0.75, 1.0])), "expand": int(rng.choice([2, 3, 4, 6])),
                "last_channel": int(rng.choice([128, 256, 512, 1024, 1280]))}
    raise ValueError(f"no sampler for family '{family}'")


def sample_networks(n: int, seed: int, exclude: set[str] = frozenset()) -> list[tuple[dict, tuple[int, ...]]]:
    """`n` distinct (arch, input shape) pairs, alternating families, none whose key is in `exclude`."""
    rng = np.random.default_rng(seed)
    out, seen = [], set(exclude)
    families = ["resnet", "mobilenetv2"]
    while len(out) < n:
        arch = sample_arch(families[len(out) % 2], rng)
        shape = INPUT_SHAPES[int(rng.integers(len(INPUT_SHAPES)))]
        key = network_key(arch, shape)
        if key not in seen:
            seen.add(key)
            out.append((arch, shape))
    return out


def network_key(arch: dict, input_shape: tuple[int, ...]) -> str:
    return hashlib.sha1(json.dumps([arch, list(input_shape)], sort_keys=True).encode()).hexdigest()[:16]


def build_network(arch: dict, input_shape: tuple[int, ...], seed: int = 0):
    """The torch module, with batch-norm statistics set as training would leave them (non-trivial), so the
    exported graph carries the biases a trained student's does."""
    model = create_model(arch, input_shape[0], NUM_CLASSES, input_shape[1:], seed=seed).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model


def exported_network(arch: dict, input_shape: tuple[int, ...], cache: Path) -> Path:
    """The network's ONNX file, exported once per (arch, input shape, torch version) into `cache`."""
    path = cache / f"{network_key(arch, input_shape)}-{torch.__version__.split('+')[0]}.onnx"
    if not path.is_file():
        tmp = path.with_name(path.stem + ".partial.onnx")
        export_onnx(build_network(arch, input_shape), input_shape, tmp, {"arch": arch})
        tmp.replace(path)
    return path


def network_cache() -> Path:
    path = cache_dir() / "cost-networks"
    path.mkdir(parents=True, exist_ok=True)
    return path


# ----------------------------------------------------------------------------- single kernels
def kernel_model(k: Kernel, seed: int = 0):
    """An ONNX model that runs exactly one fused kernel with `k`'s shape (the pattern ops.py prices)."""
    rng = np.random.default_rng(seed)
    side_in = max(1, round(math.sqrt(k.hw_in)))
    nodes, inits = [], []
    inputs = []

    def tensor(name: str, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))

    def const(name: str, shape, scale: float = 0.1):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    if k.kind in ("conv", "dwconv"):
        groups = k.cin if k.kind == "dwconv" else 1
        inputs.append(tensor("x", (k.batch, k.cin, side_in, side_in)))
        side_out = (side_in + 2 * (k.k // 2) - k.k) // k.stride + 1
        nodes.append(helper.make_node("Conv", ["x", const("w", (k.cout, k.cin // groups, k.k, k.k)),
                                               const("b", (k.cout,))], ["y0"], group=groups,
                                      kernel_shape=[k.k, k.k], pads=[k.k // 2] * 4, strides=[k.stride] * 2))
        out_shape = (k.batch, k.cout, side_out, side_out)
        last = "y0"
        if k.residual:
            inputs.append(tensor("r", out_shape))
            nodes.append(helper.make_node("Add", [last, "r"], ["y1"]))
            last = "y1"
    elif k.kind == "gemm":
        inputs.append(tensor("x", (k.batch, k.cin)))
        nodes.append(helper.make_node("Gemm", ["x", const("w", (k.cout, k.cin)), const("b", (k.cout,))], ["y0"],
                                      transB=1))
        out_shape, last = (k.batch, k.cout), "y0"
    elif k.kind == "pool":
        inputs.append(tensor("x", (k.batch, k.cin, side_in, side_in)))
        inits.append(numpy_helper.from_array(np.array([2, 3], np.int64), "axes"))
        nodes.append(helper.make_node("ReduceMean", ["x", "axes"], ["y0"], keepdims=1))
        out_shape, last = (k.batch, k.cin, 1, 1), "y0"
    elif k.kind == "eltwise":
        shape = (k.batch, k.cin, side_in, side_in)
        inputs += [tensor("x", shape), tensor("r", shape)]
        nodes.append(helper.make_node("Add", ["x", "r"], ["y0"]))
        out_shape, last = shape, "y0"
    else:
        raise ValueError(f"no single-kernel model for kind '{k.kind}'")
    if k.act and k.kind != "eltwise":  # an eltwise kernel's act names its op (Add)
        extra = []
        if k.act == "Clip":
            inits += [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("lo", 0.0), ("hi", 6.0))]
            extra = ["lo", "hi"]
        nodes.append(helper.make_node(k.act, [last, *extra], ["y"]))
    else:
        nodes[-1].output[0] = "y"  # no trailing node: the kernel writes the graph output itself
    graph = helper.make_graph(nodes, f"kernel_{k.kind}", inputs, [tensor("y", out_shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def kernel_inputs(model, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal([d.dim_value for d in v.type.tensor_type.shape.dim]).astype(np.float32)
            for v in model.graph.input]
