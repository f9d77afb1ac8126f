"""Run edgekd (or trtexec) on an edge device over ssh and bring the JSON back.

    from edgekd.remote import run_remote
    r = run_remote("ssh://nvidia@orin:22", ["bench", model, "--runtime", "tensorrt", "--json"], files=[model])
    r.result            # the JSON the command printed on the device
    r.device_state      # {"before": {...}, "after": {...}}: governor, nvpmodel, jetson_clocks, temperatures

One ssh session uploads the files (a tar stream into a fresh temporary folder), a second runs the command
in that folder between two snapshots of the device state, streams back the requested outputs and removes
the folder. The system's OpenSSH client is used as is: ~/.ssh/config, agents and known_hosts keep working;
`identity`/`known_hosts` override them (tests, CI). Paths in `args` that are among `files` are rewritten to
their names in the remote folder.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from edgekd.errors import InputError, StageFailed
from edgekd.figures import Figure, Figures
from edgekd.measure import summarize
from edgekd.runtimes import Artifact, save_artifact, sidecar
from edgekd.validate import check_model_file

STATE_SCRIPT = Path(__file__).with_name("devicestate.py")


@dataclass(frozen=True)
class RemoteSpec:
    host: str
    user: str | None = None
    port: int = 22
    identity: Path | None = None  # ssh -i KEY
    known_hosts: Path | None = None  # a known_hosts file; with it, host keys are checked strictly
    python: str = "python3"  # the device's interpreter that has edgekd installed
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the command on the device
    connect_timeout_s: int = 10

    @property
    def url(self) -> str:
        return f"ssh://{self.user + '@' if self.user else ''}{self.host}:{self.port}"


@dataclass
class RemoteResult:
    command: str  # as run on the device
    returncode: int
    stdout: str
    stderr: str
    result: dict | None  # the JSON the command printed, if it printed one
    device_state: dict  # {"before": ..., "after": ...}
    files: dict[str, Path]  # fetched outputs: remote name -> local path


# What OpenSSH accepts as a user and a host name, and nothing that could read as an option: a user or host
# that starts with "-" would otherwise reach ssh as a flag (-oProxyCommand=... runs a local command).
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?")
_SPEC = re.compile(r"ssh://(?:(?P<userinfo>[^@/]*)@)?(?P<host>\[[^\]/]*\]|[^:/\[\]]*)(?::(?P<port>[^/]*))?/?")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _spec_error(url: str, why: str) -> InputError:
    return InputError(f"--remote '{url}': expected ssh://user@host[:port] (no password; use an ssh key): {why}")


def parse_destination(url: str) -> tuple[str | None, str, int]:
    """(user, host, port) of `ssh://[user@]host[:port]`, refusing anything ssh could read as an option."""
    m = _SPEC.fullmatch(url) if isinstance(url, str) else None
    if m is None:
        raise _spec_error(url, "not an ssh:// address" if not str(url).startswith("ssh://") else "malformed")
    user, host, port_text = m["userinfo"], m["host"], m["port"]
    if user is not None and ":" in user:
        raise _spec_error(url, "a password in the address is not supported")
    if user is not None and not _USER.fullmatch(user):
        raise _spec_error(url, f"user '{user}' is not a valid login name (letters, digits, '.', '_', '-'; "
                               "not starting with '-')")
    if host.startswith("["):
        host = host[1:-1]
        if not _IPV6.fullmatch(host) or ":" not in host:
            raise _spec_error(url, f"'[{host}]' is not an IPv6 address")
    elif not host:
        raise _spec_error(url, "no host")
    elif not _HOST.fullmatch(host):
        raise _spec_error(url, f"host '{host}' is not a valid host name or address (not starting with '-')")
    port = 22
    if port_text is not None:
        if not port_text.isdigit() or not port_text.isascii():
            raise _spec_error(url, f"port '{port_text}' is not a number")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise _spec_error(url, f"port {port} is out of range 1..65535")
    return user, host, port


def parse_remote(url: str, **overrides) -> RemoteSpec:
    """`ssh://[user@]host[:port]` -> RemoteSpec. Per-machine settings come from the environment, so a
    build config stays portable: EDGEKD_SSH_KEY, EDGEKD_SSH_KNOWN_HOSTS, EDGEKD_REMOTE_PYTHON (the device's
    interpreter with edgekd, default python3), EDGEKD_REMOTE_ENV ("K=V K2=V2" for the command there).
    Keyword overrides (identity, known_hosts, python, env) win over the environment."""
    user, host, port = parse_destination(url)
    env = os.environ
    try:
        pairs = shlex.split(env.get("EDGEKD_REMOTE_ENV", ""))
    except ValueError as e:
        raise InputError(f"EDGEKD_REMOTE_ENV: not a list of K=V words ({e})") from None
    settings = {"identity": Path(env["EDGEKD_SSH_KEY"]) if env.get("EDGEKD_SSH_KEY") else None,
                "known_hosts": Path(env["EDGEKD_SSH_KNOWN_HOSTS"]) if env.get("EDGEKD_SSH_KNOWN_HOSTS") else None,
                "python": env.get("EDGEKD_REMOTE_PYTHON") or None,
                "env": dict(kv.split("=", 1) for kv in pairs if "=" in kv)}
    settings |= {k: v for k, v in overrides.items() if v is not None}
    return RemoteSpec(host=host, user=user, port=port, **{k: v for k, v in settings.items() if v is not None})


def _check_spec(spec: RemoteSpec) -> None:
    """A RemoteSpec made in code gets the same checks as a parsed address before anything reaches ssh."""
    if spec.user is not None and not _USER.fullmatch(spec.user):
        raise InputError(f"--remote: user '{spec.user}' is not a valid login name (not starting with '-')")
    if not (_HOST.fullmatch(spec.host) or (":" in spec.host and _IPV6.fullmatch(spec.host))):
        raise InputError(f"--remote: host '{spec.host}' is not a valid host name or address")
    if not isinstance(spec.port, int) or not 1 <= spec.port <= 65535:
        raise InputError(f"--remote: port {spec.port} is out of range 1..65535")
    bad = [k for k in spec.env if not _ENV_KEY.fullmatch(k)]
    if bad:
        raise InputError(f"EDGEKD_REMOTE_ENV: '{bad[0]}' is not a variable name (letters, digits, '_')")
    for name, path in (("EDGEKD_SSH_KEY", spec.identity), ("EDGEKD_SSH_KNOWN_HOSTS", spec.known_hosts)):
        # ssh splits -o values on whitespace and reads quotes: such a path would smuggle in more options
        if path is not None and any(c in str(path) for c in " \t\n\"'="):
            raise InputError(f"{name} '{path}': spaces, quotes or '=' in this path; move the file")


def _ssh(spec: RemoteSpec, command: str) -> list[str]:
    _check_spec(spec)
    args = ["ssh", "-p", str(spec.port), "-o", "BatchMode=yes", "-o", f"ConnectTimeout={spec.connect_timeout_s}"]
    if spec.identity:
        args += ["-i", str(spec.identity), "-o", "IdentitiesOnly=yes"]
    if spec.known_hosts:
        args += ["-o", f"UserKnownHostsFile={spec.known_hosts}", "-o", "StrictHostKeyChecking=yes"]
    # "--": whatever follows is the destination and the remote command, never an option of ssh's
    return [*args, "--", f"{spec.user}@{spec.host}" if spec.user else spec.host, command]


def _call(spec: RemoteSpec, command: str, stdin: bytes = b"", timeout_s: float = 60) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(_ssh(spec, command), input=stdin, capture_output=True, timeout=timeout_s)
    except FileNotFoundError:
        raise InputError("--remote needs the OpenSSH client (ssh) on this machine; install openssh-client") from None
    except subprocess.TimeoutExpired:
        raise StageFailed(f"{spec.url}: no answer within {timeout_s:.0f} s") from None
    if proc.returncode == 255:  # ssh's own failure: connection, host key, authentication
        said = proc.stderr.decode(errors="replace").strip().splitlines()
        raise InputError(f"--remote {spec.url}: ssh could not connect ({said[-1] if said else 'no message'}); "
                         "check host, port, user and key")
    return proc


def _tar(paths: dict[str, Path]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, path in paths.items():
            tar.add(str(path), arcname=name)
    return buf.getvalue()


def _uploads(files: Sequence[Path]) -> dict[str, Path]:
    names: dict[str, Path] = {"devicestate.py": STATE_SCRIPT}
    for f in files:
        f = Path(f)
        if not f.exists():
            raise InputError(f"'{f}': file not found (to copy to the device)")
        if f.name in names and names[f.name].resolve() != f.resolve():
            raise InputError(f"'{f}': two files named {f.name} would collide on the device; rename one")
        names[f.name] = f
    return names


def run_remote(remote: str | RemoteSpec, args: Sequence[str | Path], files: Sequence[Path] = (),
               fetch: Sequence[str] = (), into: Path | None = None, edgekd: bool = True,
               timeout_s: float = 3600, check: bool = True) -> RemoteResult:
    """Run `python -m edgekd ARGS` (edgekd=False: the command ARGS itself, e.g. trtexec) on the device.

    files: copied into the remote working folder first (an OpenVINO .xml takes its .bin along).
    fetch: remote names (files or folders, relative to that folder) brought back into `into` (default: a
    new temporary folder). check: a non-zero exit raises, with the device's last stderr lines.
    """
    spec = parse_remote(remote) if isinstance(remote, str) else remote
    uploads = _uploads([*files, *(Path(f).with_suffix(".bin") for f in files
                                  if Path(f).suffix == ".xml" and Path(f).with_suffix(".bin").is_file())])
    # "./" keeps an uploaded file whose name starts with "-" from reading as an option on the device
    by_path = {str(Path(p)): f"./{name}" if name.startswith("-") else name for name, p in uploads.items()}
    for name in fetch:  # the remote script lists these to tar unquoted: plain relative names only
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*", name):
            raise InputError(f"fetch '{name}': not a plain relative file name")
    argv = [by_path.get(str(a), str(a)) for a in args]
    head = [spec.python, "-m", "edgekd"] if edgekd else []
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in spec.env.items())
    command = " ".join(shlex.quote(a) for a in [*head, *argv])
    made = _call(spec, 'd=$(mktemp -d "${TMPDIR:-/tmp}/edgekd-XXXXXX") && tar -xf - -C "$d" && echo "$d"',
                 _tar(uploads))
    if made.returncode != 0:
        raise StageFailed(f"{spec.url}: could not create a working folder: {made.stderr.decode(errors='replace')}")
    workdir = made.stdout.decode().strip().splitlines()[-1]
    wanted = " ".join(shlex.quote(f) for f in fetch)
    state = f"{shlex.quote(spec.python if edgekd else 'python3')} devicestate.py"
    script = (f"cd {shlex.quote(workdir)} || exit 97; {state} > .state-before 2>/dev/null; "
              f"{'env ' + env + ' ' if env else ''}{command} > .stdout 2> .stderr; echo $? > .rc; "
              f"{state} > .state-after 2>/dev/null; "
              f"for f in {wanted}; do [ -e \"$f\" ] && printf '%s\\n' \"$f\"; done > .fetch; "
              f"tar -cf - .rc .stdout .stderr .state-before .state-after $(cat .fetch); "
              f"cd / && rm -rf {shlex.quote(workdir)}")
    proc = _call(spec, script, timeout_s=timeout_s)
    if fetch:
        into = Path(into or tempfile.mkdtemp(prefix="edgekd-remote-"))
        into.mkdir(parents=True, exist_ok=True)
    if not proc.stdout:
        raise StageFailed(f"{spec.url}: the device sent no results ({proc.stderr.decode(errors='replace')[-500:]})")
    meta: dict[str, str] = {}
    fetched: dict[str, Path] = {}
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar, tempfile.TemporaryDirectory() as tmp:
        tar.extractall(tmp, filter="data")  # "data": no absolute paths, links out, or device files
        for name in (".rc", ".stdout", ".stderr", ".state-before", ".state-after"):
            path = Path(tmp) / name
            meta[name] = path.read_text(errors="replace") if path.is_file() else ""
        for name in fetch:
            src = Path(tmp) / name
            if src.exists() and into is not None:
                dst = into / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                if dst.is_dir():
                    shutil.rmtree(dst)
                shutil.move(str(src), str(dst))  # across file systems too (the temp folder may be tmpfs)
                fetched[name] = dst
    result = RemoteResult(command=command, returncode=int(meta[".rc"].strip() or 1), stdout=meta[".stdout"],
                          stderr=meta[".stderr"], result=_json(meta[".stdout"]),
                          device_state={"before": _json(meta[".state-before"]) or {},
                                        "after": _json(meta[".state-after"]) or {}},
                          files=fetched)
    if check and result.returncode != 0:
        tail = [ln for ln in result.stderr.strip().splitlines() if ln.strip()][-3:]
        error = InputError if result.returncode == 2 else StageFailed
        raise error(f"on {spec.url}: `{command}` exited {result.returncode}: {' | '.join(tail) or '(no stderr)'}")
    return result


def _json(text: str) -> dict | None:
    """The JSON document a command printed (whole output, else its last line that parses)."""
    for candidate in (text, *reversed(text.strip().splitlines())):
        try:
            value = json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(value, dict):
            return value
    return None


def remote_bench(remote: str | RemoteSpec, artifact_path: Path, runtime: str, threads: int | None = None,
                 batch: int = 1, eval_npz: Path | None = None, logits: bool = False,
                 into: Path | None = None, against: Path | None = None) -> dict:
    """`edgekd bench` on the device: its JSON (latency, compute time, memory, accuracy with eval_npz; with
    `against`, a teacher for the same runtime, `speedup_over`: the pair timed interleaved there), plus
    `device_state` before/after, `remote` (the URL), and `logits_path` (local .npy) when logits=True."""
    args: list[str | Path] = ["bench", artifact_path, "--runtime", runtime, "--batch", str(batch), "--json"]

    files = [artifact_path, *([p] if (p := sidecar(artifact_path)).is_file() else [])]
    if against is not None:
        if against.name == artifact_path.name:
            raise InputError(f"--against {against}: has the model's own file name; rename one of them")
        args += ["--against", against]
        files += [against, *([p] if (p := sidecar(against)).is_file() else [])]
    if threads:
        args += ["--threads", str(threads)]
    if eval_npz is not None:
        args += ["--eval", eval_npz]
        files.append(eval_npz)
        if logits:
            args += ["--logits", "logits.npy"]
    r = run_remote(remote, args, files=files, fetch=["logits.npy"] if logits else [], into=into)
    if r.result is None:
        raise StageFailed(f"on {spec_url(remote)}: bench printed no JSON: "
                          f"{r.stdout[-300:]}")
    out = r.result | {"device_state": r.device_state, "remote": r.command}
    if "logits.npy" in r.files:
        out["logits_path"] = str(r.files["logits.npy"])
    return out


def trtexec_command(model: str, precision: str, batch: int = 1, input_name: str = "input",
                    sample_shape: Sequence[int] = (), engine_out: str | None = None) -> list[str]:
    """trtexec arguments that build (from .onnx) or load (.engine) and time a model, writing per-iteration
    times (h2d, GPU compute, d2h, host latency) to times.json."""
    engine = model.endswith((".engine", ".plan"))
    args = ["trtexec", f"--{'loadEngine' if engine else 'onnx'}={model}", "--exportTimes=times.json"]
    if not engine and precision in ("fp16", "int8"):
        args.append("--fp16")
    if not engine and precision == "int8":
        args.append("--int8")  # with a Q/DQ ONNX this is explicit quantization (no calibrator)
    if sample_shape and not engine:
        def dims(b: int) -> str:
            return f"{input_name}:" + "x".join(str(d) for d in (b, *sample_shape))

        args += [f"--minShapes={dims(1)}", f"--optShapes={dims(batch)}", f"--maxShapes={dims(batch)}"]
    if engine_out:
        args.append(f"--saveEngine={engine_out}")
    return args


def remote_trtexec(remote: str | RemoteSpec, model: Path, precision: str, batch: int = 1) -> dict:
    """trtexec on the device (no edgekd needed there): GPU compute and host latency summarized separately.
    An .onnx is built there first (shapes for its batch); an .engine is loaded as is."""
    input_name, sample_shape = "input", ()
    if model.suffix == ".onnx":
        inp = onnx.load(str(model), load_external_data=False).graph.input[0]
        input_name, sample_shape = inp.name, [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]]
    cmd = trtexec_command(model.name, precision, batch, input_name, sample_shape)
    r = run_remote(remote, cmd, files=[model], fetch=["times.json"], edgekd=False)
    if "times.json" not in r.files:
        raise StageFailed(f"trtexec wrote no times.json: {r.stdout[-300:]}")
    times = json.loads(r.files["times.json"].read_text())
    compute = summarize(np.array([t["computeMs"] for t in times]))
    latency = summarize(np.array([t["latencyMs"] for t in times]))
    return latency.figures().as_dict() | {"compute_ms": compute.p50_ms, "compute_stats": compute.as_dict(),
                                          "tool": "trtexec", "command": r.command, "device_state": r.device_state}


def remote_compile(remote: str | RemoteSpec, onnx_path: Path, runtime: str, precision: str | None, into: Path,
                   batch: int = 1, calibration: Path | None = None, sequence: int | None = None) -> Artifact:
    """`edgekd compile MODEL.onnx` on the device (TensorRT engines are built where they run); the artifact
    and its build record come back into `into`. For TensorRT int8, pass a Q/DQ ONNX (made here from the
    calibration subset) or a calibration .npy."""
    check_model_file(onnx_path)  # before the upload: a damaged file is bad input here, not on the device
    args: list[str | Path] = ["compile", onnx_path, "--runtime", runtime, "--batch", str(batch),
                              "--out", "compiled", "--json", *(["--precision", precision] if precision else []),
                              *(["--max-length", str(sequence)] if sequence else [])]
    files = [onnx_path]
    if calibration is not None:
        args += ["--calibration", calibration]
        files.append(calibration)
    r = run_remote(remote, args, files=files, fetch=["compiled"], into=into / ".remote")
    if r.result is None or "path" not in r.result:
        raise StageFailed(f"remote compile printed no artifact: {r.stdout[-300:]}")
    built = Artifact.from_dict(r.result)
    local = into / built.path.name
    for extra in r.files["compiled"].glob("*"):
        if extra.is_file():
            extra.replace(into / extra.name)
    artifact = Artifact(local, built.runtime, built.precision,
                        built.settings | {"built_on": r.device_state.get("before", {}), "remote": spec_url(remote)})
    save_artifact(artifact)
    shutil.rmtree(into / ".remote", ignore_errors=True)
    return artifact


def spec_url(remote: str | RemoteSpec) -> str:
    return remote if isinstance(remote, str) else remote.url


@dataclass(frozen=True)
class DeviceRun:
    """One artifact measured by `edgekd bench` on the device: the round trip every caller (the compile and
    check stages, the gate) goes through."""

    figures: Figures  # latency (95% interval) and memory (one fresh-process probe: a point)
    accuracy: float | None  # with a held-out set
    eval_samples: int | None
    logits: np.ndarray | None  # with logits=True
    session: dict | None
    device_state: dict | None
    url: str
    speedup_over: dict | None = None  # with `against`: that model / this one, timed as a pair on the device


def measure_on_device(remote: str | RemoteSpec, artifact: Artifact, threads: int | None, batch: int,
                      heldout: Path | None = None, logits: bool = False, against: Artifact | None = None) -> DeviceRun:
    """Copy `artifact` (and the held-out .npz, and `against`) to the device, bench it there (with `against`
    as a pair), bring the figures back."""
    with tempfile.TemporaryDirectory() as tmp:
        res = remote_bench(remote, artifact.path, artifact.runtime, threads, batch, heldout, logits=logits,
                           into=Path(tmp), against=against.path if against is not None else None)
        got = np.load(res["logits_path"]) if logits else None
    extra = {k: res[k] for k in ("latency_stats", "compute_ms", "compute_stats") if k in res}
    memory = Figure(res["memory_mb"], "measured") if "memory_mb" in res else None
    figures = Figures(Figure(res["latency_ms"], "measured", tuple(res["latency_interval"])), memory, extra)
    return DeviceRun(figures, res.get("accuracy"), res.get("eval_samples"), got, res.get("session"),
                     res.get("device_state"), spec_url(remote), res.get("speedup_over"))


def remote_check(remote: str | RemoteSpec, model: Path, baseline: Path, target: str, args: Sequence[str],
                 into: Path) -> tuple[dict, dict]:
    """`edgekd check MODEL --baseline OLD` run by the device itself: OLD and MODEL timed interleaved there, in
    one call (an A/B gate over --remote); (the device's report, the device's state before/after)."""
    files = [model, baseline, *[s for p in (model, baseline) if (s := sidecar(p)).is_file()]]
    if Path(target).is_file():  # a target .yaml travels along; a built-in name is the device's own
        files.append(Path(target))
    r = run_remote(remote, ["check", model, "--target", Path(target) if Path(target).is_file() else target,
                            "--baseline", baseline, *args, "--json", "gate.json"],
                   files=files, fetch=["gate.json"], into=into, check=False)
    if r.returncode not in (0, 1, 3) or "gate.json" not in r.files:
        tail = " | ".join([ln for ln in r.stderr.strip().splitlines() if ln.strip()][-3:]) or "(no stderr)"
        raise (InputError if r.returncode == 2 else StageFailed)(
            f"on {spec_url(remote)}: `{r.command}` exited {r.returncode}: {tail}")
    return json.loads(r.files["gate.json"].read_text()), r.device_state
