"""Tiny Hugging Face encoders built here, offline, for the transformer tests: a WordPiece tokenizer trained on
a few hundred words and a 2-layer BERT of hidden size 32, saved as a model folder (config.json,
model.safetensors, tokenizer files) exactly as `--teacher hf:DIR` takes one."""

from __future__ import annotations

import random
from pathlib import Path

_WORDS = ("apple banana cherry grape lemon mango melon orange peach pear plum berry kiwi lime fig date "
         "red green blue yellow black white small large quick slow happy sad bright dark warm cold "
         "cat dog bird fish horse mouse lion tiger bear wolf fox deer frog snake whale shark "
         "run walk jump swim fly eat drink sleep read write sing dance play work think see")
WORDS = _WORDS.split()


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))) for _ in range(n)]


def write_lines(path: Path, n: int = 96, seed: int = 0) -> Path:
    path.write_text("\n".join(sentences(n, seed)) + "\n")
    return path


def labelled_rows(n: int = 120, seed: int = 0) -> list[tuple[str, str]]:
    """Texts labelled by a rule the teacher can learn a little of: 'pos' when a fruit word comes first."""
    fruits = set(WORDS[:16])
    return [(s, "pos" if s.split()[0] in fruits else "neg") for s in sentences(n, seed)]


def write_csv(path: Path, n: int = 120, label_column: str = "label") -> Path:
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", label_column])
        w.writerows(labelled_rows(n))
    return path


def make_tokenizer(folder: Path):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(sentences(400) + WORDS, trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    fast = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]")
    fast.save_pretrained(str(folder))
    return fast


def make_teacher(folder: Path, task: str = "embedding", layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """A tiny BERT teacher folder; classification has two labels (neg, pos)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(folder)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=hidden * 4, max_position_embeddings=160)
    if task == "classification":
        config.num_labels = 2
        config.id2label, config.label2id = {0: "neg", 1: "pos"}, {"neg": 0, "pos": 1}
        model = BertForSequenceClassification(config)
    else:
        model = BertModel(config, add_pooling_layer=False)
    model.eval().save_pretrained(str(folder), safe_serialization=True)
    return folder
