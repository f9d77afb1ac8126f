"""torch -> ONNX with a dynamic batch, onnx.checker, preprocessing in the metadata, and a parity check
through onnxruntime on real held-out inputs."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from edgekd.errors import StageFailed

OPSET = 18
PARITY_MAX_ABS_DIFF = 1e-3  # relative to the largest |logit|
PARITY_MIN_TOP1_AGREEMENT = 0.99


def export_onnx(model: torch.nn.Module, input_shape: tuple[int, ...], path: Path, metadata: dict) -> Path:
    """Export with batch as a dynamic dimension; metadata values are stored as JSON strings."""
    import onnx

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


def parity(model: torch.nn.Module, onnx_path: Path, x: np.ndarray) -> dict:
    """Max |torch - onnxruntime| (relative to the largest logit) and top-1 agreement on inputs x."""
    from edgekd.runtimes.onnxruntime_backend import OrtSession

    with torch.no_grad():
        ref = model.cpu().eval()(torch.from_numpy(x)).numpy()
    got = OrtSession(onnx_path, threads=torch.get_num_threads()).run(x)
    diff = float(np.abs(ref - got).max() / max(1.0, float(np.abs(ref).max())))
    agree = float((ref.argmax(1) == got.argmax(1)).mean())
    return {"max_abs_diff": diff, "top1_agreement": agree, "samples": len(x)}


def _to_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """The ONNX exporter that takes this kind of module: a torch.export teacher converts as it was captured,
    a TorchScript one through the TorchScript exporter (torch.export cannot trace a ScriptModule)."""
    from edgekd.models.teacher import ExportedTeacher

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
                   x_check: np.ndarray, who: str) -> dict:
    export_onnx(model, input_shape, path, metadata)
    result = parity(model, path, x_check)
    if result["max_abs_diff"] > PARITY_MAX_ABS_DIFF or result["top1_agreement"] < PARITY_MIN_TOP1_AGREEMENT:
        raise StageFailed(f"export: {who} ONNX disagrees with torch: max |diff| {result['max_abs_diff']:.3g} "
                          f"(limit {PARITY_MAX_ABS_DIFF:g}), top-1 agreement {result['top1_agreement']:.2%} "
                          f"(limit {PARITY_MIN_TOP1_AGREEMENT:.0%})")
    return result


def teacher_onnx(ctx) -> tuple[Path, dict | None]:
    """The teacher as ONNX, to time it on the target's runtime: an ONNX teacher as given; a torch teacher
    exported once per run to OUT/teacher/teacher.onnx with its parity (the search times it before the export
    stage runs, and the export stage reuses it). Returns (path, parity or None)."""
    if ctx.teacher.module is None:
        return Path(ctx.teacher.onnx_path), None
    folder = ctx.stage_dir("teacher")
    path, record = folder / "teacher.onnx", folder / "teacher.json"
    if path.is_file() and record.is_file():
        return path, json.loads(record.read_text())
    ctx.console.print("  teacher -> ONNX (to time it on the target's runtime)")
    parity_ = export_checked(ctx.teacher.module, ctx.input_shape, path,
                             {"preprocessing": ctx.data.preprocessing.as_dict()},
                             ctx.data.split("val")[0][:512], "teacher")
    record.write_text(json.dumps(parity_))
    return path, parity_


def run_export(ctx) -> dict:
    """Student (from OUT/distill) and, for a torch teacher, the teacher -> OUT/export/*.onnx."""
    import edgekd
    from edgekd.distill import load_student

    student, info = load_student(ctx.out / "distill")
    folder = ctx.stage_dir("export")
    x_check = ctx.data.split("val")[0][:512]
    metadata = {"preprocessing": ctx.data.preprocessing.as_dict(), "classes": ctx.data.classes,
                "arch": info["arch"], "teacher": ctx.teacher.source, "edgekd": edgekd.__version__}
    ctx.console.print("[bold]export[/]: student -> ONNX (dynamic batch), checker, parity through onnxruntime")
    result = {"student": str(folder / "student.onnx"),
              "student_parity": export_checked(student, ctx.input_shape, folder / "student.onnx", metadata,
                                               x_check, "student")}
    teacher, teacher_parity = teacher_onnx(ctx)
    result["teacher"] = str(teacher)
    if teacher_parity is not None:
        result["teacher_parity"] = teacher_parity
    (folder / "export.json").write_text(json.dumps(result, indent=2))
    p = result["student_parity"]
    ctx.console.print(f"  parity: max |diff| {p['max_abs_diff']:.2e}, top-1 agreement {p['top1_agreement']:.2%}")
    return result
