"""Transformer teachers (`--teacher hf:DIR`): the text side of every stage.

The stages (edgekd/stages) stay the same five, with the same typed Results; where the teacher is a Hugging
Face encoder, the text track (edgekd/tracks/text.py) answers what they ask from this package:

    hf.py        the teacher folder (config.json, safetensors, tokenizer) loaded offline; TextTeacher
    data.py      lines / CSV / JSONL -> tokenised splits (train, held-out, calibration), dynamic padding
    models.py    the encoder as an exportable module (mean-pooled embedding or logits); students from the teacher
    space.py     the declarative student space and its analytic cost (matmul, attention, layernorm, GELU)
    search.py    price -> rank -> the image search's driver times candidates one at a time with the teacher
    distill.py   the training loop (losses in edgekd/distill/losses.py, the one registry)
    export.py    ONNX with dynamic batch and sequence, parity by cosine / top-1
    quality.py   quality (cosine, top-10 neighbours, accuracy) and its budgets

transformers is imported inside functions (edgekd/optional.py), so `edgekd --help` and image builds never
load it. docs/architecture.md ("Transformer teachers") has the route and why.
"""

HF_PREFIX = "hf:"

