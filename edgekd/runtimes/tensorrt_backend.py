"""TensorRT (Jetson targets): engines built on the device through the tensorrt Python API.

- fp16: the FP16 builder flag on the float ONNX (TensorRT 8.x-10.x). TensorRT 11 removed the precision
  flags (strongly typed networks only): there the ONNX is converted to fp16 first (inputs and outputs
  stay fp32) and built strongly typed.
- int8: explicit quantization. The network carries QuantizeLinear/DequantizeLinear pairs (a QDQ ONNX made
  from the calibration subset, symmetric as TensorRT requires); the implicit-calibrator API is deprecated
  (removed in 11). Layers left in float run in fp16 where the FP16 flag exists, else in fp32.
- One optimization profile over every input: the dynamic batch (min 1, opt = the target's batch, max) and,
  for a text encoder's input_ids and attention_mask, the sequence (1 .. --max-length), a timing cache
  reused across builds on the device, and a fingerprint of the device (TensorRT version, GPU and its
  compute capability, L4T/JetPack) recorded beside the engine and checked when it is loaded: an engine
  from another device or TensorRT version is refused with a message that says so.
- Timing: CUDA events around the enqueue give the GPU compute time (`last_compute_ms`), separate from
  the host latency (copies, synchronisation) the caller measures around `run`.
Buffers, stream and events come from torch.cuda (edgekd already depends on torch), so no other CUDA
binding is needed on the device.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.transformers.float16 import convert_float_to_float16

from edgekd.devicestate import jetson_release
from edgekd.errors import InputError, StageFailed
from edgekd.optional import installed, require
from edgekd.runtimes.base import Artifact, Backend, CompileOptions, register_runtime
from edgekd.runtimes.onnxruntime_backend import quantize_qdq
from edgekd.runtimes.tensorrt_lint import lint_file, profile_shapes

WORKSPACE_BYTES = 1 << 30  # builder scratch cap; Jetson memory is shared with the CPU, so keep it bounded
FINGERPRINT_KEYS = ("tensorrt", "gpu", "compute_capability", "l4t")  # must all match to load an engine


def _trt():
    return require("tensorrt", "building or running a TensorRT engine")


def _torch():
    # torch holds the engine's CUDA buffers and answers the device queries; the runtimes package imports no torch
    # at the top (the memory probe and the remote runner load it on devices), so it comes in with TensorRT's path.
    return require("torch", "TensorRT's CUDA buffers")


def fingerprint() -> dict:
    """What an engine built here is tied to."""
    torch, trt = _torch(), _trt()
    if not torch.cuda.is_available():
        raise InputError("TensorRT needs a CUDA GPU, and torch sees none on this host")
    major, minor = torch.cuda.get_device_capability(0)
    return {"tensorrt": trt.__version__, "gpu": torch.cuda.get_device_name(0),
            "compute_capability": f"{major}.{minor}", **jetson_release()}


def check_fingerprint(recorded: dict, here: dict, path: Path) -> None:
    """Refuse an engine built for another device or TensorRT version (TensorRT would fail obscurely or,
    across GPUs of one family, run with tactics tuned for another chip)."""
    diffs = [f"{k} {recorded.get(k)!r} != {here.get(k)!r} here" for k in FINGERPRINT_KEYS
             if (k in recorded or k in here) and recorded.get(k) != here.get(k)]
    if diffs:
        raise InputError(f"engine '{path}' was built for another device ({'; '.join(diffs)}); engines are "
                         "specific to a GPU and TensorRT version: rebuild it on this device "
                         "(edgekd compile, or --remote ssh://... from the workstation)")


def is_quantized(onnx_path: Path) -> bool:
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear")
               for n in onnx.load(str(onnx_path), load_external_data=False).graph.node)


def _logger(trt):
    """A TensorRT logger that keeps the errors, so a failed parse, build or load can say why."""

    class Keep(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(msg)

    return Keep()


def weakly_typed(trt) -> bool:
    """Whether this TensorRT still has the precision flags (8.x-10.x); 11.x builds strongly typed only."""
    return hasattr(trt.BuilderFlag, "FP16")


def to_fp16_onnx(onnx_path: Path, out: Path) -> Path:
    """The float ONNX with fp16 weights and compute, fp32 inputs and outputs (for strongly typed builds)."""
    onnx.save(convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True), str(out))
    return out


def build_engine(onnx_path: Path, out: Path, precision: str, options: CompileOptions) -> dict:
    """Parse, configure and build; writes the engine to `out`, returns the build settings."""
    trt = _trt()
    keep = _logger(trt)
    builder = trt.Builder(keep)
    weak = weakly_typed(trt)
    flags = 0
    if int(trt.__version__.split(".")[0]) < 10:  # explicit batch is the only mode from TensorRT 10 on
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if not weak:  # TensorRT 11: types come from the graph (fp16 ONNX, Q/DQ); the flag is accepted, harmless
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, keep)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise StageFailed(f"TensorRT's ONNX parser rejected {onnx_path.name}: {'; '.join(errors) or keep.errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if weak and precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # int8: layers without Q/DQ run in fp16 rather than fp32
    if weak and precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # weakly typed network: Q/DQ layers need the INT8 flag
    # One profile over every input (image: the batch; text: input_ids and attention_mask, batch and sequence),
    # computed by the same function the lint uses, so what the lint passed is what gets built.
    profile, shapes = builder.create_optimization_profile(), {}
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        dims = tuple(None if d < 0 else int(d) for d in inp.shape)
        if all(d is not None for d in dims):
            continue
        found = profile_shapes(dims, options.batch, options.max_batch, options.sequence)
        if isinstance(found, str):
            raise StageFailed(f"{onnx_path.name}: input '{inp.name}': {found} (edgekd lint reports this before "
                              "the device)")
        profile.set_shape(inp.name, *found)
        shapes[inp.name] = [list(s) for s in found]
    if shapes:
        config.add_optimization_profile(profile)
    cache_path = options.timing_cache or out.parent / "timing.cache"
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise StageFailed(f"TensorRT could not build an engine from {onnx_path.name}: {'; '.join(keep.errors)}")
    out.write_bytes(bytes(serialized))
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return {"format": "tensorrt-engine", "from": onnx_path.name, "fingerprint": fingerprint(),
            "typing": "weak (builder precision flags)" if weak else "strong (types from the ONNX)",
            "builder_flags": {"fp32": [], "fp16": ["FP16"], "int8": ["FP16", "INT8"]}[precision] if weak else [],
            "quantization": "explicit (Q/DQ in the ONNX)" if precision == "int8" else None,
            "optimization_profile": {name: {"min_opt_max": found} for name, found in shapes.items()},
            "timing_cache": str(cache_path), "workspace_bytes": WORKSPACE_BYTES,
            "build_seconds": time.perf_counter() - start}


class TensorRTSession:
    def __init__(self, artifact: Artifact):
        torch, trt = _torch(), _trt()
        recorded = artifact.settings.get("fingerprint")
        if recorded:
            check_fingerprint(recorded, fingerprint(), artifact.path)
        self.logger = _logger(trt)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(artifact.path.read_bytes())
        if self.engine is None:  # no build record, and TensorRT's own header check refused it
            raise InputError(f"engine '{artifact.path}' does not load with TensorRT {trt.__version__} on "
                             f"{torch.cuda.get_device_name(0)} ({'; '.join(self.logger.errors)}); rebuild it here")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        # Every input with the torch dtype of its binding (an image model's one float input; a text model's
        # input_ids and attention_mask, int64 or int32 as the engine declares them).
        dtypes = {getattr(trt, n): getattr(torch, n) for n in ("float32", "float16", "int32", "int64")
                  if hasattr(trt, n)}  # trt.int64 only from TensorRT 9
        self.inputs = {n: dtypes[self.engine.get_tensor_dtype(n)] for n in names
                       if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT}
        self.input = next(iter(self.inputs))
        self.output = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        shape = tuple(self.engine.get_tensor_shape(self.input))
        self.sample_shape = shape[1:]
        self.max_batch = self.engine.get_tensor_profile_shape(self.input, 0)[2][0] if shape[0] < 0 else shape[0]
        self.torch, self.trt = torch, trt
        self.stream = torch.cuda.Stream()
        self.events = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        self.last_compute_ms: float | None = None
        self.settings = {"device": torch.cuda.get_device_name(0), "max_batch": int(self.max_batch),
                         "timing": "host latency around run(); GPU compute by CUDA events (compute_ms)"}

    def _run_chunk(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
        torch = self.torch
        with torch.cuda.stream(self.stream):
            on_gpu = {}  # kept alive until the stream is done with them
            for name, dtype in self.inputs.items():
                on_gpu[name] = torch.from_numpy(np.ascontiguousarray(feeds[name])).to("cuda", dtype,
                                                                                     non_blocking=True)
                self.context.set_input_shape(name, tuple(feeds[name].shape))
                self.context.set_tensor_address(name, on_gpu[name].data_ptr())
            out = torch.empty(tuple(self.context.get_tensor_shape(self.output)), dtype=torch.float32, device="cuda")
            self.context.set_tensor_address(self.output, out.data_ptr())
            start, end = self.events
            start.record(self.stream)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError(f"TensorRT enqueue failed: {'; '.join(self.logger.errors)}")
            end.record(self.stream)
            host = out.to("cpu", non_blocking=False)
        self.stream.synchronize()
        return host.numpy(), start.elapsed_time(end)

    def run(self, x: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        """One input array (image models), or a feed per input name (text models: input_ids, attention_mask)."""
        feeds = x if isinstance(x, dict) else {self.input: x}
        n = len(next(iter(feeds.values())))
        outs, compute = [], 0.0
        for i in range(0, n, self.max_batch):  # beyond the profile's max batch: in chunks
            out, ms = self._run_chunk({k: v[i:i + self.max_batch] for k, v in feeds.items()})
            outs.append(out)
            compute += ms
        self.last_compute_ms = compute
        return np.concatenate(outs)


@register_runtime
class TensorRTBackend(Backend):
    name = "tensorrt"
    label = "TensorRT"
    float_precision = "fp16"  # TensorRT computes in fp16 too
    compressed_teacher = "fp16"
    suffixes = (".engine", ".plan")
    sdk = ("tensorrt",)
    builds_on_device = True  # an engine is specific to its GPU and TensorRT version
    int8_from_qdq = True  # symmetric Q/DQ: the implicit-calibrator API is gone in TensorRT 11

    def lint(self, onnx_path: Path, batch: int, max_batch: int, sequence: int | None = None) -> list:
        return lint_file(onnx_path, batch, max_batch, sequence)

    def unavailable_reason(self) -> str | None:
        if installed("tensorrt") is None:
            return ("TensorRT is not installed on this host; engines are built on the device "
                    "(pip install 'edgekd[tensorrt]' there, or use --remote)")
        if not _torch().cuda.is_available():
            return "TensorRT is installed but torch sees no CUDA GPU on this host"
        return None

    def compile(self, onnx_path: Path, out_dir: Path, precision: str, calibration: np.ndarray | None,
                arch: str, options: CompileOptions | None = None) -> Artifact:
        if precision not in ("fp32", "fp16", "int8"):
            raise InputError(f"precision '{precision}': TensorRT engines are fp32, fp16 or int8")
        options = options or CompileOptions()
        if precision == "int8" and options.transformer:
            raise InputError("precision 'int8': edgekd builds TensorRT engines of transformer encoders in fp16 only "
                             "(its static Q/DQ calibration takes one image input); use fp16 for a text model")
        trt = _trt()
        out_dir.mkdir(parents=True, exist_ok=True)
        source, extra = onnx_path, {}
        if precision == "int8" and not is_quantized(onnx_path):
            source = out_dir / f"{onnx_path.stem}-qdq.onnx"
            extra = {"qdq": quantize_qdq(onnx_path, source, calibration, "QInt8", symmetric=True)}
        if precision == "fp16" and not weakly_typed(trt):
            source = to_fp16_onnx(onnx_path, out_dir / f"{onnx_path.stem}-fp16.onnx")
            extra = {"fp16_onnx": source.name}
        out = out_dir / f"{onnx_path.stem}-{precision}.engine"
        settings = build_engine(source, out, precision, options) | extra
        return Artifact(out, self.name, precision, settings)

    def load(self, artifact: Artifact, threads: int) -> TensorRTSession:
        return TensorRTSession(artifact)
