"""Measure the memory a compiled model costs at run time, in a fresh process.

    python -m edgekd.runtimes.memprobe ARTIFACT_JSON

The probe first imports the runtime and runs a one-node Identity model through it, so the runtime's
fixed cost (libraries, environment, allocator set-up) is paid; that RSS is the baseline. Then it loads
the model and runs it a few times; the answer is peak RSS minus the baseline: the weights, arenas and
activations this model adds. The baseline is reported too. It prints one JSON line. It imports no torch,
so it also runs on devices that only have the runtime (the remote runner uses it there).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import psutil
from onnx import TensorProto, helper

from edgekd.figures import Figure, Figures
from edgekd.runtimes import Artifact, create_backend


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0), so the peak we read is the model's alone."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    # VmHWM belongs to this process image; ru_maxrss is not used because Linux carries it over from
    # the parent across fork + exec, which would charge the (torch-sized) parent to the model.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / (1024 if sys.platform == "darwin" else 1)


def probe(spec: dict) -> dict:
    artifact = Artifact.from_dict(spec["artifact"])
    backend = create_backend(artifact.runtime)
    shape = spec["input_shape"]
    if isinstance(shape, dict):  # text models: int64 token feeds (input_ids, attention_mask), all ones
        x = {name: np.ones(dims, np.int64) for name, dims in shape.items()}
        warm_x = np.zeros(next(iter(shape.values())), np.float32)
    else:
        x = warm_x = np.zeros(shape, np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        identity = _identity_model(Path(tmp) / "identity.onnx", len(warm_x.shape))
        warm = backend.load(Artifact(identity, artifact.runtime, "fp32"), spec["threads"])
        warm.run(warm_x)
    baseline = _rss_mb()
    _reset_peak()
    session = backend.load(artifact, spec["threads"])
    for _ in range(5):
        session.run(x)
    peak = max(_peak_mb(), _rss_mb())
    return {"runtime_baseline_mb": baseline, "peak_mb": peak, "model_mb": max(0.0, peak - baseline)}


def _identity_model(path: Path, rank: int) -> Path:
    value = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [f"d{i}" for i in range(rank)]) for n in "xy"]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", value[:1], value[1:])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def measure_memory_mb(artifact, input_shape: tuple[int, ...] | dict[str, tuple[int, ...]], threads: int) -> float:
    """Peak RSS the artifact adds when loaded and run, measured in a child process. input_shape: the one
    input's shape, or {input name: shape} for token inputs."""
    shape = {k: list(v) for k, v in input_shape.items()} if isinstance(input_shape, dict) else list(input_shape)
    spec = {"artifact": artifact.to_dict(), "input_shape": shape, "threads": threads}
    proc = subprocess.run([sys.executable, "-m", "edgekd.runtimes.memprobe", json.dumps(spec)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["model_mb"]


MEMORY_PROBES = 3  # fresh processes; their min..max is the memory figure's interval


def memory_figures(artifact, input_shape, threads: int, probes: int = MEMORY_PROBES) -> Figures:
    """The median of `probes` fresh-process probes, their range the interval."""
    found = sorted(measure_memory_mb(artifact, input_shape, threads) for _ in range(probes))
    return Figures(memory=Figure(float(np.median(found)), "measured", (found[0], found[-1])),
                   extra={"memory_probes_mb": found})


if __name__ == "__main__":
    print(json.dumps(probe(json.loads(sys.argv[1]))))
