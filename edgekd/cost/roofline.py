"""Cost model: kernels + a hardware profile (+ a calibration, where one applies) -> latency and memory.

Uncalibrated, each kernel takes max(compute time, memory time) at the profile's peak rates scaled by a
coarse efficiency per kernel kind, plus the profile's fixed dispatch overhead, and the band is wide.
Where `edgekd calibrate` has measured the profile + runtime (calibration.py), the per-kind predictors
and the network fit replace the efficiencies, and the band comes from the calibration's held-out errors.
Every result is labelled `predicted` and says in `detail` which of the two produced it and why.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekd.config import Precision, Profile
from edgekd.cost.calibration import find_calibration, memory_terms, roofline_us
from edgekd.cost.ops import ELEMENT_BYTES, Kernel, kernels_from_torch, onnx_kernels_and_peak

# Share of peak a kernel kind reaches (compute, memory). Defaults until a calibration exists: dense
# convolutions and GEMMs reach about half of peak on CPUs and edge GPUs; depthwise convolutions have
# too little reuse to use the vector units well; pools and element-wise ops are memory-bound.
DEFAULT_EFFICIENCY = {
    "conv": (0.5, 0.6),
    "dwconv": (0.1, 0.5),
    "gemm": (0.4, 0.6),
    "pool": (0.1, 0.5),
    "eltwise": (0.1, 0.5),
    "other": (0.1, 0.5),
}
# How far an uncalibrated roofline may be off, either way: on this project's x86 host it landed between
# 0.4x and 2.7x of the measured latency over 100+ search-space networks (benchmarks/cost_accuracy.py),
# so the band is x1/3 .. x3; a device the roofline knows less well can only be worse.
UNCALIBRATED_BAND = (1 / 3, 3.0)
# How far a speed-up the cost model predicts (teacher / student, both priced by it) may be off. Their shared
# error cancels in part, so the band is narrower than a latency's: timed against the teacher, the search's
# anchors and picks ran 0.69x to 0.96x of their predicted speed-up on host-cpu (32 timings on a 2-core host) and
# down to 0.63x on openvino (docs/architecture.md, "Predicted speed-ups"); so x0.6 .. x1/0.6 around the
# prediction. A GPU (jetson) is not validated here.
SPEEDUP_BAND = (0.6, 1 / 0.6)
RUNTIME_OVERHEAD_MB = 2.0  # session bookkeeping beyond weights and activations (uncalibrated)


@dataclass(frozen=True)
class Prediction:
    value: float
    interval: tuple[float, float]
    detail: str
    source: str = "predicted"


def roofline_latency_ms(kernels: list[Kernel], profile: Profile, precision: Precision) -> float:
    """The uncalibrated roofline: per-kind efficiencies from DEFAULT_EFFICIENCY."""
    peak = profile.peak_gops[precision].value
    bandwidth = profile.memory_bandwidth_gbs.value
    overhead = profile.dispatch_overhead_us.value
    width = ELEMENT_BYTES[precision]
    us = 0.0
    for k in kernels:
        eff_compute, eff_memory = DEFAULT_EFFICIENCY.get(k.kind, DEFAULT_EFFICIENCY["other"])
        us += roofline_us(k, peak * eff_compute, bandwidth * eff_memory, overhead, width)
    return us / 1e3


def predict_latency_ms(kernels: list[Kernel], profile: Profile, precision: Precision,
                       runtime: str | None = None) -> Prediction:
    cal, why = find_calibration(profile, runtime, precision)
    where = f"{len(kernels)} kernels, {profile.name}" + (f" + {runtime}" if runtime else "") + f", {precision}"
    if cal is not None:
        ms = cal.latency_ms(kernels)
        lo, hi = cal.network.ratio_interval
        return Prediction(ms, (ms * lo, ms * hi), f"calibrated kernel predictors over {where}: {why}")
    ms = roofline_latency_ms(kernels, profile, precision)
    lo, hi = UNCALIBRATED_BAND
    return Prediction(ms, (ms * lo, ms * hi), f"roofline over {where}, uncalibrated: {why}")


def predict_memory_mb(weight_elems: float, peak_activation_elems: float, precision: Precision,
                      profile: Profile | None = None, runtime: str | None = None) -> Prediction:
    """Weights at the artifact's precision + peak live activations + the runtime's share."""
    cal, why = find_calibration(profile, runtime, precision) if profile is not None else (None, "no profile given")
    if cal is not None:
        mb = cal.memory_mb(weight_elems, peak_activation_elems, precision)
        lo, hi = cal.memory.ratio_interval
        return Prediction(mb, (mb * lo, mb * hi), f"calibrated weights + activations fit: {why}")
    w_mb, a_mb = memory_terms(weight_elems, peak_activation_elems, precision)
    mb = w_mb + a_mb + RUNTIME_OVERHEAD_MB
    lo, hi = UNCALIBRATED_BAND
    return Prediction(mb, (mb * lo, mb * hi), f"weights + liveness peak of activations + runtime share, "
                                              f"uncalibrated: {why}")


def predict_kernels(kernels: list[Kernel], peak_elems: float, profile: Profile, precision: Precision,
                    runtime: str | None = None) -> tuple[Prediction, Prediction]:
    weights = sum(k.weight_elems for k in kernels)
    return (predict_latency_ms(kernels, profile, precision, runtime),
            predict_memory_mb(weights, peak_elems, precision, profile, runtime))


def predict_onnx(model, profile: Profile, precision: Precision, batch: int = 1,
                 runtime: str | None = None) -> tuple[Prediction, Prediction]:
    """(latency, memory) predictions for an ONNX ModelProto on `profile` through `runtime`."""
    kernels, peak = onnx_kernels_and_peak(model, batch)
    return predict_kernels(kernels, peak, profile, precision, runtime)


def predict_torch(module, input_shape: tuple[int, ...], profile: Profile, precision: Precision,
                  runtime: str | None = None) -> tuple[Prediction, Prediction]:
    """(latency, memory) predictions for a torch module, by the same model as predict_onnx."""
    kernels, peak = kernels_from_torch(module, input_shape)
    return predict_kernels(kernels, peak, profile, precision, runtime)
