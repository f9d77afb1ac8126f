"""The precision guard: INT8 ships only where it pays. One rule for every track; the track says what "within the
quality budget" means (accuracy drop for classifiers, cosine and neighbour agreement for sentence encoders)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from edgekd.figures import Figure, Figures
from edgekd.parity import Parity


@dataclass
class PrecisionCandidate:
    """One compiled artifact the guard chooses among: its quality on the held-out split through its own runtime,
    its parity with the ONNX model it was built from, and its latency (timed here interleaved with the other
    candidates, measured on the --remote device, or predicted by the profile's cost model)."""

    precision: str
    quality: dict  # {"accuracy": ..., and the track's measures with their intervals}
    accuracy_drop: float  # points below the teacher as supplied
    parity: Parity
    path: str  # the artifact's file name in OUT/compile
    settings: dict  # how the runtime built it (quantization, hints)
    latency: Figure | None = None
    latency_extra: dict = field(default_factory=dict)  # how it was timed (interleave statistics, device state)
    speedup_over_float: Figure | None = None  # float / this, timed as a pair here (the ratio's own interval)

    def as_dict(self) -> dict:
        """The candidate's record (compile.json and report.json: student.compile.precision_guard.candidates)."""
        out = self.quality | {"accuracy_drop": self.accuracy_drop, "parity": self.parity.as_dict(),
                              "path": self.path, "settings": self.settings}
        if self.latency is not None:
            out |= Figures(self.latency, extra=self.latency_extra).as_dict()
        if self.speedup_over_float is not None:
            out["speedup_over_float"] = {"value": self.speedup_over_float.value,
                                         "interval": list(self.speedup_over_float.interval)}
        return out


def within_accuracy_drop(ctx, quality: dict) -> tuple[bool, str]:
    """The guard's rule for a classifier (either track): its accuracy drop within max_accuracy_drop."""
    limit = ctx.budgets.max_accuracy_drop
    drop = 100 * (ctx.teacher_accuracy - quality["accuracy"])
    return limit is None or drop <= limit, f"accuracy drop {drop:.2f} points (budget {limit})"


def faster(candidate: PrecisionCandidate, than: PrecisionCandidate) -> bool:
    """Timed interleaved here: the interval of their ratio above 1; both measured (a device): the candidate's
    latency interval entirely below the other's; predicted: a lower prediction (both share the cost model's
    error, so the values compare where their bands would not)."""
    if candidate.speedup_over_float is not None:
        return candidate.speedup_over_float.interval[0] > 1
    a, b = candidate.latency, than.latency
    if a.source == "measured" == b.source and a.interval and b.interval:
        return a.interval[1] < b.interval[0]
    return a.value < b.value


def precision_guard(candidates: dict[str, PrecisionCandidate],
                    within: Callable[[dict, dict], tuple[bool, str]]) -> tuple[str, str]:
    """(precision to ship, why). INT8 ships when it is faster than the float artifact and `within(int8 quality,
    float quality)` (the track's quality rule) holds; otherwise the float artifact ships and `why` says which
    failed."""
    float_p = next(p for p in candidates if p != "int8")
    if "int8" not in candidates:
        return float_p, f"{float_p}: the target asks for {float_p}"
    q, f = candidates["int8"], candidates[float_p]
    quick = faster(q, f)
    ok, said = within(q.quality, f.quality)
    speed = f"int8 {q.latency.value:.4g} ms vs {float_p} {f.latency.value:.4g} ms ({q.latency.source})"
    if quick and ok:
        return "int8", f"int8 pays: {speed}, {said}"
    why = ([] if quick else [f"is not faster ({speed})"]) + ([] if ok else [f"is over budget ({said})"])
    return float_p, f"int8 {' and '.join(why)}; shipping {float_p}"
