"""Load the teacher from what users have: ONNX, torch.export (.pt2), TorchScript, or a torchvision
architecture plus weights. Files are loaded without unpickling arbitrary objects; a pickled whole
module is refused unless the user says they trust it (--trust-pickle).
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
import torchvision
from onnx import numpy_helper
from safetensors.torch import load_file
from torch import nn
from torch.export.graph_signature import InputKind

from edgekd.config import TeacherSpec
from edgekd.errors import InputError
from edgekd.runtimes.onnxruntime_backend import OrtSession
from edgekd.validate import check_onnx, refuse_custom_ops

IMAGENET_NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
EMBEDDED = "embedded"  # placeholder source until the data set names its embedded teacher


@dataclass
class Teacher:
    source: str
    in_channels: int | None  # None (embedded teachers): whatever the data set has; set once the data is loaded
    input_size: tuple[int, int] | None  # fixed spatial size the teacher demands, if any
    num_classes: int | None
    default_norm: tuple | None  # (mean, std) the teacher was trained with, when known
    module: nn.Module | None = None  # torch teachers
    onnx_path: Path | None = None  # ONNX teachers run through onnxruntime
    _ort = None

    @property
    def params(self) -> int:
        if self.module is not None:
            return sum(p.numel() for p in self.module.parameters())

        model = onnx.load(str(self.onnx_path))
        return int(sum(numpy_helper.to_array(t).size for t in model.graph.initializer))

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher logits for a batch, on x's device."""
        if self.module is not None:
            return self.module(x).float()
        if self._ort is None:
            self._ort = OrtSession(self.onnx_path, threads=torch.get_num_threads())
        out = self._ort.run(x.detach().float().cpu().numpy())
        return torch.from_numpy(out).to(x.device)


def _first_conv_channels(module: nn.Module) -> int:
    """Input channels from the first 4-D (convolution) weight; works for TorchScript and export too."""
    for p in module.parameters():
        if p.ndim == 4:
            return int(p.shape[1])
    raise InputError("teacher: no convolution weights found; edgekd distils image classifiers")


def load_teacher(spec: TeacherSpec) -> Teacher:
    """The teacher a spec names (None: the embedded teacher of a built-in data set, trained later on it)."""
    src = spec.source
    if src is None:
        return Teacher(EMBEDDED, in_channels=None, input_size=None, num_classes=None, default_norm=None)
    if src.startswith("torchvision:"):
        return _torchvision(src.split(":", 1)[1], spec.weights)
    path = Path(src)
    if path.is_dir():
        raise InputError(f"--teacher '{src}': is a directory; give the model file (.onnx, .pt2, TorchScript)")
    if not path.is_file():
        raise InputError(f"--teacher '{src}': file not found")
    if path.stat().st_size == 0:
        raise InputError(f"--teacher '{src}': is empty (0 bytes); save or copy the model again")
    if spec.weights is not None:
        raise InputError("--teacher-weights is only for --teacher torchvision:NAME; a model file carries its weights")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return _onnx(path)
    if suffix == ".pt2":
        return _exported(path)
    return _torch_file(path, spec.trust_pickle)


class ExportedTeacher(nn.Module):
    """A torch.export program as a module: its graph has no train/eval switch (the program was captured in
    one mode, and `.eval()` on it raises), so this wrapper's train()/eval() do not reach into it, and a
    program captured for a fixed batch is fed that many samples at a time."""

    def __init__(self, program_module: nn.Module, batch: int | None, exported=None):
        super().__init__()
        self.program = program_module
        self.batch = batch
        self.exported = exported  # the ExportedProgram, which converts to ONNX as captured

    def train(self, mode: bool = True):
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch is None or len(x) == self.batch:
            return self.program(x)
        outs = []
        for i in range(0, len(x), self.batch):
            chunk = x[i:i + self.batch]
            pad = self.batch - len(chunk)  # the last chunk is padded with copies and the extra rows dropped
            if pad:
                chunk = torch.cat([chunk, chunk[-1:].expand(pad, *chunk.shape[1:])])
            outs.append(self.program(chunk)[:self.batch - pad])
        return torch.cat(outs)


def _quiet_torch_logs():
    """torch logs a full traceback for a damaged archive before raising; the one-line error says enough."""

    @contextlib.contextmanager
    def quiet():
        loggers = [logging.getLogger(n) for n in ("torch", "torch.export", "torch._export", "torch.serialization")]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.setLevel(logging.CRITICAL + 1)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)

    return quiet()


def _exported(path: Path) -> Teacher:
    if not zipfile.is_zipfile(path):
        raise InputError(f"--teacher '{path}': not a torch.export archive (not a zip file); save the model with "
                         "torch.export.save")
    try:
        with _quiet_torch_logs():
            program = torch.export.load(str(path))
            module = program.module()
    except Exception as e:  # the loader raises many types on a foreign or damaged file
        raise InputError(f"--teacher '{path}': not a readable torch.export archive "
                         f"({type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''})"
                         ) from None
    shape = _exported_input_shape(program)
    batch = shape[0] if shape and isinstance(shape[0], int) else None
    size = tuple(shape[2:]) if shape and len(shape) == 4 and all(isinstance(d, int) for d in shape[2:]) else None
    wrapped = ExportedTeacher(module, batch, program)
    return Teacher(str(path), _first_conv_channels(wrapped), size, None, None, module=wrapped)


def _exported_input_shape(program) -> list | None:
    """The user input's shape as recorded by export: ints where static, None where symbolic."""
    names = [s.arg.name for s in program.graph_signature.input_specs if s.kind == InputKind.USER_INPUT]
    for node in program.graph.nodes:
        if node.op == "placeholder" and names and node.name == names[0] and "val" in node.meta:
            return [d if isinstance(d, int) else None for d in node.meta["val"].shape]
    return None


def _onnx(path: Path) -> Teacher:


    check_onnx(path, "--teacher")  # also: external weights must stay inside the model's folder
    refuse_custom_ops(path, "--teacher")  # onnxruntime runs the teacher: a custom op would fail mid-search
    # Exporters may leave out the intermediate shapes the cost model prices layers by; infer them once.
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 1:
        raise InputError(f"--teacher '{path}': expected one image input, found {len(inputs)}")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[1] is None:
        raise InputError(f"--teacher '{path}': input must be (batch, channels, height, width), got {dims}")
    size = (dims[2], dims[3]) if dims[2] and dims[3] else None
    out = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    if model.graph.output[0].type.tensor_type.HasField("shape") and len(out) != 2:
        raise InputError(f"--teacher '{path}': output '{model.graph.output[0].name}' has rank {len(out)}; a teacher "
                         "gives (batch, classes) logits: export the classifier with its head")
    classes = out[-1] if out and out[-1] else None
    return Teacher(str(path), dims[1], size, classes, None, onnx_path=path)


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())
    except zipfile.BadZipFile:
        return False


def _torch_file(path: Path, trust_pickle: bool) -> Teacher:
    if _is_torchscript(path):
        try:
            module = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as e:
            raise InputError(f"--teacher '{path}': damaged TorchScript archive ({e})") from None
        return Teacher(str(path), _first_conv_channels(module), None, None, None, module=module)
    with open(path, "rb") as f:
        head = f.read(2)
    # torch.save writes a zip archive (or, in its legacy format, a pickle: protocol marker 0x80)
    if not zipfile.is_zipfile(path) and not head.startswith(b"\x80"):
        raise InputError(f"--teacher '{path}': not a model file torch can read (neither a zip archive nor a "
                         "pickle); give an .onnx, a torch.export .pt2 or a TorchScript file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        if not trust_pickle:
            raise InputError(f"--teacher '{path}': a pickled Python object, and loading it would run arbitrary "
                             "code; save it with torch.export or TorchScript, or pass --trust-pickle if you "
                             "trust this file") from None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # a damaged archive or a pickle of classes this environment lacks
            raise InputError(f"--teacher '{path}': cannot be loaded even with --trust-pickle "
                             f"({type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''})"
                             ) from None
    if isinstance(obj, dict):
        raise InputError(f"--teacher '{path}': holds a state_dict, not a model; use "
                         f"--teacher torchvision:NAME --teacher-weights {path}")
    if not isinstance(obj, nn.Module):
        raise InputError(f"--teacher '{path}': holds a {type(obj).__name__}, not a torch module")
    return Teacher(str(path), _first_conv_channels(obj), None, None, None, module=obj.eval())


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Weights from .safetensors, or a state_dict loaded with weights_only=True (never a pickle)."""
    if not path.is_file():
        raise InputError(f"--teacher-weights '{path}': file not found")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(f"--teacher-weights '{path}': not a safetensors file or plain state_dict ({e})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"--teacher-weights '{path}': expected a dict of tensors (a state_dict)")
    return state


def _torchvision(name: str, weights: Path | None) -> Teacher:
    if name not in torchvision.models.list_models():
        close = difflib.get_close_matches(name, torchvision.models.list_models(), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise InputError(f"--teacher torchvision:{name}: no such torchvision model{hint}")
    if weights is None:
        raise InputError(f"--teacher torchvision:{name} needs --teacher-weights FILE (.safetensors or state_dict); "
                         "this machine cannot download pretrained weights")
    state = load_state_dict(weights)
    head = [v for v in state.values() if v.ndim == 2]
    if not head:
        raise InputError(f"--teacher-weights '{weights}': no classifier weight matrix found")
    num_classes = head[-1].shape[0]
    module = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    problems = _state_mismatch(module.state_dict(), state)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise InputError(f"--teacher-weights '{weights}' do not fit torchvision:{name}: {len(problems)} "
                         f"mismatched key(s): {shown}")
    module.load_state_dict(state)
    return Teacher(f"torchvision:{name}", 3, None, num_classes, IMAGENET_NORM, module=module.eval())


def _state_mismatch(expected: dict, given: dict) -> list[str]:
    """Short notes on each key that is missing, unexpected or of another shape (load_state_dict's own message
    lists every key, kilobytes of it)."""
    out = [f"{k} missing" for k in expected if k not in given]
    out += [f"{k} unexpected" for k in given if k not in expected]
    out += [f"{k} is {list(given[k].shape)}, expected {list(v.shape)}" for k, v in expected.items()
            if k in given and tuple(given[k].shape) != tuple(v.shape)]
    return out


def check_logits(teacher: Teacher, x: np.ndarray, classes: int) -> None:
    """The teacher gives (batch, classes) logits on two of the data's inputs, one per class of the data: a
    feature map or an embedding taken as logits fails a minute into the search otherwise (an ONNX teacher's
    rank is checked at load, from its graph)."""
    out = teacher.logits(torch.from_numpy(np.ascontiguousarray(x[:2], np.float32)))
    if out.ndim != 2:
        raise InputError(f"--teacher {teacher.source}: gives outputs of shape {tuple(out.shape)}; a teacher gives "
                         "(batch, classes) logits: export the classifier with its head")
    if out.shape[1] != classes:
        raise InputError(f"--teacher {teacher.source}: predicts {out.shape[1]} classes but --data has {classes}")


def teacher_accuracy(teacher: Teacher, x: np.ndarray, y: np.ndarray, device: torch.device) -> float:
    correct = 0
    for i in range(0, len(x), 256):
        logits = teacher.logits(torch.from_numpy(x[i:i + 256]).to(device))
        correct += int((logits.argmax(1).cpu().numpy() == y[i:i + 256]).sum())
    return correct / len(y)
