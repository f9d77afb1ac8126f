"""Method names and one-line summaries, importable without torch (the CLI's --help lists them).

losses.py registers the implementations under the same names; tests/unit/test_losses.py keeps the two equal.
"""

# The default, `auto`: FitNet hints (`feature`) where the teacher's feature maps pair with the student's stage for
# stage, else `kd` (a teacher that cannot be tapped or ends at another resolution); the distill stage
# (edgekd/distill/stage.py, auto_method) prints which and why. Chosen by benchmarks/kd_quality.py: on shapes,
# 3 seeds, feature closed 85% of the teacher-scratch gap and kd 40% with a student of 1/9 of the teacher's
# parameters (52% and 30% with one of 1/35; docs/benchmarks.md).
DEFAULT_METHOD = "auto"
AUTO_METHODS = ("feature", "kd")  # (preferred, fallback)
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
AUTO = {"auto": "the default: feature where the teacher's feature maps pair with the student's (by spatial size or "
                "distill.feature_pairs), else kd; the distill stage prints which and why. Transformer teachers: "
                "emb+hidden+minilm (embeddings), kd+hidden+minilm (classifiers)"}


# Methods that did not beat training from scratch with their defaults in benchmarks/kd_quality.py, with the
# measured reason; --help lists them as experimental, not as equals of the others.
EXPERIMENTAL: dict[str, str] = {
    "rkd": "below training from scratch on digits (benchmarks/kd_quality.py, 20 epochs: 0.950 +- 0.016 over 2 "
           "seeds vs 0.974 +- 0.008 over 3); its paper weights (distill.rkd_distance_weight 25, rkd_angle_weight "
           "50) are not rescaled; on shapes (resnet [8, 16, 32] x 1, 30 epochs, seed 0) 0.203 vs scratch 0.490",
    "normkd": "no better than training from scratch on shapes at any per-sample temperature scale tried "
              "(benchmarks/kd_quality.py, resnet [8, 16, 32] x 1, 30 epochs, seed 0: "
              "distill.normkd_temperature_scale 0.5 / 0.75 / 1.5 gave 0.476 / 0.500 / 0.451 vs scratch 0.490 and kd "
              "0.624)",
    "ta": "measured as ta+kd (benchmarks/kd_quality.py, 3 seeds): below training from scratch on fonts (0.916 +- "
          "0.005 vs 0.924 +- 0.007, the lowest of every method there) and no better than kd alone on shapes "
          "(resnet [16, 32, 64] x 1: 0.742 +- 0.011 vs 0.734 +- 0.015) for twice the training time",
}


def describe() -> str:
    """The methods, one per paragraph (an epilog of `edgekd distill --help`)."""
    lines = [f"{k}: {v}" + (f" EXPERIMENTAL: {EXPERIMENTAL[k]}" if k in EXPERIMENTAL else "")
             for k, v in (AUTO | METHODS | ASSISTANT).items()]
    return "Methods (--method NAME or NAME+NAME):\n\n" + "\n\n".join(lines)
