"""A text encoder -> ONNX: inputs input_ids and attention_mask (int64, batch x sequence, both dynamic), output
the sentence embedding or the logits; onnx.checker; the tokenizer and task in the metadata; parity through
onnxruntime on held-out text (embeddings: mean cosine, edgekd/parity.py; logits: the usual rule).

Exported with torch.onnx.export (the dynamo exporter), not optimum's ONNX exporter: that lives in
optimum-onnx, which pins optimum 2.1 and transformers < 4.58 and so cannot share an environment with
optimum-intel 2.2 (README "Transformer teachers"). The pooled embedding is part of the graph, so every
runtime runs the same model the parity check compared.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

import edgekd
from edgekd import parity as parity_rule
from edgekd.onnx_export import OPSET
from edgekd.parity import Parity
from edgekd.runtimes.onnxruntime_backend import OrtSession

INPUTS = ("input_ids", "attention_mask")


def output_name(task: str) -> str:
    # not "embedding": the exporter names aten.embedding's value so, and ONNX needs names unique
    return "logits" if task == "classification" else "sentence_embedding"


def export_text(module, path: Path, metadata: dict, example: dict[str, np.ndarray]) -> Path:
    module = module.cpu().eval()
    args = tuple(torch.from_numpy(np.repeat(example[k][:1], 2, 0)) for k in INPUTS)  # batch 2: not specialised
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("sequence", min=2, max=8192)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(module, args, dynamo=True, opset_version=OPSET, verbose=False,
                                    input_names=list(INPUTS), output_names=[output_name(module.task)],
                                    dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}))
    proto = program.model_proto
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return path


@torch.no_grad()
def torch_outputs(module, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    module = module.cpu().eval()
    return np.concatenate([module(*(torch.from_numpy(f[k]) for k in INPUTS)).float().numpy() for f in feeds])


def session_outputs(session, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    return np.concatenate([session.run(f) for f in feeds])


def compare(task: str, got: np.ndarray, ref: np.ndarray) -> Parity:
    return parity_rule.compare_logits(got, ref) if task == "classification" else \
        parity_rule.compare_embeddings(got, ref)


def export_checked(module, path: Path, metadata: dict, feeds: list[dict[str, np.ndarray]], who: str) -> Parity:
    export_text(module, path, metadata, feeds[0])
    got = session_outputs(OrtSession(path, threads=torch.get_num_threads()), feeds)
    result = compare(module.task, got, torch_outputs(module, feeds))
    parity_rule.require(result, "fp32", f"export: {who} ONNX disagrees with torch")
    return result


def teacher_onnx(ctx) -> tuple[Path, Parity]:
    """The teacher as ONNX, exported once per run (the search times it before the export stage reuses it)."""
    ctx.run.folder("teacher")
    path, record = ctx.run.teacher_onnx, ctx.run.teacher_parity_json
    if path.is_file() and record.is_file():
        return path, Parity.from_dict(json.loads(record.read_text()))
    ctx.console.print("  teacher -> ONNX (to time it on the target's runtime)")
    feeds = ctx.data.batches(ctx.data.val_idx[:PARITY_SAMPLES], 32)
    result = export_checked(ctx.teacher.module, path, metadata(ctx, {"role": "teacher"}), feeds, "teacher")
    ctx.teacher.module.to(ctx.device)
    record.write_text(json.dumps(result.as_dict()))
    return path, result


PARITY_SAMPLES = 256


def metadata(ctx, extra: dict) -> dict:
    return {"tokenization": ctx.data.preprocessing.as_dict(), "task": ctx.teacher.task,
            "classes": ctx.data.classes, "teacher": ctx.teacher.source, "edgekd": edgekd.__version__} | extra
