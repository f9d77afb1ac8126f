"""`edgekd bench`: latency (and GPU compute time where the runtime can time the device), memory, and
optionally accuracy of one artifact on the machine this runs on. The remote runner runs this same code on
the device and brings the JSON back, so a bench here and a bench over ssh report the same fields."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.table import Table

from edgekd.config import MAX_BATCH, MAX_INPUT_VALUES
from edgekd.devicestate import device_state
from edgekd.errors import InputError
from edgekd.figures import Figure, Figures
from edgekd.interleave import load_replicas, time_sessions
from edgekd.measurable import CHECK_SECONDS_PER_MODEL
from edgekd.measure import summarize, time_calls
from edgekd.rundir import check_output_file
from edgekd.runtimes import Artifact, Session, create_backend, evaluate_accuracy
from edgekd.runtimes.memprobe import measure_memory_mb
from edgekd.validate import check_input_shape, check_labels_in_range, load_input_arrays, refuse_custom_ops

WARMUP = 10


def latency_figures(session: Session, x: np.ndarray) -> dict:
    """Host latency of `session.run(x)` (edgekd.measure), plus the device's compute time when the session
    reports one (TensorRT's CUDA events): launch and copy overheads are the difference between the two."""
    compute: list[float] = []
    device_timed = hasattr(session, "last_compute_ms")

    def call():
        session.run(x)
        if device_timed:
            compute.append(session.last_compute_ms)

    stats = time_calls(call, warmup=WARMUP)
    out = stats.figures().as_dict()
    if device_timed and len(compute) > WARMUP:
        out["compute_stats"] = summarize(np.array(compute[WARMUP:])).as_dict()
        out["compute_ms"] = out["compute_stats"]["p50_ms"]
    return out


def bench(artifact: Artifact, threads: int, batch: int = 1, eval_data: Path | None = None,
          logits_out: Path | None = None, memory: bool = True, against: Artifact | None = None) -> dict:

    if batch > MAX_BATCH:
        raise InputError(f"--batch {batch}: more than {MAX_BATCH}, beyond what an edge device runs; give a smaller one")
    # the evaluation set and where the logits go are checked before a second is spent timing
    xe, ye = load_input_arrays(eval_data, "--eval", labels=True) if eval_data is not None else (None, None)
    if logits_out is not None:
        check_output_file(logits_out, "--logits")
    if artifact.path.suffix == ".onnx" and artifact.runtime in ("onnxruntime", "openvino"):
        refuse_custom_ops(artifact.path)
    backend = create_backend(artifact.runtime)
    reason = backend.unavailable_reason()
    if reason:
        raise InputError(f"--runtime {artifact.runtime}: {reason}")
    session = backend.load(artifact, threads)
    if any(not isinstance(d, int) or d < 1 for d in session.sample_shape):
        raise InputError(f"MODEL '{artifact.path}': input shape {session.sample_shape} is not fixed beyond the batch")
    shape = (batch, *session.sample_shape)
    if np.prod(shape, dtype=np.float64) > MAX_INPUT_VALUES:
        raise InputError(f"--batch {batch}: a {'x'.join(map(str, shape))} input is far larger than an edge model "
                         "takes; give a smaller --batch")
    if xe is not None:
        check_input_shape(xe, session.sample_shape, f"--eval '{eval_data}'", artifact.path)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    result = {"artifact": artifact.to_dict(), "versions": backend.versions(), "threads": threads,
              "input_shape": list(shape), "session": session.settings, **latency_figures(session, x)}
    if memory:
        result |= Figures(memory=Figure(measure_memory_mb(artifact, shape, threads), "measured")).as_dict()
    if eval_data is not None:
        accuracy, logits = evaluate_accuracy(session, xe, ye)
        check_labels_in_range(ye, logits, f"--eval '{eval_data}'", artifact.path)
        result |= {"accuracy": accuracy, "eval_samples": len(ye)}
        if logits_out is not None:
            np.save(logits_out, logits)
    if against is not None:
        result["speedup_over"] = speedup_over(artifact, against, threads, x)
    result["device_state"] = device_state()
    return result


def speedup_over(artifact: Artifact, against: Artifact, threads: int, x: np.ndarray) -> dict:
    """`against` (a teacher, run as its runtime runs it by default) / `artifact`, timed as a pair interleaved in
    this process (edgekd/interleave.py), as the check stage times a student here: the ratio and its interval. On
    a --remote device this runs there, so the pair shares the device's state."""
    timed = time_sessions({"against": load_replicas(against.as_deployed(), threads),
                           "model": load_replicas(artifact, threads)}, x, 2 * CHECK_SECONDS_PER_MODEL)
    r = timed.speedup("against", "model")
    return {"value": r.value, "interval": list(r.interval), "against": against.to_dict(), "rounds": timed.rounds,
            "method": "interleaved pair, paired-bootstrap 95% interval"}


def print_bench(result: dict, console) -> None:
    a = result["artifact"]
    table = Table(title=f"{Path(a['path']).name}: {a['runtime']} {a['precision']}, batch "
                        f"{result['input_shape'][0]}, {result['threads']} threads")
    for col in ("figure", "value", "detail"):
        table.add_column(col)
    s = result["latency_stats"]
    lo, hi = result["latency_interval"]
    table.add_row("latency p50 (host)", f"{s['p50_ms']:.4g} ms", f"95% CI {lo:.4g}..{hi:.4g}; p90 {s['p90_ms']:.4g}, "
                  f"p99 {s['p99_ms']:.4g}; {s['runs']} runs")
    if "compute_ms" in result:
        table.add_row("GPU compute p50", f"{result['compute_ms']:.4g} ms", "CUDA events around the enqueue")
    if "memory_mb" in result:
        table.add_row("memory", f"{result['memory_mb']:.3g} MB", "peak RSS the model adds (fresh process)")
    if "accuracy" in result:
        table.add_row("accuracy", f"{result['accuracy']:.4f}", f"top-1 on {result['eval_samples']} samples")
    if "speedup_over" in result:
        s = result["speedup_over"]
        table.add_row("speed-up", f"{s['value']:.2f}x", f"[{s['interval'][0]:.2f} .. {s['interval'][1]:.2f}] over "
                      f"{Path(s['against']['path']).name}, timed as a pair ({s['rounds']} rounds)")
    state = result.get("device_state", {})
    if "before" in state:
        state = state["before"]
    table.add_row("device", str(state.get("host", "")), f"governor {state.get('cpu_governor')}, "
                  f"temperatures {state.get('temperatures_c') or '-'}")
    console.print(table)
