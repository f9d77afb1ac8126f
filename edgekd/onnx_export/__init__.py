"""torch -> ONNX with a dynamic batch, onnx.checker, preprocessing in the metadata, and a parity check
through onnxruntime on real held-out inputs."""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from edgekd import parity as parity_rule
from edgekd.errors import StageFailed
from edgekd.models.teacher import ExportedTeacher
from edgekd.parity import Parity
from edgekd.runtimes.onnxruntime_backend import OrtSession

OPSET = 18


def export_onnx(model: torch.nn.Module, input_shape: tuple[int, ...], path: Path, metadata: dict) -> Path:
    """Export with batch as a dynamic dimension; metadata values are stored as JSON strings."""
    model = model.cpu().eval()
    # A batch of 1 sits on the dynamic dimension's lower bound and makes the exporter specialize it.
    example = torch.randn(2, *input_shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        _to_onnx(model, example, tmp)
    proto = onnx.load(str(tmp))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    tmp.unlink()
    data = Path(str(tmp) + ".data")
    if data.exists():
        data.unlink()
    return path


def parity(model: torch.nn.Module, onnx_path: Path, x: np.ndarray) -> Parity:
    """The ONNX model through onnxruntime against torch on inputs x."""
    with torch.no_grad():
        ref = model.cpu().eval()(torch.from_numpy(x)).numpy()
    return parity_rule.compare_logits(OrtSession(onnx_path, threads=torch.get_num_threads()).run(x), ref)


def _to_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """The ONNX exporter that takes this kind of module: a torch.export teacher converts as it was captured,
    a TorchScript one through the TorchScript exporter (torch.export cannot trace a ScriptModule)."""
    if isinstance(model, ExportedTeacher) and model.exported is not None:
        if model.batch is not None:
            raise StageFailed(f"export: the torch.export teacher was captured for a fixed batch of {model.batch}; "
                              "export it again with a dynamic batch (torch.export.Dim) to time it on the target")
        torch.onnx.export(model.exported, dynamo=True, opset_version=OPSET, verbose=False).save(str(path))
        return
    if isinstance(model, torch.jit.ScriptModule):
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=OPSET, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        return
    program = torch.onnx.export(model, (example,), dynamo=True, opset_version=OPSET, verbose=False,
                                input_names=["input"], output_names=["logits"],
                                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
    program.save(str(path))


def export_checked(model: torch.nn.Module, input_shape: tuple[int, ...], path: Path, metadata: dict,
                   x_check: np.ndarray, who: str) -> Parity:
    export_onnx(model, input_shape, path, metadata)
    result = parity(model, path, x_check)
    parity_rule.require(result, "fp32", f"export: {who} ONNX disagrees with torch")
    return result


def teacher_onnx(ctx) -> tuple[Path, Parity | None]:
    """The teacher as ONNX, to time it on the target's runtime: an ONNX teacher as given; a torch teacher
    exported once per run to OUT/teacher/teacher.onnx with its parity (the search times it before the export
    stage runs, and the export stage reuses it). Returns (path, parity or None)."""
    if ctx.teacher.module is None:
        return Path(ctx.teacher.onnx_path), None
    ctx.run.folder("teacher")
    path, record = ctx.run.teacher_onnx, ctx.run.teacher_parity_json
    if path.is_file() and record.is_file():
        return path, Parity.from_dict(json.loads(record.read_text()))
    ctx.console.print("  teacher -> ONNX (to time it on the target's runtime)")
    parity_ = export_checked(ctx.teacher.module, ctx.input_shape, path,
                             {"preprocessing": ctx.data.preprocessing.as_dict()},
                             ctx.data.split("val")[0][:512], "teacher")
    record.write_text(json.dumps(parity_.as_dict()))
    return path, parity_


def pricing_onnx(module: nn.Module, batch_shape: tuple[int, ...]):
    """An ONNX ModelProto of a TorchScript or torch.export teacher for the cost model, whose forward hooks
    see no layers in such graphs (the teacher would be priced at 0 ms); None for a plain module."""
    if not isinstance(module, (torch.jit.ScriptModule, ExportedTeacher)):
        return None
    with tempfile.TemporaryDirectory(prefix="edgekd-teacher-") as tmp:
        path = Path(tmp) / "teacher.onnx"
        device = next(module.parameters()).device  # stays where it is (the teacher is shared)
        example = torch.randn(*batch_shape, device=device)
        if isinstance(module, ExportedTeacher) and module.batch is not None:
            example = torch.randn(module.batch, *batch_shape[1:])
            torch.onnx.export(module.exported, dynamo=True, verbose=False).save(str(path))
        else:
            _to_onnx(module.eval(), example, path)
        return onnx.shape_inference.infer_shapes(onnx.load(str(path)))
