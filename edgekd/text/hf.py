"""A Hugging Face encoder folder as a teacher (`--teacher hf:DIR`), loaded offline and without pickles.

What the folder must hold: config.json, weights as *.safetensors (a pytorch_model.bin alone is refused: a
pickle runs code when loaded), and the tokenizer's files. transformers is told `local_files_only=True`, and
HF_HUB_OFFLINE is set for the process before transformers loads (edgekd/offline.py), so nothing is fetched from
the hub at run time.

Encoders of the BERT family (bert, roberta, xlm-roberta, electra, camembert) are accepted: their configs
share the field names the student space rewrites (num_hidden_layers, hidden_size, num_attention_heads,
intermediate_size) and their layers sit at `encoder.layer`, which layer selection copies from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgekd.errors import InputError
from edgekd.optional import require
from edgekd.text import HF_PREFIX
from edgekd.text.models import TextEncoder

ENCODERS = ("bert", "roberta", "xlm-roberta", "electra", "camembert")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model", "spiece.model")
PICKLED = ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "model.ckpt.index")


@dataclass
class TextTeacher:
    """The teacher of a text build. `module` is the exportable encoder (edgekd/text/models.py TextEncoder:
    input_ids, attention_mask -> embeddings or logits); `tokenizer` is the teacher's own."""

    source: str
    folder: Path
    task: str  # embedding | classification
    module: nn.Module
    tokenizer: object
    labels: list[str] | None  # classification: id -> label name from config.json
    onnx_path: Path | None = None

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    @property
    def config(self):
        return self.module.model.config

    @property
    def num_classes(self) -> int | None:
        return len(self.labels) if self.labels else None


def quiet_transformers(transformers) -> None:
    """Its per-load progress bars and load reports would drown the stage lines (errors still raise)."""
    transformers.utils.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()


def check_folder(src: str) -> Path:
    """The folder of `hf:DIR`, checked for config, safetensors weights and tokenizer; bad input otherwise."""
    folder = Path(src[len(HF_PREFIX):]) if src.startswith(HF_PREFIX) else Path(src)
    opt = f"--teacher {src}"
    if not folder.exists():
        raise InputError(f"{opt}: folder not found")
    if not folder.is_dir():
        raise InputError(f"{opt}: not a folder; give a Hugging Face model folder (config.json, *.safetensors, "
                         "tokenizer files)")
    if not (folder / "config.json").is_file():
        raise InputError(f"{opt}: no config.json in {folder}")
    if not any(folder.glob("*.safetensors")):
        pickled = [n for n in PICKLED if (folder / n).exists()]
        if pickled:
            raise InputError(f"{opt}: weights are only in {pickled[0]} (a pickle, which runs code when loaded); "
                             "convert them to model.safetensors (save_pretrained(..., safe_serialization=True))")
        raise InputError(f"{opt}: no *.safetensors weights in {folder}")
    if not any((folder / n).is_file() for n in TOKENIZER_FILES):
        raise InputError(f"{opt}: no tokenizer files in {folder} (one of {', '.join(TOKENIZER_FILES)}); save the "
                         "teacher's tokenizer beside it (tokenizer.save_pretrained)")
    return folder


def read_config(folder: Path, opt: str) -> dict:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError, RecursionError) as e:  # RecursionError: nested past json's recursion limit
        raise InputError(f"{opt}: config.json is not readable JSON ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(config, dict):
        raise InputError(f"{opt}: config.json is not a JSON object")
    kind = config.get("model_type")
    if not isinstance(kind, str) or kind not in ENCODERS:
        raise InputError(f"{opt}: config.json model_type '{kind}' is not a BERT-family encoder "
                         f"({', '.join(ENCODERS)})")
    return config


def resolve_task(config: dict, task: str, opt: str) -> str:
    """--task, else config.json's architectures: *ForSequenceClassification -> classification, else embedding."""
    archs = config.get("architectures") or []
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise InputError(f"{opt}: config.json 'architectures' is {archs!r}; expected a list of class names")
    classifier = any(a.endswith("ForSequenceClassification") for a in archs)
    if task == "auto":
        return "classification" if classifier else "embedding"
    if task == "classification" and not classifier:
        raise InputError(f"{opt}: --task classification, but config.json's architectures {archs} have no "
                         "sequence-classification head")
    return task


def _check_pooling(folder: Path, opt: str) -> None:
    """A sentence-transformers folder says how it pools; edgekd's embedding is the masked mean."""
    pooling = folder / "1_Pooling" / "config.json"
    if not pooling.is_file():
        return
    try:
        modes = json.loads(pooling.read_text())
    except (OSError, ValueError, RecursionError):
        return
    if not isinstance(modes, dict):
        raise InputError(f"{opt}: 1_Pooling/config.json is not a JSON object")
    if not modes.get("pooling_mode_mean_tokens", True):
        used = [k for k, v in modes.items() if k.startswith("pooling_mode") and v]
        raise InputError(f"{opt}: 1_Pooling/config.json pools by {used}; edgekd distils mean-pooled embeddings")


def load_text_teacher(src: str, task: str = "auto") -> TextTeacher:
    folder = check_folder(src)
    opt = f"--teacher {src}"
    config = read_config(folder, opt)
    task = resolve_task(config, task, opt)
    if task == "embedding":
        _check_pooling(folder, opt)
    transformers = require("transformers", "--teacher hf:DIR")
    quiet_transformers(transformers)

    auto = transformers.AutoModelForSequenceClassification if task == "classification" else transformers.AutoModel
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = auto.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                     attn_implementation="eager")
    except Exception as e:  # transformers raises many types for a damaged or foreign folder
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise InputError(f"{opt}: transformers cannot load it ({type(e).__name__}: {first})") from None
    model.eval()
    labels = None
    if task == "classification":
        id2label = model.config.id2label or {}
        labels = [str(id2label.get(i, i)) for i in range(model.config.num_labels)]
    return TextTeacher(src, folder, task, TextEncoder(model, task).eval(), tokenizer, labels)


@torch.no_grad()
def teacher_outputs(teacher: TextTeacher, batches) -> torch.Tensor:
    """The teacher's embeddings or logits over tokenised batches (dicts of input_ids, attention_mask)."""
    return torch.cat([teacher.module(b["input_ids"], b["attention_mask"]).float() for b in batches])
