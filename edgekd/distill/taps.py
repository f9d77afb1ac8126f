"""Teacher outputs for training: logits and, for feature methods, intermediate feature maps.

A torch teacher is tapped with forward hooks on named modules; an ONNX teacher gets the named tensors added as
graph outputs and runs (batched) through onnxruntime. Layers pair automatically by spatial size (the last layer
of each resolution both networks share, deepest first) or by name from distill.feature_pairs.
"""

from __future__ import annotations

import difflib
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto
from torch import nn

from edgekd.errors import InputError

Layer = tuple[str, tuple[int, ...]]  # (name, output shape without the batch dimension: C, H, W)


@dataclass
class TeacherOut:
    logits: torch.Tensor
    feats: list[torch.Tensor]


# ----------------------------------------------------------------------------- discovering layers
@torch.no_grad()
def probe_torch(module: nn.Module, input_shape: tuple[int, int, int], who: str) -> list[Layer]:
    """4-D outputs of named submodules, in the order they finish (a stage container after its blocks)."""
    if isinstance(module, torch.jit.ScriptModule):
        raise InputError(f"{who} is TorchScript: forward hooks cannot see inside it, so feature methods cannot "
                         "tap its layers; export it to ONNX (tensors are then read by name) or use a logit method")
    seen: list[Layer] = []
    hooks = []
    for name, m in module.named_modules():
        if name:
            hooks.append(m.register_forward_hook(
                lambda _m, _a, out, name=name: seen.append((name, tuple(out.shape[1:])))
                if isinstance(out, torch.Tensor) and out.ndim == 4 else None))
    was_training = module.training
    try:
        module.eval()
        p = next(module.parameters())
        module(torch.zeros(2, *input_shape, device=p.device, dtype=p.dtype))
    finally:
        module.train(was_training)
        for h in hooks:
            h.remove()
    if not seen:
        raise InputError(f"{who}: no named submodule produced a feature map (a torch.export program or a fused "
                         "module hides its layers); export it to ONNX or use a logit method")
    # A module run more than once per forward has no one output: torchvision's Bottleneck calls its one ReLU
    # before and after its stride-2 convolution, and a hook keeps only the last call, so pairing by the first
    # call's size paired a 4x4 map as an 8x8 one. Such a module is no tap; its block's own output is.
    calls = Counter(name for name, _ in seen)
    return [(name, shape) for name, shape in seen if calls[name] == 1]


def probe_onnx(model, input_shape: tuple[int, int, int]) -> list[Layer]:
    """4-D float tensors produced by top-level nodes, in node (topological) order, via shape inference with the
    input fixed to (1, C, H, W)."""
    model = _with_fixed_input(model, input_shape)
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.output]:
        t = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if t.elem_type in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16) and len(dims) == 4 \
                and all(dims[1:]):
            shapes[vi.name] = tuple(dims[1:])
    return [(o, shapes[o]) for node in model.graph.node for o in node.output if o in shapes]


def _with_fixed_input(model, input_shape):
    model = onnx.ModelProto.FromString(model.SerializeToString())
    init = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in init)
    for d, v in zip(inp.type.tensor_type.shape.dim, (1, *input_shape), strict=True):
        d.ClearField("dim_param")
        d.dim_value = v
    return model


def pair_layers(teacher: list[Layer], student: list[Layer], max_pairs: int) -> list[tuple[Layer, Layer]]:
    """For each spatial size (larger than 1x1) both networks produce, pair the last layer of that size in each;
    keep the deepest max_pairs pairs, ordered shallow to deep."""
    def last_by_size(layers):
        out = {}
        for name, shape in layers:
            if shape[1] * shape[2] > 1:
                out[shape[1:]] = (name, shape)
        return out

    t, s = last_by_size(teacher), last_by_size(student)
    sizes = sorted(set(t) & set(s), key=lambda hw: -hw[0] * hw[1])
    return [(t[hw], s[hw]) for hw in sizes][-max_pairs:]


def named_pairs(teacher: list[Layer], student: list[Layer], names: list[tuple[str, str]],
                who: str) -> list[tuple[Layer, Layer]]:
    """distill.feature_pairs resolved against what the networks produce; same spatial size required."""
    t, s = dict(teacher), dict(student)
    pairs = []
    for tn, sn in names:
        for name, table, side in ((tn, t, who), (sn, s, "the student")):
            if name not in table:
                close = difflib.get_close_matches(name, list(table), n=3)
                hint = f"; close: {', '.join(close)}" if close else f"; it has {', '.join(list(table)[:8])}, ..."
                raise InputError(f"distill.feature_pairs: '{name}' is not a 4-D feature map of {side}{hint}")
        if t[tn][1:] != s[sn][1:]:
            raise InputError(f"distill.feature_pairs: ({tn}, {sn}) have spatial sizes {t[tn][1:]} and {s[sn][1:]}; "
                             "pair layers of the same resolution")
        pairs.append(((tn, t[tn]), (sn, s[sn])))
    return pairs


# ----------------------------------------------------------------------------- running the teacher
class TorchTeacher:
    """A torch teacher (or an assistant): logits plus hooked feature maps, under inference_mode."""

    def __init__(self, module: nn.Module, layers: list[str], device: torch.device, channels_last: bool):
        self.module = module.to(device).eval()
        if channels_last:
            self.module.to(memory_format=torch.channels_last)
        for p in self.module.parameters():
            p.requires_grad_(False)  # frozen: a stray backward can never give the teacher a gradient
        self.layers = layers
        self._feats: dict[str, torch.Tensor] = {}
        modules = dict(self.module.named_modules())
        self._hooks = [modules[n].register_forward_hook(self._keep(n)) for n in layers]

    def _keep(self, name):
        def hook(_m, _a, out):
            self._feats[name] = out

        return hook

    def __call__(self, x: torch.Tensor) -> TeacherOut:
        # inference_mode: no autograd bookkeeping at all (cheaper than no_grad); the outputs are cloned out of it
        # because a loss may save them for its backward, which inference tensors refuse
        self._feats = {}
        with torch.inference_mode():
            logits = self.module(x)
            feats = [self._feats[n] for n in self.layers]
        return TeacherOut(logits.float().clone(), [f.clone() for f in feats])

    def close(self) -> None:
        for h in self._hooks:
            h.remove()


class OnnxTeacher:
    """An ONNX teacher through onnxruntime, one session call per batch; feature tensors exposed as extra graph
    outputs by name. Refuses tensors that cannot be graph outputs (inside a subgraph, weights, unknown)."""

    def __init__(self, path: Path, layers: list[str], threads: int):
        model = onnx.load(str(path))
        typed = {vi.name: vi for vi in onnx.shape_inference.infer_shapes(model).graph.value_info}
        existing = {o.name for o in model.graph.output}
        produced = {o for node in model.graph.node for o in node.output}
        weights = {i.name for i in model.graph.initializer}
        for name in layers:
            if name in existing:
                continue
            if name in weights:
                raise InputError(f"--teacher {path}: '{name}' is a weight (initializer), not an activation; "
                                 "name a feature map tensor")
            if name not in produced:
                where = "inside a control-flow subgraph (If/Loop/Scan), which cannot be a graph output" \
                    if _in_subgraph(model.graph, name) else "not a tensor of this graph"
                raise InputError(f"--teacher {path}: tensor '{name}' is {where}; feature methods cannot read it")
            model.graph.output.append(typed.get(name) or onnx.helper.make_empty_tensor_value_info(name))
        self.first = model.graph.output[0].name
        self.outputs = [self.first, *layers]
        self._dir = tempfile.TemporaryDirectory(prefix="edgekd-teacher-")
        tapped = Path(self._dir.name) / "teacher-taps.onnx"
        onnx.save(model, str(tapped), save_as_external_data=model.ByteSize() > 1_500_000_000)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(str(tapped), opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise InputError(f"--teacher {path}: onnxruntime cannot run it with the feature outputs {layers} "
                             f"({type(e).__name__}: {str(e).splitlines()[0]})") from None
        self.input_name = self.session.get_inputs()[0].name

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> TeacherOut:
        out = self.session.run(self.outputs, {self.input_name: np.ascontiguousarray(x.detach().float().cpu().numpy())})
        tensors = [torch.from_numpy(o).to(x.device, non_blocking=True) for o in out]
        return TeacherOut(tensors[0].float(), tensors[1:])

    def close(self) -> None:
        self._dir.cleanup()


def _in_subgraph(graph, name: str) -> bool:
    for node in graph.node:
        for attr in node.attribute:
            subs = [attr.g] if attr.HasField("g") else list(attr.graphs)
            for g in subs:
                if any(name in n.output for n in g.node) or _in_subgraph(g, name):
                    return True
    return False


# ----------------------------------------------------------------------------- wiring
def teacher_layers(teacher, input_shape: tuple[int, int, int], who: str) -> list[Layer]:
    """Feature maps a teacher (models.teacher.Teacher, or an nn.Module assistant) exposes."""
    module = teacher if isinstance(teacher, nn.Module) else teacher.module
    if module is not None:
        return probe_torch(module, input_shape, who)

    layers = probe_onnx(onnx.load(str(teacher.onnx_path)), input_shape)
    if not layers:
        raise InputError(f"{who}: shape inference found no 4-D feature maps in the ONNX graph, so feature methods "
                         "cannot pair layers; use a logit method or name tensors in distill.feature_pairs")
    return layers


def feature_pairs(teacher, student: nn.Module, input_shape: tuple[int, int, int], names, max_pairs: int,
                  who: str) -> list[tuple[Layer, Layer]]:
    t_layers = teacher_layers(teacher, input_shape, who)
    s_layers = probe_torch(student, input_shape, "the student")
    if names:
        return named_pairs(t_layers, s_layers, names, who)
    pairs = pair_layers(t_layers, s_layers, max_pairs)
    if not pairs:
        t_sizes = sorted({s[1:] for _, s in t_layers})
        s_sizes = sorted({s[1:] for _, s in s_layers})
        raise InputError(f"feature methods: {who} (feature map sizes {t_sizes}) and the student ({s_sizes}) share "
                         "no spatial size to pair; name pairs in distill.feature_pairs or use a logit method")
    return pairs


def teacher_runner(teacher, layers: list[str], device: torch.device, channels_last: bool):
    """TorchTeacher or OnnxTeacher for a models.teacher.Teacher or an nn.Module."""
    module = teacher if isinstance(teacher, nn.Module) else teacher.module
    if module is not None:
        if layers and isinstance(module, torch.jit.ScriptModule):
            probe_torch(module, (1, 1, 1), "the teacher")  # raises the TorchScript explanation
        return TorchTeacher(module, layers, device, channels_last)
    return OnnxTeacher(Path(teacher.onnx_path), layers, threads=torch.get_num_threads())
