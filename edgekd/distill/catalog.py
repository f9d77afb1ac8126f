"""Method names and one-line summaries, importable without torch (the CLI's --help lists them).

losses.py registers the implementations under the same names; tests/unit/test_losses.py keeps the two equal.
"""

DEFAULT_METHOD = "kd"  # chosen by benchmarks/kd_quality.py (it prints the methods compared on the embedded sets)
# Transformer teachers (--teacher hf:DIR) when --method is not given, per task (edgekd/text/distill.py): the
# output term plus the TinyBERT hidden-state and MiniLM attention terms.
DEFAULT_TEXT_METHODS = {"embedding": "emb+hidden+minilm", "classification": "kd+hidden+minilm"}

METHODS = {
    "ce": "labels only (train from scratch; the no-distillation baseline)",
    "kd": "Hinton KD: (1-l) CE + l T^2 KL(teacher || student) at temperature T",
    "dkd": "decoupled KD (Zhao et al. 2022): CE + alpha target-class + beta non-target-class terms",
    "normkd": "NormKD: KD with a per-sample temperature T_norm * std(logits)",
    "decomp": "KL split into binary / strong-correlation / weak-correlation terms with per-term weights",
    "feature": "FitNet hints: student features through a learned 1x1 adapter regress the teacher's",
    "at": "attention transfer (Zagoruyko & Komodakis): match normalized spatial attention maps",
    "rkd": "relational KD (Park et al.): match pairwise distances and angles of embeddings",
    "emb": "text: output embedding, (1 - cosine) + MSE between student and teacher sentence embeddings",
    "hidden": "text: hidden states through a learned projection, masked MSE per paired layer (TinyBERT)",
    "minilm": "text: last-layer self-attention distributions and value relations, KL (MiniLM, Wang et al. 2020)",
}
# Not a loss: `ta+dkd` distils an assistant with dkd, then the student from the assistant with dkd; the distill
# stage runs the chain (edgekd/distill/stage.py).
ASSISTANT = {"ta": "teacher-assistant chain: distil an intermediate student first, then the student from it"}


# Methods that did not beat training from scratch with their defaults in benchmarks/kd_quality.py, with the
# measured reason; --help lists them as experimental, not as equals of the others.
EXPERIMENTAL: dict[str, str] = {
    "rkd": "below training from scratch on digits (benchmarks/kd_quality.py, 20 epochs: 0.950 +- 0.016 over 2 "
           "seeds vs 0.974 +- 0.008 over 3); its paper weights (distill.rkd_distance_weight 25, rkd_angle_weight "
           "50) are not rescaled",
}


def describe() -> str:
    """The methods, one per paragraph (an epilog of `edgekd distill --help`)."""
    lines = [f"{k}: {v}" + (f" EXPERIMENTAL: {EXPERIMENTAL[k]}" if k in EXPERIMENTAL else "")
             for k, v in (METHODS | ASSISTANT).items()]
    return "Methods (--method NAME or NAME+NAME):\n\n" + "\n\n".join(lines)
