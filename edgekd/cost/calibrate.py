"""`edgekd calibrate`: time kernels and small networks through the real runtime, fit the predictors.

Two levels, as on a real device the two disagree:
1. Kernels (nn-Meter style). Fused-kernel configurations are drawn from networks of the search spaces,
   each is run alone as a one-kernel ONNX model through the runtime, and a tree ensemble per kernel type
   learns its time relative to the roofline. Rounds of fresh configurations are then timed, and where the
   ensemble errs most, neighbouring configurations are added before refitting.
2. Networks. Alone, a kernel pays for what a network amortises (the call, layout reorders, thread
   wake-up), so small sampled networks are timed whole and each kernel type gets a non-negative linear
   predictor over its features (a per-launch cost, FLOPs, bytes, and the stand-alone ensemble's time),
   fitted on the networks as sums over their kernels. Networks whose held-out prediction errs most get
   neighbours (one field of the architecture changed) timed and added. The held-out errors make the band.
Memory: each network's peak RSS (runtimes/memprobe.py) against its weights and liveness peak.
"""

from __future__ import annotations

import dataclasses
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
import sklearn
import yaml

import edgekd
from edgekd.config import Profile
from edgekd.cost.calibration import (
    SAME_KERNELS_AS_FP32,
    VECTOR_BLOCKS,
    Calibration,
    KernelModel,
    NetworkModel,
    Roofline,
    host_identity,
    load_calibration,
    memory_terms,
    runtime_version,
)
from edgekd.cost.fit import fit_kernel_models, fit_memory, fit_network, network_features, worst
from edgekd.cost.ops import (
    TIMED_ALONE,
    Kernel,
    from_network_kernel,
    kernels_from_torch,
    make_kernel,
    onnx_kernels_and_peak,
    side_of,
)
from edgekd.cost.samples import (
    INPUT_SHAPES,
    build_network,
    exported_network,
    kernel_inputs,
    kernel_model,
    network_cache,
    network_key,
    sample_arch,
    sample_networks,
)
from edgekd.errors import InputError, StageFailed
from edgekd.hostinfo import usable_cores
from edgekd.measure import Canary, measure_artifact, time_calls, timing_lock
from edgekd.remote import parse_remote, run_remote
from edgekd.runtimes import Artifact, create_backend
from edgekd.runtimes.memprobe import measure_memory_mb

KERNEL_KINDS = TIMED_ALONE
# Other processes only slow a timing down: a disturbed one is repeated, the fastest try kept (measure.py).
# Timing windows span a tenth of a second or more, so a burst of other work cannot hide inside one.
KERNEL_TIMING = {"warmup": 5, "warmup_s": 0.05, "min_runs": 20, "min_seconds": 0.15, "max_seconds": 0.6,
                 "max_runs": 50_000, "rel_width": 0.03, "tries": 5}
NETWORK_TIMING = {"max_seconds": 1.5, "rel_width": 0.02, "tries": 5}
MAX_INTERFERENCE = 0.2  # timings that waited longer than this share for a CPU on every try are not fitted
MIN_FIT_NETWORKS = 3  # fewer clean network timings than this: the network fit uses the disturbed ones too
PATIENCE_S = 6.0  # how long one timing waits for a slow or busy machine before it is kept as it is


CANARY_TOLERANCE = 1.1  # a canary reading this much above its best marks the machine as running slow
# Share of each round's stand-alone kernels per kind: convolutions dominate the networks' time.
KERNEL_SHARES = {"conv": 0.45, "dwconv": 0.25, "gemm": 0.1, "pool": 0.1, "eltwise": 0.1}


def patiently(measure: Callable[[], object], interference: Callable[[object], float | None],
              canary: Canary | None = None) -> tuple[object, float]:
    """(measure(), the slower canary reading around it), repeated after pauses while other processes keep
    it waiting for a CPU or the canary says the machine runs slow (up to PATIENCE_S)."""
    waited = 0.0
    while True:
        before = canary.reading() if canary else 0.0
        result = measure()
        after = canary.reading() if canary else 0.0
        slow = canary is not None and max(before, after) > CANARY_TOLERANCE * canary.best_ms
        if (not slow and (interference(result) or 0.0) <= MAX_INTERFERENCE) or waited >= PATIENCE_S:
            return result, max(before, after)
        time.sleep(2.0)
        waited += 2.0


@dataclasses.dataclass
class SampleCounts:
    """How much to time; the defaults take about ten minutes on a 2-core x86 host per runtime."""

    kernels: int = 240  # first round of stand-alone kernels
    rounds: int = 2  # adaptive kernel rounds after it
    networks: int = 100  # first set of calibration networks
    refine_networks: int = 20  # neighbours of the worst-predicted networks
    memory_networks: int = 40  # networks whose peak memory is probed (a process start each)
    seed: int = 0


# ----------------------------------------------------------------------------- kernel configurations
def perturb(k: Kernel, rng: np.random.Generator) -> Kernel:
    """A neighbouring configuration: one or two of channels, resolution, stride, fusion changed."""
    cin, cout, side, stride, act, residual = k.cin, k.cout, side_of(k.hw_in), k.stride, k.act, k.residual
    for _ in range(int(rng.integers(1, 3))):
        what = rng.integers(4)
        if what == 0:
            cin = max(8, int(cin * rng.choice([0.5, 0.75, 1.25, 1.5, 2.0])) // 8 * 8)
        elif what == 1:
            cout = max(8, int(cout * rng.choice([0.5, 0.75, 1.25, 1.5, 2.0])) // 8 * 8)
        elif what == 2:
            side = int(np.clip(side * rng.choice([0.5, 2.0]), 1, 64))
        elif k.kind in ("conv", "dwconv"):
            stride = 3 - stride if side > 1 else 1
            residual = residual and stride == 1
    return make_kernel(k.kind, cin, cout, side, k.k, stride, act, residual, k.batch)


def kernel_key(k: Kernel) -> tuple:
    return (k.kind, k.cin, k.cout, k.hw_in, k.k, k.stride, k.act, k.residual, k.batch)


def kernel_pool(rng: np.random.Generator, networks: int = 60) -> dict[str, list[Kernel]]:
    """Distinct stand-alone kernels of random search-space networks, by kind (stand-alone eltwise
    kernels never occur in them, so those are drawn from the activation shapes they have)."""
    pool: dict[str, dict[tuple, Kernel]] = {kind: {} for kind in KERNEL_KINDS}
    for i in range(networks):
        arch = sample_arch(("resnet", "mobilenetv2")[i % 2], rng)
        shape = INPUT_SHAPES[int(rng.integers(len(INPUT_SHAPES)))]
        kernels, _ = kernels_from_torch(build_network(arch, shape), (1, *shape))
        for k in kernels:
            alone = from_network_kernel(k)
            if alone is not None:
                pool[alone.kind].setdefault(kernel_key(alone), alone)
                if alone.kind == "conv" and alone.hw_out > 1:
                    e = make_kernel("eltwise", alone.cout, alone.cout, side_of(alone.hw_out))
                    pool["eltwise"].setdefault(kernel_key(e), e)
    return {kind: list(v.values()) for kind, v in pool.items()}


# ----------------------------------------------------------------------------- timing
def feed_all(session, arrays: list[np.ndarray]) -> Callable[[], object]:
    """A call that runs `session` on all of `arrays` (one-kernel models with a residual take two inputs)."""
    if len(arrays) == 1:
        x = arrays[0]
        return lambda: session.run(x)
    ort = getattr(session, "session", None)
    if ort is not None and hasattr(ort, "get_inputs"):  # edgekd's OrtSession
        feed = {i.name: a for i, a in zip(ort.get_inputs(), arrays, strict=True)}
        return lambda: ort.run(None, feed)
    request = getattr(session, "request", None)
    if request is not None:  # edgekd's OpenVinoSession: copy the output out, as its run() does
        feed = dict(enumerate(arrays))
        return lambda: (request.infer(feed), request.get_output_tensor(0).data.copy())
    raise RuntimeError(f"cannot feed {len(arrays)} inputs to a {type(session).__name__}")


class KernelTimer:
    """Times one-kernel ONNX models through a runtime backend (compile + load + run, as edgekd does)."""

    def __init__(self, backend, threads: int, arch: str, canary: Canary | None = None):
        self.backend, self.threads, self.arch, self.canary = backend, threads, arch, canary
        self.workdir = Path(tempfile.mkdtemp(prefix="edgekd-calibrate-"))
        self.count = 0

    def __call__(self, k: Kernel) -> tuple[float, float, float]:
        """(microseconds, interference, canary reading in ms) of kernel `k`."""
        self.count += 1
        model = kernel_model(k, seed=self.count)
        folder = self.workdir / f"k{self.count}"
        folder.mkdir()
        path = folder / "kernel.onnx"
        onnx.save(model, str(path))
        artifact = self.backend.compile(path, folder / "compiled", "fp32", None, self.arch)
        session = self.backend.load(artifact, self.threads)
        run = feed_all(session, kernel_inputs(model, self.count))
        stats, canary_ms = patiently(lambda: time_calls(run, **KERNEL_TIMING), lambda st: st.interference,
                                     self.canary)
        del session
        shutil.rmtree(folder, ignore_errors=True)
        return stats.value_ms * 1e3, stats.interference or 0.0, canary_ms

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def perturb_arch(arch: dict, rng: np.random.Generator) -> dict:
    """A neighbouring architecture: one field of `arch` changed."""
    other = sample_arch(arch["family"], rng)
    field = str(rng.choice(sorted(set(arch) - {"family"})))
    out = dict(arch)
    out[field] = other[field]
    if arch["family"] == "resnet" and len(out["widths"]) != len(out["blocks"]):
        out = other
    return out


# ----------------------------------------------------------------------------- the command
def check_calibratable(profile: Profile, runtime: str, remote: str | None) -> None:
    """Raise InputError unless `runtime` can be timed for `profile` from here (or on the --remote device)."""
    if runtime not in profile.runtimes:
        raise InputError(f"--runtime {runtime}: profile '{profile.name}' runs {', '.join(profile.runtimes)}")
    if remote is not None:
        parse_remote(remote)  # a malformed URL is one clear line
        if profile.detect:
            raise InputError(f"--remote {remote}: profile '{profile.name}' is the machine edgekd runs on; calibrate "
                             "it here without --remote, or name the device's profile (e.g. --profile raspberry-pi-5)")
        return  # the device checks that it is one and has the runtime (this check, run there)
    if not (profile.detect or platform.machine() in profile.measurable_on):
        raise InputError(f"--profile {profile.name}: this {platform.machine()} host is not a {profile.name}; "
                         "calibrate on the device (or with --remote ssh://user@device)")

    if profile.threads > usable_cores():
        # timing 4 threads on 2 cores measures oversubscription, not the device the profile describes
        raise InputError(f"--profile {profile.name}: it runs {profile.threads} threads and this host has "
                         f"{usable_cores()} cores; calibrate on the device (or with --remote ssh://user@device)")

    reason = create_backend(runtime).unavailable_reason()
    if reason:
        raise InputError(f"--runtime {runtime}: {reason}")


def calibrate_remote(profile: Profile, runtime: str, budget: SampleCounts, progress, remote: str) -> Calibration:
    """`edgekd calibrate` run on the --remote device over ssh (edgekd.remote), with this profile as a file
    (the device may not know a custom one); the calibration it writes there comes back validated."""
    with tempfile.TemporaryDirectory(prefix="edgekd-calibrate-remote-") as tmp:
        spec = Path(tmp) / f"{profile.name}.yaml"
        spec.write_text(yaml.safe_dump(profile.model_dump(mode="json", by_alias=True, exclude_unset=True)))
        args: list = ["calibrate", "--profile", spec, "--runtime", runtime, "--out", "calibration.json",
                      "--kernels", budget.kernels, "--rounds", budget.rounds, "--networks", budget.networks,
                      "--refine", budget.refine_networks, "--memory-networks", budget.memory_networks,
                      "--seed", budget.seed]
        task = progress.add_task(f"calibrate on {remote} (the timing runs there)", total=None)
        r = run_remote(remote, [str(a) if not isinstance(a, Path) else a for a in args], files=[spec],
                       fetch=["calibration.json"], into=Path(tmp) / "back", timeout_s=6 * 3600)
        progress.update(task, total=1, completed=1)
        if "calibration.json" not in r.files:
            raise StageFailed(f"on {remote}: `{r.command}` wrote no calibration.json")
        cal = load_calibration(r.files["calibration.json"])
    if (cal.profile, cal.runtime) != (profile.name, runtime):
        raise StageFailed(f"on {remote}: the device calibrated {cal.profile} + {cal.runtime}, "
                          f"not {profile.name} + {runtime}")
    return cal


def _versions(backend, runtime: str) -> dict[str, str]:
    return {runtime: runtime_version(runtime), f"{runtime}_build": str(backend.versions().get(runtime, "")),
            "edgekd": edgekd.__version__, "onnx": onnx.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "python": platform.python_version()}


def calibrate(profile: Profile, runtime: str, budget: SampleCounts, progress, remote: str | None = None) -> Calibration:
    """Time kernels and networks of `profile` through `runtime` and fit a Calibration (see module doc).

    `progress` is a rich Progress (or anything with add_task/advance/update). Timing runs under
    measure.timing_lock(); exporting networks does not. With `remote`, all of it runs on that device.
    """
    check_calibratable(profile, runtime, remote)
    if remote is not None:
        return calibrate_remote(profile, runtime, budget, progress, remote)
    run = LocalRun(profile, runtime, budget, progress)
    try:
        with timing_lock():
            run.warm_up()
            run.time_kernels(run.draw(budget.kernels), "kernels")
            for i in range(budget.rounds):
                fresh = run.time_kernels(run.draw(budget.kernels // 4), f"kernels, adaptive round {i + 1}")
                bad = worst(run.fit_kernels(), fresh, run.roofline, 0.3)
                run.time_kernels([perturb(k, run.rng) for k in bad for _ in range(2)],
                                 f"neighbours of worst, round {i + 1}")
            run.time_networks(run.nets, run.paths, "calibration networks")
        if budget.refine_networks:
            extra = run.neighbours_of_worst()
            extra_paths = run.export(extra, "neighbours of the worst-predicted networks")
            with timing_lock():
                run.time_networks(extra, extra_paths, "neighbour networks")
        with timing_lock():
            run.retime_slow()
            run.probe_memory()
        return run.result()
    finally:
        run.close()


@dataclasses.dataclass
class TimedKernel:
    kernel: Kernel
    us: float
    interference: float  # share of the timing spent waiting for a CPU
    canary_ms: float  # the slower canary reading around it


@dataclasses.dataclass
class TimedNetwork:
    arch: dict
    input_shape: list[int]
    weights: float  # elements
    activations: float  # liveness peak, elements
    kernels: list[Kernel]
    artifact: Artifact
    measured_ms: float = float("inf")  # the fastest timing seen: slow spells only ever slow a timing down
    interference: float = 0.0
    canary_ms: float = 0.0
    memory_mb: float | None = None

    def record(self, clean: bool, used: bool) -> dict:
        """What calibration.json keeps of it."""
        return {"arch": self.arch, "input_shape": self.input_shape, "measured_ms": self.measured_ms,
                "interference": self.interference, "canary_ms": self.canary_ms} | (
            {"memory_mb": self.memory_mb} if self.memory_mb is not None else {}) | {"clean": clean, "used": used}


class LocalRun:
    """One calibration on this machine: what has been timed so far, and the fits over it."""

    def __init__(self, profile: Profile, runtime: str, budget: SampleCounts, progress):
        self.profile, self.runtime, self.budget, self.progress = profile, runtime, budget, progress
        self.backend = create_backend(runtime)
        self.threads = profile.threads
        self.roofline = Roofline(peak_gops=profile.peak_gops["fp32"].value,
                                 bandwidth_gbs=profile.memory_bandwidth_gbs.value,
                                 overhead_us=profile.dispatch_overhead_us.value)
        self.rng = np.random.default_rng(budget.seed)
        self.cache, self.workdir = network_cache(), Path(tempfile.mkdtemp(prefix="edgekd-calibrate-nets-"))
        self.nets = sample_networks(budget.networks, seed=budget.seed + 1)
        self.paths = self.export(self.nets, "calibration networks")
        self.pool = kernel_pool(self.rng)
        self.untimed = {kind: list(self.rng.permutation(len(self.pool[kind]))) for kind in KERNEL_KINDS}
        # The canary: a small MobileNetV2, many tiny kernels, so it feels slow thread hand-offs as much as
        # the networks do (a big ResNet, compute-bound, barely notices them).
        c = next((i for i, (arch, _) in enumerate(self.nets) if arch["family"] == "mobilenetv2"), 0)
        canary_art = self.backend.compile(self.paths[c], self.workdir / "canary", "fp32", None, profile.arch)
        canary_session = self.backend.load(canary_art, self.threads)
        x0 = np.zeros((1, *self.nets[c][1]), np.float32)
        self.canary = Canary(lambda: canary_session.run(x0))
        self.timer = KernelTimer(self.backend, self.threads, profile.arch, self.canary)
        self.timed: dict[tuple, TimedKernel] = {}  # by kernel_key
        self.rounds: list[dict] = []
        self.measured: list[TimedNetwork] = []
        self.call_us = 0.0

    def export(self, archs: list[tuple[dict, tuple]], label: str) -> list[Path]:
        task = self.progress.add_task(f"export {label}", total=len(archs))
        out = []
        for arch, shape in archs:
            out.append(exported_network(arch, shape, self.cache))
            self.progress.advance(task)
        return out

    def draw(self, n: int) -> list[Kernel]:
        """`n` kernels not timed yet, in KERNEL_SHARES."""
        picked = []
        for kind in KERNEL_KINDS:
            take = max(2, round(n * KERNEL_SHARES[kind]))
            picked += [self.pool[kind][i] for i in self.untimed[kind][:take]]
            self.untimed[kind] = self.untimed[kind][take:]
        return picked

    def warm_up(self) -> None:
        for _ in range(5):
            self.canary.reading()
        self.call_us = self.timer(make_kernel("pool", 1, 1, 1))[0]  # the call itself: a one-element kernel

    def time_kernels(self, kernels: list[Kernel], label: str) -> list[tuple[Kernel, float]]:
        kernels = [k for k in kernels if kernel_key(k) not in self.timed]
        task = self.progress.add_task(f"time {label}", total=len(kernels))
        for k in kernels:
            self.timed[kernel_key(k)] = TimedKernel(k, *self.timer(k))
            self.progress.advance(task)
        self.rounds.append({"round": label, "kernels": len(kernels)})
        return [(k, self.timed[kernel_key(k)].us) for k in kernels]

    def is_clean(self, t: TimedKernel | TimedNetwork) -> bool:
        """Timed while nothing slowed the machine (judged against the best canary of the whole run)."""
        return t.interference <= MAX_INTERFERENCE and t.canary_ms <= CANARY_TOLERANCE * self.canary.best_ms

    def fit_kernels(self) -> dict[str, KernelModel]:
        by_kind: dict[str, list[tuple[Kernel, float]]] = {kind: [] for kind in KERNEL_KINDS}
        for t in filter(self.is_clean, self.timed.values()):
            by_kind[t.kernel.kind].append((t.kernel, t.us))
        return fit_kernel_models(by_kind, self.roofline, self.budget.seed)

    def time_network(self, n: TimedNetwork) -> None:
        m, canary_ms = patiently(lambda: measure_artifact(n.artifact, (1, *n.input_shape), self.threads,
                                                          **NETWORK_TIMING), lambda m: m.stats.interference,
                                 self.canary)
        if m.value_ms < n.measured_ms:  # slow spells only ever slow a timing down
            n.measured_ms, n.interference, n.canary_ms = m.value_ms, m.stats.interference or 0.0, canary_ms

    def time_networks(self, archs: list[tuple[dict, tuple]], files: list[Path], label: str) -> None:
        task = self.progress.add_task(f"time {label}", total=len(archs))
        for (arch, shape), path in zip(archs, files, strict=True):
            kernels, peak = onnx_kernels_and_peak(onnx.load(str(path)))
            n = TimedNetwork(arch, list(shape), sum(k.weight_elems for k in kernels), peak, kernels,
                             self.backend.compile(path, self.workdir / path.stem, "fp32", None, self.profile.arch))
            self.time_network(n)
            self.measured.append(n)
            self.progress.advance(task)

    def retime_slow(self) -> None:
        """Once more, what was timed during a slow spell by the run's best canary (a spell can outlast the
        patience of one timing); the faster timing is kept."""
        kernels = [t for t in self.timed.values() if not self.is_clean(t)]
        nets = [n for n in self.measured if not self.is_clean(n)]
        task = self.progress.add_task("time again what ran in slow spells", total=len(kernels) + len(nets))
        for t in kernels:
            again = TimedKernel(t.kernel, *self.timer(t.kernel))
            if again.us < t.us:
                self.timed[kernel_key(t.kernel)] = again
            self.progress.advance(task)
        for n in nets:
            self.time_network(n)
            self.progress.advance(task)

    def network_fit(self, models: dict[str, KernelModel]):
        """(coef, intercept, held-out ratios, vector block, networks used): the per-kind predictors for the
        vector block that predicts held-out networks best."""
        kept = [n for n in self.measured if self.is_clean(n)]
        if len(kept) < MIN_FIT_NETWORKS:
            # A machine busy through every retry: fit on all networks, each at the fastest timing seen, rather
            # than on too few to fit at all; the file marks which timings were disturbed ("clean": false).
            kept = list(self.measured)
        best = None
        for block in VECTOR_BLOCKS:
            rows = [(network_features(n.kernels, models, self.roofline, self.call_us, block), n.measured_ms * 1e3)
                    for n in kept]
            coef, intercept, ratios = fit_network(rows, self.budget.seed)
            score = (float(np.mean(np.abs(ratios - 1) <= 0.1)), -float(np.median(np.abs(ratios - 1))))
            if best is None or score > best[0]:
                best = (score, coef, intercept, ratios, block)
        return (*best[1:], kept)

    def neighbours_of_worst(self) -> list[tuple[dict, tuple]]:
        """Two neighbours (one field changed) of each of the networks the current fit predicts worst."""
        *_, ratios, _, kept = self.network_fit(self.fit_kernels())
        keys = {network_key(n.arch, tuple(n.input_shape)) for n in self.measured}
        extra = []
        for i in np.argsort(-np.abs(ratios - 1))[: max(1, self.budget.refine_networks // 2)]:
            for _ in range(2):
                arch, shape = perturb_arch(kept[i].arch, self.rng), tuple(kept[i].input_shape)
                if network_key(arch, shape) not in keys:
                    keys.add(network_key(arch, shape))
                    extra.append((arch, shape))
        return extra

    def probe_memory(self) -> None:
        probe = self.measured[: self.budget.memory_networks]
        task = self.progress.add_task("probe peak memory", total=len(probe))
        for n in probe:
            n.memory_mb = measure_memory_mb(n.artifact, (1, *n.input_shape), self.threads)
            self.progress.advance(task)

    def result(self) -> Calibration:
        models = self.fit_kernels()
        coef, intercept, ratios, block, kept = self.network_fit(models)
        lo, hi = np.percentile(ratios, [2.5, 97.5])
        memory = fit_memory([(*memory_terms(n.weights, n.activations, "fp32"), n.memory_mb)
                             for n in self.measured if n.memory_mb is not None])
        best = self.canary.best_ms
        return Calibration(
            schema="edgekd.calibration/1", profile=self.profile.name, runtime=self.runtime,
            precisions=list(SAME_KERNELS_AS_FP32.get(self.runtime, ("fp32",))), threads=self.threads,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            versions=_versions(self.backend, self.runtime), host=host_identity(), roofline=self.roofline,
            call_overhead_us=self.call_us, vector_block=block, kernels=models,
            network=NetworkModel(coef=coef, intercept_us=intercept, ratio_interval=(float(lo), float(hi)),
                                 within_10pct=float(np.mean(np.abs(ratios - 1) <= 0.1)), networks=len(kept)),
            memory=memory,
            samples={"kernel_rounds": self.rounds, "canary_best_ms": best,
                     "kernel_times_us": [[*kernel_key(t.kernel), round(t.us, 3), round(t.interference, 4),
                                          round(t.canary_ms / best, 3)] for t in self.timed.values()],
                     "networks": [n.record(self.is_clean(n), any(n is k for k in kept)) for n in self.measured]})

    def close(self) -> None:
        self.timer.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
