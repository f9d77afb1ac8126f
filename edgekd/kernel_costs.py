"""Where the student's latency goes: the cost model's prediction for each fused kernel of its ONNX.

The same predictor the search priced candidates with (calibrated per kernel where `edgekd calibrate` has
run for the profile and runtime, the roofline otherwise), so the figures are predictions, and labelled so.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from edgekd.config import load_profile
from edgekd.cost.calibration import find_calibration, roofline_us
from edgekd.cost.ops import ELEMENT_BYTES, onnx_kernels_and_peak
from edgekd.cost.roofline import DEFAULT_EFFICIENCY


def kernel_costs(onnx_path: Path, profile_name: str, runtime: str | None, precision: str, batch: int = 1) -> dict:
    """{"source": "calibrated"|"roofline", "kernels": [{kind, shape, flops, us}], "total_us"} in graph order."""
    profile = load_profile(profile_name)
    kernels, _ = onnx_kernels_and_peak(onnx.load(str(onnx_path)), batch)
    cal, why = find_calibration(profile, runtime, precision)
    if cal is not None:
        us, source = [float(v) for v in cal.kernel_us(kernels)], "calibrated"
    else:
        peak, bandwidth = profile.peak_gops[precision].value, profile.memory_bandwidth_gbs.value
        overhead, width = profile.dispatch_overhead_us.value, ELEMENT_BYTES[precision]
        us = []
        for k in kernels:
            eff_c, eff_m = DEFAULT_EFFICIENCY.get(k.kind, DEFAULT_EFFICIENCY["other"])
            us.append(roofline_us(k, peak * eff_c, bandwidth * eff_m, overhead, width))
        source = "roofline"
    rows = []
    for i, (k, t) in enumerate(zip(kernels, us, strict=True)):
        shape = (f"{k.cin}->{k.cout}, k{k.k} s{k.stride}, {k.hw_in}->{k.hw_out} px" if k.cin or k.cout else "")
        rows.append({"index": i, "kind": k.kind + ("+res" if k.residual else ""), "shape": shape,
                     "flops": k.flops, "us": t})
    return {"source": source, "detail": why, "profile": profile.name, "precision": precision, "kernels": rows,
            "total_us": sum(us)}
