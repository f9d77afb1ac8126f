"""Roofline cost model: kernels + a hardware profile -> predicted latency and memory, with a band.

Each kernel takes max(compute time, memory time) at the profile's peak rates scaled by an efficiency
per kernel kind, plus the profile's fixed dispatch overhead. Uncalibrated, the efficiencies are coarse
defaults and the band is wide (x0.5 .. x2); calibration replaces both with fitted values.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekd.config import Precision, Profile
from edgekd.cost.ops import ELEMENT_BYTES, Kernel

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
UNCALIBRATED_BAND = (0.5, 2.0)  # prediction may be off by 2x either way
RUNTIME_OVERHEAD_MB = 2.0  # session bookkeeping beyond weights and activations (rough, uncalibrated)


@dataclass(frozen=True)
class Prediction:
    value: float
    interval: tuple[float, float]
    detail: str
    source: str = "predicted"


def predict_latency_ms(kernels: list[Kernel], profile: Profile, precision: Precision) -> Prediction:
    peak = profile.peak_gops[precision].value * 1e9
    bandwidth = profile.memory_bandwidth_gbs.value * 1e9
    overhead = profile.dispatch_overhead_us.value * 1e-6
    width = ELEMENT_BYTES[precision]
    seconds = 0.0
    for k in kernels:
        eff_compute, eff_memory = DEFAULT_EFFICIENCY.get(k.kind, DEFAULT_EFFICIENCY["other"])
        compute = k.flops / (peak * eff_compute)
        memory = (k.activation_elems + k.weight_elems) * width / (bandwidth * eff_memory)
        seconds += max(compute, memory) + overhead
    ms = seconds * 1e3
    lo, hi = UNCALIBRATED_BAND
    return Prediction(ms, (ms * lo, ms * hi), f"roofline over {len(kernels)} kernels, {profile.name}, "
                                              f"{precision}, uncalibrated")


def predict_memory_mb(weight_elems: float, peak_activation_elems: float, precision: Precision) -> Prediction:
    """Weights at the artifact's precision + peak live activations (fp32 unless int8) + a runtime share."""
    act_width = 1 if precision == "int8" else 4  # CPU runtimes keep fp16 activations in fp32
    mb = (weight_elems * ELEMENT_BYTES[precision] + peak_activation_elems * act_width) / 2**20
    mb += RUNTIME_OVERHEAD_MB
    lo, hi = UNCALIBRATED_BAND
    return Prediction(mb, (mb * lo, mb * hi), "weights + liveness peak of activations + runtime share")


def predict_onnx(model, profile: Profile, precision: Precision, batch: int = 1) -> tuple[Prediction, Prediction]:
    """(latency, memory) predictions for an ONNX ModelProto."""
    from edgekd.cost.ops import kernels_from_onnx, liveness_peak_elems

    kernels = kernels_from_onnx(model, batch)
    weights = sum(k.weight_elems for k in kernels)
    return (predict_latency_ms(kernels, profile, precision),
            predict_memory_mb(weights, liveness_peak_elems(model, batch), precision))


def predict_torch(module, input_shape: tuple[int, ...], profile: Profile,
                  precision: Precision) -> tuple[Prediction, Prediction]:
    """(latency, memory) predictions for a torch module, by the same model as predict_onnx."""
    from edgekd.cost.ops import kernels_from_torch

    kernels, peak = kernels_from_torch(module, input_shape)
    weights = sum(k.weight_elems for k in kernels)
    return predict_latency_ms(kernels, profile, precision), predict_memory_mb(weights, peak, precision)
