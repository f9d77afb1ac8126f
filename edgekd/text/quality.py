"""How close a text model's outputs are to its teacher's, and the budgets that gate it.

Quality on the held-out text (docs/report-contract.md):
  embeddings: mean cosine of each text's embedding to the teacher's, and top-10 nearest-neighbour agreement
    (the share of each text's 10 most similar other held-out texts the two models agree on: what semantic
    search returns). The report's `accuracy` of an embedding model is that agreement (the teacher's own is
    1.0), so `accuracy_drop` is points of neighbour agreement lost; the gated budgets are embedding_cosine
    and neighbour_agreement (Budgets.min_embedding_cosine, min_neighbour_agreement).
  classification: accuracy on the labels; accuracy_drop as for images.
"""

from __future__ import annotations

import numpy as np

from edgekd.config import Budgets
from edgekd.figures import Figure, Figures
from edgekd.gate.verdict import budget_result, decide_budgets
from edgekd.parity import neighbour_overlaps, row_cosine
from edgekd.report import BudgetResult

NEIGHBOURS = 10
DEFAULT_MIN_COSINE = 0.95  # the benchmark's aim (benchmarks/transformers.py)
DEFAULT_MIN_AGREEMENT = 0.80
N_BOOT = 2000


def min_cosine(budgets: Budgets) -> float:
    return budgets.min_embedding_cosine or DEFAULT_MIN_COSINE


def min_agreement(budgets: Budgets) -> float:
    return budgets.min_neighbour_agreement or DEFAULT_MIN_AGREEMENT


def teacher_quality(ctx) -> float:
    if ctx.teacher.task == "classification":
        return float((ctx.text_reference.argmax(1) == ctx.data.y[ctx.data.val_idx]).mean())
    return 1.0


def quality(ctx, outputs: np.ndarray) -> dict:
    if ctx.teacher.task == "classification":
        return {"accuracy": float((outputs.argmax(1) == ctx.data.y[ctx.data.val_idx]).mean())}
    ref = ctx.text_reference
    cosines, overlaps = row_cosine(outputs, ref), neighbour_overlaps(outputs, ref, NEIGHBOURS)
    agreement = float(overlaps.mean())
    return {"accuracy": agreement, "neighbour_agreement": agreement, "mean_cosine": float(cosines.mean()),
            "neighbours": min(NEIGHBOURS, len(ref) - 1), "neighbour_agreement_interval": mean_interval(overlaps),
            "mean_cosine_interval": mean_interval(cosines), "texts": len(ref)}


def mean_interval(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of per-text `values`."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(N_BOOT, len(values)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def quality_budgets(ctx, q: dict) -> list[BudgetResult]:
    if ctx.teacher.task != "embedding":
        return []
    n = q.get("neighbours", NEIGHBOURS)
    return [budget_result("embedding_cosine", min_cosine(ctx.budgets), q["mean_cosine"],
                          "measured", q["mean_cosine_interval"], "mean cosine of the compiled student's embeddings "
                          f"to the teacher's on {len(ctx.data.val_idx)} held-out texts (bootstrap interval)",
                          at_least=True),
            budget_result("neighbour_agreement", min_agreement(ctx.budgets),
                          q["neighbour_agreement"], "measured", q["neighbour_agreement_interval"],
                          f"top-{n} nearest-neighbour overlap with the teacher's on the held-out texts (bootstrap "
                          "interval)", at_least=True)]


def text_budgets(ctx, figures: Figures, speedup: Figure, drop: float, q: dict,
                 blocker: str | None = None) -> list[BudgetResult]:
    """Every budget of a text model (the student, or the teacher compressed alone) decided: an embedding model
    is gated by embedding_cosine and neighbour_agreement (`q`, its quality), not by its accuracy drop."""
    budgets = ctx.budgets
    if ctx.teacher.task == "embedding":
        budgets = budgets.model_copy(update={"max_accuracy_drop": None})
    results = decide_budgets(budgets, figures, speedup, drop, blocker)
    if ctx.teacher.task == "embedding":
        results = [BudgetResult(r.name, None, r.value, r.source, True, detail="points of top-10 neighbour agreement "
                                "lost (an embedding model's accuracy); gated by embedding_cosine and "
                                "neighbour_agreement") if r.name == "accuracy_drop" else r for r in results]
    return results + quality_budgets(ctx, q)
