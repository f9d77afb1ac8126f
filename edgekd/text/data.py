"""Text data: a .txt (one sentence or passage per line) for embedding distillation, or a .csv / .jsonl with a
text and a label column for classification; split as images are (edgekd/data: a held-out split, and a
calibration subset drawn from train), tokenised with the teacher's tokenizer and padded per batch to the
longest sequence in it (dynamic padding), cut at --max-length.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgekd.data import CALIBRATION_SIZE, VAL_FRACTION
from edgekd.errors import InputError

TEXT_COLUMNS = ("text", "sentence", "content")
LABEL_COLUMNS = ("label", "labels")
MIN_LINES = 12  # a held-out split of at least 2 texts and a training split
SUFFIXES = (".txt", ".csv", ".jsonl")


@dataclass(frozen=True)
class Tokenization:
    """What the report and the ONNX metadata record instead of image preprocessing."""

    tokenizer: str
    max_length: int
    inputs: tuple[str, ...] = ("input_ids", "attention_mask")

    def as_dict(self) -> dict:
        return {"tokenizer": self.tokenizer, "max_length": self.max_length, "inputs": list(self.inputs),
                "padding": "dynamic (longest in the batch); latency timed at max_length"}


@dataclass(frozen=True)
class TextData:
    source: str
    texts: list[str]
    y: np.ndarray | None  # class ids (classification), else None
    classes: list[str]
    train_idx: np.ndarray
    val_idx: np.ndarray
    calib_idx: np.ndarray
    tokenizer: object = field(repr=False)
    preprocessing: Tokenization

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def max_length(self) -> int:
        return self.preprocessing.max_length

    def encode(self, idx, pad_to: int | None = None) -> dict[str, np.ndarray]:
        """int64 input_ids and attention_mask for the texts at idx, padded to the longest (or to `pad_to`)."""
        texts = [self.texts[i] for i in idx]
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length,
                             padding="max_length" if pad_to else "longest", return_tensors="np")
        return {k: np.ascontiguousarray(enc[k], np.int64) for k in self.preprocessing.inputs}

    def batches(self, idx, batch_size: int) -> list[dict[str, np.ndarray]]:
        """Feeds for onnxruntime/OpenVINO, in order, each padded to its own longest text."""
        idx = np.asarray(idx)
        return [self.encode(idx[i:i + batch_size]) for i in range(0, len(idx), batch_size)]

    def torch_batches(self, idx, batch_size: int) -> list[dict[str, torch.Tensor]]:
        return [{k: torch.from_numpy(v) for k, v in b.items()} for b in self.batches(idx, batch_size)]

    def split_idx(self, name: str) -> np.ndarray:
        return {"train": self.train_idx, "val": self.val_idx, "calib": self.calib_idx}[name]

    def timing_shape(self, batch: int = 1) -> dict[str, tuple[int, int]]:
        """The input shapes the memory probe feeds: every input at the batch and max_length tokens."""
        return {k: (batch, self.max_length) for k in self.preprocessing.inputs}

    def timing_feed(self, batch: int = 1) -> dict[str, np.ndarray]:
        """The input latency is timed on: a held-out text padded to max_length (the budget's sequence length),
        every position attended, as a full-length input is."""
        feed = self.encode(self.val_idx[:1], pad_to=self.max_length)
        feed["attention_mask"][:] = 1
        return {k: np.ascontiguousarray(np.repeat(v, batch, 0)) for k, v in feed.items()}


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"--data '{path}': not UTF-8 text") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _pick(columns, wanted: tuple[str, ...]) -> str | None:
    lower = {c.lower().strip(): c for c in columns if c}
    return next((lower[w] for w in wanted if w in lower), None)


def _read_table(path: Path, need_labels: bool) -> tuple[list[str], list | None]:
    try:
        return _parse_table(path, need_labels)
    except UnicodeDecodeError:
        raise InputError(f"--data '{path}': not UTF-8 text; save it as UTF-8") from None
    except csv.Error as e:  # a field over csv's size limit, a NUL byte, ...
        raise InputError(f"--data '{path}': not a readable CSV ({e}); check its quoting") from None
    except RecursionError:
        raise InputError(f"--data '{path}': a line nests too deeply to be a JSON row") from None


def _parse_table(path: Path, need_labels: bool) -> tuple[list[str], list | None]:
    rows: list[dict] = []
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            rows = list(reader)
    else:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise InputError(f"--data '{path}': line {n} is not a JSON object") from None
            if not isinstance(row, dict):
                raise InputError(f"--data '{path}': line {n} is not a JSON object")
            rows.append(row)
        columns = sorted({k for r in rows for k in r})
    text_col = _pick(columns, TEXT_COLUMNS)
    if text_col is None:
        raise InputError(f"--data '{path}': no text column (one of {', '.join(TEXT_COLUMNS)}); has {list(columns)}")
    label_col = _pick(columns, LABEL_COLUMNS)
    if need_labels and label_col is None:
        raise InputError(f"--data '{path}': no label column (one of {', '.join(LABEL_COLUMNS)}) for a "
                         f"classification teacher; has {list(columns)}")
    kept = [r for r in rows if str(r.get(text_col) or "").strip()]
    texts = [str(r[text_col]).strip() for r in kept]
    labels = [r.get(label_col) for r in kept] if need_labels else None
    if labels is not None and any(v is None or str(v).strip() == "" for v in labels):
        raise InputError(f"--data '{path}': column '{label_col}' is empty in some rows; every text needs a label")
    return texts, labels


def _label_ids(labels: list, classes: list[str], path: Path) -> np.ndarray:
    """Labels as the teacher's class ids: by its label names (config.json id2label), else as integer ids."""
    names = {c: i for i, c in enumerate(classes)}
    out = []
    for v in labels:
        s = str(v).strip()
        if s in names:
            out.append(names[s])
            continue
        try:
            i = int(float(s))
        except (ValueError, OverflowError):  # 'cat', 'nan', '1e400' (infinite)
            raise InputError(f"--data '{path}': label '{s}' is none of the teacher's labels {classes}") from None
        if not 0 <= i < len(classes):
            raise InputError(f"--data '{path}': label {i} is outside the teacher's {len(classes)} classes")
        out.append(i)
    return np.asarray(out, np.int64)


def _read_file(path: Path, spec: str, need_labels: bool) -> tuple[list[str], list | None]:
    if path.suffix.lower() == ".txt":
        if need_labels:
            raise InputError(f"--data '{spec}': a classification teacher needs labels; give a .csv or .jsonl with "
                             f"text and label columns ({path.name} is one text a line)")
        return _read_lines(path), None
    return _read_table(path, need_labels)


def _data_files(path: Path, spec: str) -> list[Path]:
    """The file itself, or every .txt / .csv / .jsonl under a folder (sorted, so the split is reproducible)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise InputError(f"--data '{spec}': a folder without a .txt, .csv or .jsonl file in it")
        return files
    if path.suffix.lower() not in SUFFIXES:
        raise InputError(f"--data '{spec}': a text teacher takes a .txt (one text a line), a .csv / .jsonl with "
                         "text and label columns, or a folder of them")
    if not path.is_file():
        raise InputError(f"--data '{spec}': file not found")
    return [path]


def load_text_data(spec: str, tokenizer, task: str, classes: list[str] | None, max_length: int, seed: int,
                   tokenizer_name: str) -> TextData:
    """--data: one file, or a folder of them (a user's text gathered from several places: more text is what a
    small student needs most to keep its teacher's embeddings)."""
    path = Path(spec)
    texts, labels = [], []
    for file in _data_files(path, spec):
        got, got_labels = _read_file(file, spec, task == "classification")
        texts += got
        labels = None if got_labels is None or labels is None else labels + list(got_labels)
    if not texts:
        raise InputError(f"--data '{spec}': no text in it (empty, or only blank lines)")
    if len(texts) < MIN_LINES:
        raise InputError(f"--data '{spec}': {len(texts)} texts; at least {MIN_LINES} are needed to hold some out")
    y = _label_ids(labels, classes or [], path) if labels is not None else None
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    n_val = max(2, int(round(VAL_FRACTION * len(texts))))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    calib_idx = np.sort(rng.choice(train_idx, size=min(CALIBRATION_SIZE, len(train_idx)), replace=False))
    return TextData(spec, texts, y, list(classes or []), train_idx, val_idx, calib_idx, tokenizer,
                    Tokenization(tokenizer_name, max_length))
