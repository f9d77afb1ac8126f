"""What DisWOT compares between teacher and student on one minibatch: logits, the feature map that
enters the global average pool (the penultimate feature), and Grad-CAM maps of a few classes.

Grad-CAM (Selvaraju et al. 2017) of class c on feature map A: ReLU(sum_k alpha_ck A_k) with
alpha_ck = mean over h,w of dy_c/dA_k. Only the head (pool -> logits) sits between A and y, so the
gradients come from a backward pass through the head alone: in torch by cutting the graph at A, for an
ONNX teacher by central differences through the head subgraph (pooled vector -> logits), which
onnx.utils extracts; that works for any head, linear or not, without gradients from the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn

MAX_CAM_CLASSES = 32  # Grad-CAM per class is one small backward pass; bound it for 1000-class teachers


@dataclass(frozen=True)
class Signals:
    logits: torch.Tensor  # (B, K)
    feature: torch.Tensor | None  # (B, C, H, W): what enters the global average pool
    cams: torch.Tensor | None  # (B, N, H, W): Grad-CAM of the N classes in `classes`
    source: str  # how they were obtained, for search.json

    def describe(self) -> dict:
        return {"logits": list(self.logits.shape), "source": self.source,
                "feature": list(self.feature.shape) if self.feature is not None else None,
                "cams": list(self.cams.shape) if self.cams is not None else None}


def cam_classes(y: torch.Tensor) -> torch.Tensor:
    """The classes whose Grad-CAMs are compared: those present in the minibatch (at most 32)."""
    return torch.unique(y)[:MAX_CAM_CLASSES]


def grad_cam(feature: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """feature (B, C, H, W) and alpha (N, B, C), the spatial means of N class scores' gradients -> (B, N, H, W)."""
    return torch.relu(torch.einsum("nbc,bchw->bnhw", alpha, feature))


def _last_global_pool(module: nn.Module) -> nn.Module | None:
    # ConvNet.pool and torchvision's avgpool are registered after the body (and its SE pools).
    pools = [m for m in module.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    return pools[-1] if pools else None


def module_signals(module: nn.Module, x: torch.Tensor, classes: torch.Tensor, source: str) -> Signals:
    """Signals of a torch module in its current train/eval mode.

    A pre-hook on the last global pool swaps its input for a leaf that requires grad, and the weights are
    frozen for the pass, so autograd records only the head: per-class gradients cost almost nothing.
    """
    pool = _last_global_pool(module)
    captured: list[torch.Tensor] = []

    def cut(_m, args):
        a = args[0].detach().requires_grad_(True)
        captured.append(a)
        return (a, *args[1:])

    try:
        hook = pool.register_forward_pre_hook(cut) if pool is not None else None
    except RuntimeError:  # TorchScript modules take no hooks
        hook = None
    flags = [(p, p.requires_grad) for p in module.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with torch.enable_grad():
            logits = module(x)
    finally:
        if hook is not None:
            hook.remove()
        for p, flag in flags:
            p.requires_grad_(flag)
    a = captured[-1] if captured else None
    if a is None or a.ndim != 4 or a.shape[0] != x.shape[0] or not logits.requires_grad:
        return Signals(logits.detach().float(), None, None, f"{source}: logits only (no global pool found)")
    alpha = torch.stack([torch.autograd.grad(logits[:, int(c)].sum(), a, retain_graph=True)[0].mean(dim=(2, 3))
                         for c in classes])
    feature = a.detach().float()
    return Signals(logits.detach().float(), feature, grad_cam(feature, alpha.float()).detach(),
                   f"{source}: feature map entering the global pool, Grad-CAM by autograd through the head")


# ----------------------------------------------------------------------------- ONNX teachers
def _constant_ints(model, name: str) -> list[int] | None:
    for t in model.graph.initializer:
        if t.name == name:
            return [int(v) for v in numpy_helper.to_array(t).ravel()]
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return [int(v) for v in numpy_helper.to_array(node.attribute[0].t).ravel()]
    return None


def find_global_pool(model) -> tuple[str, str] | None:
    """(input, output) tensor names of the last global average pool over H and W, if the graph has one."""
    found = None
    for node in model.graph.node:
        if node.op_type == "GlobalAveragePool":
            found = (node.input[0], node.output[0])
        elif node.op_type == "ReduceMean":
            attrs = {a.name: a for a in node.attribute}
            axes = list(attrs["axes"].ints) if "axes" in attrs else (
                _constant_ints(model, node.input[1]) if len(node.input) > 1 and node.input[1] else None)
            if axes is not None and sorted(a % 4 for a in axes) == [2, 3]:
                found = (node.input[0], node.output[0])
    return found


def onnx_signals(path: Path, x: torch.Tensor, classes: torch.Tensor) -> Signals:
    """Logits, the pooled feature map (added as a graph output by name) and Grad-CAM of an ONNX model."""
    # Extractor needs every intermediate tensor's type; exporters may leave them out, inference restores them
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    logits_name = model.graph.output[0].name
    xs = x.detach().float().cpu().numpy()
    input_name = next(i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer})
    pool = find_global_pool(model)
    if pool is None:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        logits = session.run([logits_name], {input_name: xs})[0]
        return Signals(torch.from_numpy(logits).float(), None, None,
                       "onnx: logits only (no global average pool in the graph)")
    a_name, p_name = pool
    head = onnx.utils.Extractor(model).extract_model([p_name], [logits_name])
    known = {o.name for o in model.graph.output}
    for name in (a_name, p_name):
        if name not in known:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    logits, feature, pooled = session.run([logits_name, a_name, p_name], {input_name: xs})
    head_session = ort.InferenceSession(head.SerializeToString(), providers=["CPUExecutionProvider"])
    jac = _head_jacobian(head_session, p_name, pooled, classes.numpy())  # (N, B, C)
    # p = mean over h,w of A, so dy/dA_khw = (dy/dp_k) / HW everywhere: alpha is the Jacobian over HW.
    alpha = torch.from_numpy(jac / (feature.shape[2] * feature.shape[3])).float()
    feature_t = torch.from_numpy(feature).float()
    return Signals(torch.from_numpy(logits).float(), feature_t, grad_cam(feature_t, alpha),
                   f"onnx: '{a_name}' (enters the global pool) added as a graph output; Grad-CAM by central "
                   "differences through the head subgraph")


def _head_jacobian(session, input_name: str, pooled: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """d logits[:, classes] / d pooled by central differences, batched over channels: (N, B, C)."""
    b, c = pooled.shape[0], int(np.prod(pooled.shape[1:]))
    flat = pooled.reshape(b, c).astype(np.float64)
    step = 1e-2 * max(float(np.abs(flat).mean()), 1e-6)
    jac = np.zeros((len(classes), b, c))
    chunk = max(1, 32768 // (2 * b))
    for start in range(0, c, chunk):
        ks = np.arange(start, min(c, start + chunk))
        delta = np.zeros((len(ks), 1, c))
        delta[np.arange(len(ks)), 0, ks] = step
        rows = np.concatenate([flat[None] + delta, flat[None] - delta])  # (2k, B, C)
        out = session.run(None, {input_name: rows.reshape(-1, *pooled.shape[1:]).astype(np.float32)})[0]
        out = out.astype(np.float64).reshape(2, len(ks), b, -1)
        diff = (out[0] - out[1]) / (2 * step)  # (k, B, K)
        jac[:, :, ks] = diff[:, :, classes].transpose(2, 1, 0)
    return jac


def teacher_signals(teacher, x: torch.Tensor, classes: torch.Tensor, device: torch.device) -> Signals:
    """The teacher's signals on CPU tensors: torch teachers in eval mode on `device`, ONNX through onnxruntime."""
    if teacher.module is not None:
        teacher.module.eval()
        s = module_signals(teacher.module, x.to(device), classes, "torch teacher")
        return Signals(*(t.cpu() if t is not None else None for t in (s.logits, s.feature, s.cams)), s.source)
    return onnx_signals(teacher.onnx_path, x, classes)
