"""Whether an artifact can be measured here (and on how many threads), and what the cost model predicts
where it cannot."""

from __future__ import annotations

import platform

import onnx

from edgekd.config import Profile
from edgekd.cost.roofline import predict_onnx
from edgekd.figures import Figure, Figures
from edgekd.hostinfo import usable_cores
from edgekd.runtimes import create_backend


def local_measurement_blocker(profile: Profile, runtime: str) -> str | None:
    """None when timing on this host stands for the target device; otherwise why it cannot."""
    reason = create_backend(runtime).unavailable_reason()
    if reason:
        return reason
    if profile.detect or platform.machine() in profile.measurable_on:
        return None
    return f"this host is not a {profile.name} ({profile.arch}); connect one with --remote ssh://..."


def local_threads(profile: Profile) -> int:
    """The profile's threads, but no more than this host's cores: a 4-thread profile timed on 2 cores would
    measure oversubscription, not the model."""
    return min(profile.threads, usable_cores())


def predicted_figures(onnx_path, profile: Profile, precision: str, batch: int, runtime: str,
                      blocker: str) -> Figures:
    """Latency and memory of an ONNX model predicted by the cost model for `runtime` on the profile."""
    latency, memory = predict_onnx(onnx.load(str(onnx_path)), profile, precision, batch, runtime=runtime)
    return Figures(Figure(latency.value, "predicted", tuple(latency.interval), latency.detail),
                   Figure(memory.value, "predicted", tuple(memory.interval), memory.detail), {"blocker": blocker})
