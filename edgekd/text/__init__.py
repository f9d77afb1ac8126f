"""Transformer teachers (`--teacher hf:DIR`): the text side of every stage.

The stages (edgekd/stages) stay the same five, with the same typed Results; where the teacher is a Hugging
Face encoder they call into this package instead of the image libraries:

    hf.py        the teacher folder (config.json, safetensors, tokenizer) loaded offline; TextTeacher
    data.py      lines / CSV / JSONL -> tokenised splits (train, held-out, calibration), dynamic padding
    models.py    the encoder as an exportable module (mean-pooled embedding or logits); students from the teacher
    space.py     the declarative student space and its analytic cost (matmul, attention, layernorm, GELU)
    search.py    price -> rank -> time the top K against the teacher, interleaved
    distill.py   the training loop (losses in edgekd/distill/losses.py, the one registry)
    export.py    ONNX with dynamic batch and sequence, parity by cosine / top-1
    compile.py   ONNX Runtime fp32/int8 (dynamic), OpenVINO fp16/int8 (NNCF), ORT format for Arm
    check.py     quality (cosine, top-10 neighbours, accuracy), latency, memory, budget verdicts

transformers is imported inside functions (edgekd/optional.py), so `edgekd --help` and image builds never
load it. docs/architecture.md ("Transformer teachers") has the route and why.
"""

HF_PREFIX = "hf:"


def is_text_source(source: str | None) -> bool:
    return bool(source) and source.startswith(HF_PREFIX)
