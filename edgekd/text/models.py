"""The encoder as one exportable module, and students built from the teacher.

TextEncoder(input_ids, attention_mask) -> the sentence embedding (the mean of the last hidden states over
the attention mask, as sentence-transformers pools) or the classifier's logits. Its ONNX graph is what every
runtime compiles, so the pooling ships inside the model, not in the caller's code.

Students are the teacher's architecture with fewer/narrower layers (edgekd/text/space.py). Where shapes allow
they start from the teacher's weights, as DistilBERT does (Sanh et al. 2019): the embeddings are copied and
layer i of an L-layer student copies teacher layer floor(i * L_t / L) (every other layer for half the
depth: 0, 2, 4 of 6); a classifier head is copied too. A layer with the teacher's heads but a narrower
feed-forward copies the leading rows and columns of its weights. A student of another width starts from
random weights (student.json says which).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from edgekd.optional import require

ARCH_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")


class TextEncoder(nn.Module):
    def __init__(self, model: nn.Module, task: str, embedding_size: int | None = None):
        super().__init__()
        self.model = model
        self.task = task
        # An embedding student narrower than its teacher ends in a learned projection to the teacher's width,
        # so its vectors are comparable with (and can replace) the teacher's in one index.
        width = model.config.hidden_size
        self.project = nn.Linear(width, embedding_size) if task == "embedding" and embedding_size and \
            embedding_size != width else None

    def base(self) -> nn.Module:
        """The encoder body (BertModel, RobertaModel, ...) under a classification wrapper."""
        return getattr(self.model, self.model.base_model_prefix, self.model)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out, _ = self.features(input_ids, attention_mask, hidden=False)
        return out

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, hidden: bool = True):
        """(output, hidden states): the embedding or logits, and with `hidden` every layer's hidden states."""
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=hidden)
        states = list(out.hidden_states) if hidden else []
        if self.task == "classification":
            return out.logits, states
        pooled = mean_pool(out.last_hidden_state, attention_mask)
        return (pooled if self.project is None else self.project(pooled)), states


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / m.sum(1).clamp_min(1e-9)


def arch_of(config) -> dict:
    return {k: int(getattr(config, k)) for k in ARCH_KEYS}


def selected_layers(teacher_layers: int, student_layers: int, how: str = "every_other") -> list[int]:
    """Teacher layers a student copies: one every L_t / L (DistilBERT's every other layer for half the depth),
    or with `ends` the first and the last L-1 (the layers nearest the output shape the embedding most)."""
    if student_layers >= teacher_layers:
        return list(range(teacher_layers))[:student_layers]
    if how == "ends":
        return [0] + list(range(teacher_layers - student_layers + 1, teacher_layers))
    return [i * teacher_layers // student_layers for i in range(student_layers)]


def build_student(teacher: TextEncoder, arch: dict, init_from_teacher: bool = True,
                  layer_selection: str = "every_other") -> tuple[TextEncoder, str]:
    """A student of `arch` (ARCH_KEYS) in the teacher's family; returns it and how it was initialised."""
    config = copy.deepcopy(teacher.model.config)
    for k in ARCH_KEYS:
        setattr(config, k, int(arch[k]))
    config._attn_implementation = "eager"  # one attention graph for export, quantization and the MiniLM taps
    model = type(teacher.model)(config)
    student = TextEncoder(model, teacher.task, teacher.model.config.hidden_size)
    t_cfg = teacher.model.config
    if not init_from_teacher or arch["hidden_size"] != t_cfg.hidden_size:
        return student.eval(), "random (hidden size differs from the teacher's)" if init_from_teacher else "random"
    t_base, s_base = teacher.base(), student.base()
    s_base.embeddings.load_state_dict(t_base.embeddings.state_dict())
    picked = selected_layers(t_cfg.num_hidden_layers, arch["num_hidden_layers"], layer_selection)
    same_layer = (arch["num_attention_heads"] == t_cfg.num_attention_heads
                  and arch["intermediate_size"] == t_cfg.intermediate_size)
    copied = []
    same_attention = arch["num_attention_heads"] == t_cfg.num_attention_heads
    for i, j in enumerate(picked):
        if same_layer:
            s_base.encoder.layer[i].load_state_dict(t_base.encoder.layer[j].state_dict())
        elif same_attention:  # a narrower feed-forward: its first intermediate units (Michel et al.'s pruning view)
            _copy_sliced(s_base.encoder.layer[i], t_base.encoder.layer[j])
        else:
            continue
        copied.append(j)
    for name in ("pooler", "classifier"):  # heads, where the family has them
        s_mod, t_mod = _find(student.model, name), _find(teacher.model, name)
        if s_mod is not None and t_mod is not None:
            s_mod.load_state_dict(t_mod.state_dict())
    how = f"embeddings and heads from the teacher; layers {copied} copied" if copied else \
        "embeddings and heads from the teacher; layers random (their shape differs)"
    return student.eval(), how


@torch.no_grad()
def _copy_sliced(student_layer: nn.Module, teacher_layer: nn.Module) -> None:
    """Every weight of the student layer from the teacher's, cut to its shape (leading rows/columns)."""
    teacher = teacher_layer.state_dict()
    for name, p in student_layer.state_dict().items():
        src = teacher[name]
        p.copy_(src[tuple(slice(0, n) for n in p.shape)])


def _find(model: nn.Module, name: str) -> nn.Module | None:
    for prefix in ("", f"{model.base_model_prefix}."):
        try:
            mod = model.get_submodule(prefix + name)
        except AttributeError:
            continue
        if mod is not None:
            return mod
    return None


PROJECTION = "projection.safetensors"


def save_student(student: TextEncoder, folder, tokenizer) -> None:
    """config.json + model.safetensors + the tokenizer: a Hugging Face folder users can load again (and the
    output projection, where the student is narrower, in projection.safetensors)."""
    student.model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    if student.project is not None:
        save_file({k: v.contiguous() for k, v in student.project.state_dict().items()}, str(folder / PROJECTION))


def load_student(folder, task: str) -> TextEncoder:
    transformers = require("transformers", "a text student")
    auto = transformers.AutoModelForSequenceClassification if task == "classification" else transformers.AutoModel
    model = auto.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                 attn_implementation="eager")

    projection = Path(folder) / PROJECTION
    state = load_file(str(projection)) if projection.is_file() else None
    student = TextEncoder(model.eval(), task, state["weight"].shape[0] if state else None)
    if state:
        student.project.load_state_dict(state)
    return student.eval()
