"""Calibration files: per-kernel-type latency predictors and a memory fit for one profile + runtime.

    profiles/calibration/<profile>-<runtime>.json     (written by `edgekd calibrate`)

A kernel's latency is predicted as its roofline time (at the peak rates the calibration measured) times
a correction a tree ensemble learned from timed kernels of that type; a network's latency is a
non-negative mix of its per-type kernel sums plus a per-call constant, fitted on timed small networks.
The band (`interval`) is the spread of measured/predicted over those networks, held out in turn.

A calibration is only valid where it was made: for a detected profile (`host`) the file records the
machine (CPU model, ISA, cores) and is used only on a machine that matches; otherwise prediction falls
back to the roofline with its wide band, and says why in the prediction's detail.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgekd.config import data_dir, format_validation_error
from edgekd.cost.forest import predict_forest
from edgekd.cost.ops import ELEMENT_BYTES, KINDS, Kernel, from_network_kernel
from edgekd.errors import InputError
from edgekd.hostinfo import cpu_name, usable_cores

SCHEMA = "edgekd.calibration/1"
NETWORK_KINDS = KINDS
# What a kernel type's in-network predictor weighs: a per-launch cost, work, traffic, and the time the
# stand-alone forest predicts for it (minus the call), which carries shape effects the linear terms
# cannot. CPU runtimes keep activations in a channel-blocked layout (ORT's NCHWc, oneDNN's nChw16c, one
# block per vector register); a convolution whose channels are not a whole number of blocks leaves that
# layout: its output is reordered back, its input is read unblocked by a slower kernel. The unblocked_*
# terms price that; the block size (4, 8 or 16 channels) is the one that fits the device best.
NET_FEATURES = ("launches", "mflops", "mbytes", "standalone_us", "unblocked_launches", "unblocked_out_mbytes",
                "unblocked_in_mflops")
VECTOR_BLOCKS = (4, 8, 16)
ACT_CODES = {"": 0, "Relu": 1, "Clip": 2}
# Precisions a runtime executes with the fp32 kernels it was calibrated with: OpenVINO's CPU plugin
# decompresses fp16 IR weights at compile time and computes in f32 (edgekd pins INFERENCE_PRECISION_HINT).
SAME_KERNELS_AS_FP32 = {"openvino": ("fp32", "fp16"), "onnxruntime": ("fp32",)}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Roofline(_Strict):
    """The peak rates kernel corrections are relative to (measured when the calibration was made)."""

    peak_gops: float = Field(gt=0)
    bandwidth_gbs: float = Field(gt=0)
    overhead_us: float = Field(ge=0)


class KernelModel(_Strict):
    samples: int
    cv_median_abs_error: float  # of kernel time, relative, 5-fold
    forest: dict[str, Any]


class NetworkModel(_Strict):
    # per kernel kind, the weights of its linear predictor over NET_FEATURES (microseconds per unit)
    coef: dict[str, dict[str, float]]
    intercept_us: float  # per network call
    ratio_interval: tuple[float, float]  # 2.5% / 97.5% of measured / predicted, held-out networks
    within_10pct: float  # share of held-out calibration networks predicted within +-10%
    networks: int


class MemoryModel(_Strict):
    weights: float  # MB per MB of weights at the artifact's precision
    activations: float  # MB per MB of peak live activations
    constant_mb: float
    ratio_interval: tuple[float, float]
    networks: int


class Calibration(_Strict):
    schema_: Literal["edgekd.calibration/1"] = Field(alias="schema")
    profile: str
    runtime: str
    precisions: list[str]
    threads: int
    created: str
    versions: dict[str, str]
    host: dict[str, Any]  # the machine it was measured on (host_identity()), with its key
    roofline: Roofline
    call_overhead_us: float  # a one-element kernel timed alone: the call, not the kernel
    vector_block: int  # channels per block of the runtime's blocked layout (NET_FEATURES)
    kernels: dict[str, KernelModel]
    network: NetworkModel
    memory: MemoryModel
    samples: dict[str, Any] = {}  # what was timed: kernel counts per round, the calibration networks

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # ------------------------------------------------------------------ prediction
    def kernel_us(self, kernels: list[Kernel]) -> np.ndarray:
        """Predicted time of each kernel inside a network, microseconds (the call's cost is separate)."""
        terms = kernel_terms(kernels, self.kernels, self.roofline, self.call_overhead_us, self.vector_block)
        out = np.empty(len(kernels))
        for i, k in enumerate(kernels):
            coef = self.network.coef.get(k.kind if k.kind in NETWORK_KINDS else "other")
            if coef:
                out[i] = sum(coef.get(f, 0.0) * terms[i, j] for j, f in enumerate(NET_FEATURES))
            else:  # a kind the calibration networks never had: its stand-alone time, else the roofline
                out[i] = terms[i, 3] if k.kind in self.kernels else roofline_us(
                    k, self.roofline.peak_gops, self.roofline.bandwidth_gbs, self.roofline.overhead_us)
        return out

    def latency_ms(self, kernels: list[Kernel]) -> float:
        return max(self.network.intercept_us + float(self.kernel_us(kernels).sum()), 0.0) / 1e3

    def memory_mb(self, weight_elems: float, activation_elems: float, precision: str) -> float:
        m = self.memory
        w_mb, a_mb = memory_terms(weight_elems, activation_elems, precision)
        return m.weights * w_mb + m.activations * a_mb + m.constant_mb


# ----------------------------------------------------------------------------- shared helpers
def roofline_us(k: Kernel, peak_gops: float, bandwidth_gbs: float, overhead_us: float, width: int = 4) -> float:
    """Ideal time of a kernel at peak compute or bandwidth (whichever binds) plus the dispatch overhead."""
    compute = k.flops / (peak_gops * 1e3)
    memory = (k.activation_elems + k.weight_elems) * width / (bandwidth_gbs * 1e3)
    return max(compute, memory) + overhead_us


def features(k: Kernel, base_us: float) -> list[float]:
    """What a kernel predictor sees: the launch shape, its fusion, and its work in log scale."""
    nbytes = 4 * (k.activation_elems + k.weight_elems)
    return [k.cin, k.cout, k.hw_in, k.hw_out, k.k, k.stride, k.batch, ACT_CODES.get(k.act, 3), int(k.residual),
            math.log2(k.flops + 1), math.log2(nbytes + 1), math.log2(base_us)]


def standalone_us(kernels: list[Kernel], models: dict[str, KernelModel], r: Roofline) -> np.ndarray:
    """Each kernel's time run alone as its one-kernel model, by its kind's forest (nan without one)."""
    alone = [from_network_kernel(k) for k in kernels]
    out = np.full(len(kernels), np.nan)
    for kind, model in models.items():
        idx = [i for i, a in enumerate(alone) if a is not None and a.kind == kind]
        if idx:
            picked = [alone[i] for i in idx]
            base = np.array([roofline_us(a, r.peak_gops, r.bandwidth_gbs, r.overhead_us) for a in picked])
            x = np.array([features(a, b) for a, b in zip(picked, base, strict=True)])
            out[idx] = base * np.exp(predict_forest(model.forest, x))
    return out


def kernel_terms(kernels: list[Kernel], models: dict[str, KernelModel], r: Roofline, call_us: float,
                 block: int) -> np.ndarray:
    """One row per kernel: what its kind's linear predictor weighs (NET_FEATURES, in that order)."""
    alone = standalone_us(kernels, models, r)
    rows = []
    for k, t in zip(kernels, alone, strict=True):
        conv = k.kind in ("conv", "dwconv")
        out_off, in_off = conv and k.cout % block != 0, conv and k.cin % block != 0
        rows.append([1.0, k.flops / 1e6, 4 * (k.activation_elems + k.weight_elems) / 1e6,
                     0.0 if np.isnan(t) else max(t - call_us, 0.0), float(out_off),
                     4 * k.output_elems / 1e6 if out_off else 0.0, k.flops / 1e6 if in_off else 0.0])
    return np.array(rows).reshape(len(kernels), len(NET_FEATURES))


def memory_terms(weight_elems: float, activation_elems: float, precision: str) -> tuple[float, float]:
    """(weights MB at the artifact's precision, peak live activations MB; fp32 unless int8)."""
    act_width = 1 if precision == "int8" else 4  # CPU runtimes keep fp16 activations in fp32
    return weight_elems * ELEMENT_BYTES[precision] / 2**20, activation_elems * act_width / 2**20


def host_identity() -> dict[str, Any]:
    """This machine as far as kernel speed goes: CPU model, ISA extensions, usable cores, architecture."""
    return dict(_host_identity())


@lru_cache(maxsize=1)
def _host_identity() -> dict[str, Any]:
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("cpu family", "model", "stepping", "flags", "Features", "CPU part") and key not in info:
                info[key] = value.strip()
    except OSError:
        pass
    isa = hashlib.sha1((info.pop("flags", "") + info.pop("Features", "")).encode()).hexdigest()[:12]
    ident = {"cpu": cpu_name(), "model": " ".join(f"{k}={v}" for k, v in sorted(info.items())),
             "isa": isa, "cores": usable_cores(), "arch": platform.machine()}
    ident["key"] = hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    return ident


# ----------------------------------------------------------------------------- files
def calibration_dir() -> Path:
    """profiles/calibration/, or $EDGEKD_CALIBRATION_DIR (a writable place for an installed edgekd)."""
    override = os.environ.get("EDGEKD_CALIBRATION_DIR")
    return Path(override) if override else data_dir("profiles") / "calibration"


def calibration_path(profile: str, runtime: str) -> Path:
    return calibration_dir() / f"{profile}-{runtime}.json"


def load_calibration(path: Path) -> Calibration:
    """A calibration file, validated; a broken one is one clear line (exit 2), never a traceback."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: calibration file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e}); re-run `edgekd calibrate`") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise InputError(f"{path}: field 'schema' is {found!r}, expected '{SCHEMA}'; re-run `edgekd calibrate`")
    try:
        return Calibration.model_validate(data)
    except ValidationError as e:

        raise InputError(format_validation_error(str(path), e)) from None


@lru_cache(maxsize=16)
def _cached(path: str, mtime: float) -> Calibration:
    return load_calibration(Path(path))


def save_calibration(cal: Calibration, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cal.model_dump(by_alias=True), separators=(",", ":")))
    tmp.replace(path)
    return path


def find_calibration(profile, runtime: str | None, precision: str) -> tuple[Calibration | None, str]:
    """The calibration that applies to (profile, runtime, precision) here, or None and why not."""
    if runtime is None:
        return None, "no runtime given"
    path = calibration_path(profile.name, runtime)
    if not path.is_file():
        return None, f"no calibration for {profile.name} + {runtime} (run `edgekd calibrate`)"
    cal = _cached(str(path), path.stat().st_mtime)
    if precision not in cal.precisions:
        return None, f"{path.name} covers {', '.join(cal.precisions)}, not {precision}"
    if profile.threads is not None and profile.threads != cal.threads:
        return None, f"{path.name} was timed with {cal.threads} threads, the profile runs {profile.threads}"
    note = ""
    if profile.detect:
        here = host_identity()
        if cal.host.get("key") != here["key"]:
            return None, (f"{path.name} was measured on another machine ({cal.host.get('cpu')}, "
                          f"{cal.host.get('cores')} cores) than this one ({here['cpu']}, {here['cores']} cores)")
        installed = runtime_version(runtime)
        if installed and installed != cal.versions.get(runtime):
            note = f"; timed with {runtime} {cal.versions.get(runtime)}, {installed} is installed here"
    return cal, (f"calibrated ({path.name}, {cal.runtime} {cal.versions.get(cal.runtime, '?')}, "
                 f"{cal.created[:10]}{note})")


def runtime_version(runtime: str) -> str:
    """The installed version of a runtime's Python package, "" if it is not installed."""
    try:
        return metadata.version({"tensorrt": "tensorrt"}.get(runtime, runtime))
    except metadata.PackageNotFoundError:
        return ""
