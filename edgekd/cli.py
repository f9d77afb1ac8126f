"""The edgekd command line: thin commands (options -> config -> library call -> exit code).

Exit codes (docs/report-contract.md): 0 every budget met, 1 a budget or stage failed, 2 bad input (one line, no
traceback), 3 inconclusive measurement, 70 internal error (traceback).
"""

from __future__ import annotations

import functools
import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgekd.distill.catalog import DEFAULT_METHOD
from edgekd.distill.catalog import describe as describe_methods
from edgekd.errors import EdgeKDError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Distil a big model into a small, fast one that provably fits an edge device.")
console = Console()
err_console = Console(stderr=True)

# ----------------------------------------------------------------------------- shared options
Target = Annotated[str, typer.Option("--target", "-t", help="Target name (see `edgekd targets`) or a target .yaml.")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="Build config YAML (see README).")]
TeacherOpt = Annotated[str | None, typer.Option("--teacher", help="model.onnx | model.pt2 | TorchScript file | "
                                                "torchvision:NAME | hf:DIR (a Hugging Face encoder folder: "
                                                "config.json, *.safetensors, tokenizer; needs edgekd[hf]). "
                                                "Default: the embedded digits teacher.")]
TeacherWeights = Annotated[Path | None, typer.Option("--teacher-weights",
                                                     help="Weights for torchvision:NAME (.safetensors or state_dict).")]
TrustPickle = Annotated[bool, typer.Option("--trust-pickle", help="Allow a pickled whole module (runs its code).")]
DataOpt = Annotated[str | None, typer.Option(
    "--data", help="digits | fonts | shapes | ImageFolder folder | file.npz; for hf: teachers a .txt (one text a "
                   "line), a .csv / .jsonl with text and label columns, or a folder of them. Default: digits.")]
TaskOpt = Annotated[str | None, typer.Option(
    "--task", help="hf: teachers: embedding | classification (default: from config.json's architectures).")]
MaxLengthOpt = Annotated[int | None, typer.Option(
    "--max-length", help="hf: teachers: tokens per text (longer texts are cut); latency is timed at it. "
                         "Default 128.")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Output folder. Default: export/<target>-<time>/.")]
LatencyOpt = Annotated[float | None, typer.Option("--latency-ms", help="Latency budget (ms, batch of the target).")]
MemoryOpt = Annotated[float | None, typer.Option("--memory-mb", help="Memory budget (MB at run time).")]
DropOpt = Annotated[float | None, typer.Option("--max-accuracy-drop", help="Max accuracy drop vs teacher (points).")]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="Distillation epochs.")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed for splits, search and training.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda (distillation).")]
SizeOpt = Annotated[str | None, typer.Option("--input-size", help="Resize inputs to H,W.")]
MeanOpt = Annotated[str | None, typer.Option("--mean", help="Per-channel mean of 0..1 pixels, e.g. 0.5,0.5,0.5.")]
StdOpt = Annotated[str | None, typer.Option("--std", help="Per-channel std, e.g. 0.25,0.25,0.25.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override any config field: --set distill.lr=0.01.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
MethodOpt = Annotated[str | None, typer.Option("--method", help="Distillation method (listed below), or names "
                                               "joined by + (weights: distill.method_weights). Default: "
                                               f"{DEFAULT_METHOD} (feature where the teacher's feature maps "
                                               "pair with the student's, else kd).")]
BaselineScratchOpt = Annotated[bool, typer.Option(
    "--baseline-scratch", help="Also train the same student on labels alone with the same budget and report both "
                               "accuracies (what distillation bought; doubles the training time).")]
RemoteOpt = Annotated[str | None, typer.Option(
    "--remote", help="ssh://user@host[:port]: run on that device (key, python: EDGEKD_SSH_KEY, EDGEKD_REMOTE_PYTHON).")]
MinSpeedupOpt = Annotated[float | None, typer.Option(
    "--min-speedup", help="Speed-up budget: teacher / student latency on the target's runtime, timed interleaved "
                          "(default: the target's).")]
RuntimeOpt = Annotated[str | None, typer.Option("--runtime", "-r", help="onnxruntime | openvino | tensorrt.")]
TokensOpt = Annotated[int | None, typer.Option(
    "--max-length", min=1, help="With a text model's ONNX: tokens per input, the TensorRT profile's sequence range "
                                "(1..N) for input_ids and attention_mask.")]


def _numbers(option: str, text: str | None, kind=float) -> list | None:
    if text is None:
        return None
    try:
        return [kind(v) for v in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got '{text}'", param_hint=option) from None


class Terminated(KeyboardInterrupt):
    """SIGTERM (what CI sends when a job is cancelled), raised where the program is, so a run stops as it does on
    Ctrl-C: partial output kept and named, OUT unchanged (edgekd/rundir.py), exit 143 (128 + 15)."""


def _terminate(signum, frame):
    raise Terminated


def handle_errors(fn):
    """EdgeKDError -> its exit code with one line on stderr; anything else is a bug: traceback, exit 70."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except EdgeKDError as e:
            from edgekd.inert import printable
            from edgekd.progress import VERBOSE, verbosity

            if verbosity() == VERBOSE:
                err_console.print_exception()
            label = "[red]error:[/]" if e.exit_code == 2 else "[red]failed:[/]"
            text = " ".join(str(e).split()) if e.exit_code == 2 else str(e)  # bad input is one line, always
            text = printable(text)  # a class folder named with escape sequences must not drive the CI's terminal
            err_console.print(f"{label} {escape(text)}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated): what the run left was said on the way out
            code, name = (143, "SIGTERM") if isinstance(e, Terminated) else (130, "Ctrl-C")
            err_console.print(f"[red]stopped:[/] {name}", highlight=False)
            raise typer.Exit(code) from None
        except Exception:
            err_console.print_exception()
            err_console.print("[red]internal error[/] (a bug in edgekd): please report it with the traceback above")
            raise typer.Exit(70) from None

    return wrapper


def build_config(config: Path | None, out: Path | None, sets: list[str] | None, **options):
    """Config file (or OUT/config.json from an earlier run) < options < --set."""
    from edgekd.config import load_build_config
    from edgekd.context import load_saved_config

    saved = load_saved_config(out) if config is None and out is not None else None
    return load_build_config(config, {**options, "out": str(out) if out else None}, sets or [],
                             base=saved, base_name=f"{out}/config.json")


def _options(target, teacher, teacher_weights, trust_pickle, data, seed, device, input_size=None, mean=None,
             std=None, latency_ms=None, memory_mb=None, max_accuracy_drop=None, epochs=None, method=None,
             baseline_scratch=False) -> dict:
    return {"target": target, "teacher.source": teacher,
            "teacher.weights": str(teacher_weights) if teacher_weights else None,
            "teacher.trust_pickle": trust_pickle or None, "data": data, "seed": seed, "device": device,
            "preprocess.input_size": _numbers("--input-size", input_size, int),
            "preprocess.mean": _numbers("--mean", mean), "preprocess.std": _numbers("--std", std),
            "budgets.latency_ms": latency_ms, "budgets.memory_mb": memory_mb,
            "budgets.max_accuracy_drop": max_accuracy_drop, "distill.epochs": epochs, "distill.method": method,
            "distill.baseline_scratch": baseline_scratch or None}


def _context(cfg):
    from edgekd.context import make_context

    return make_context(cfg, console)


@app.callback()
def _global_options(
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors (the reports are still "
                                            "written; the exit code says the verdict).")] = False,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Progress lines twice as often in logs, and "
                                              "a traceback with every error.")] = False):
    """Options that apply to every command: edgekd [-q | -v] COMMAND ..."""
    from edgekd.progress import NORMAL, QUIET, VERBOSE, set_verbosity

    if quiet and verbose:
        raise typer.BadParameter("give one of --quiet and --verbose", param_hint="--quiet/--verbose")
    set_verbosity(QUIET if quiet else VERBOSE if verbose else NORMAL)
    console.quiet = quiet  # errors go to err_console (stderr), which stays on


# ----------------------------------------------------------------------------- commands
@app.command(epilog=describe_methods())
@handle_errors
def build(target: Target = "host-cpu", config: ConfigFile = None, teacher: TeacherOpt = None,
          teacher_weights: TeacherWeights = None, trust_pickle: TrustPickle = False, data: DataOpt = None,
          out: OutOpt = None, latency_ms: LatencyOpt = None, memory_mb: MemoryOpt = None,
          max_accuracy_drop: DropOpt = None, epochs: EpochsOpt = None, seed: SeedOpt = None,
          device: DeviceOpt = None, input_size: SizeOpt = None, mean: MeanOpt = None, std: StdOpt = None,
          method: MethodOpt = None, set_: SetOpt = None, remote: RemoteOpt = None,
          baseline_scratch: BaselineScratchOpt = False,
          overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the run already in --out.")] = False,
          min_speedup: MinSpeedupOpt = None, task: TaskOpt = None, max_length: MaxLengthOpt = None,
          student_arch: Annotated[str | None, typer.Option(
              "--student-arch", help="Pin the student (no search): an arch as JSON, or an earlier run's "
                                     "search/search.json whose pick is reused.")] = None,
          ship: Annotated[str | None, typer.Option(
              "--ship", help="student | best: best ships the teacher compressed without distillation when it "
                             "meets the budgets and beats the student.")] = None,
          require_measured: Annotated[bool, typer.Option("--require-measured",
                                                         help="Exit 0 only if every budget was measured.")] = False,
          open_: Annotated[bool, typer.Option("--open", help="Open report.html in a browser when done (where a "
                                              "desktop exists; else print its path).")] = False):
    """Search, distil, export, compile and check a student for a target; writes OUT/report.json and .html.
    Exit 0 every budget met, 1 one failed, 3 one could not be decided (its interval straddles the limit)."""
    from edgekd.config import load_build_config
    from edgekd.gate.verdict import exit_code
    from edgekd.pipeline import build as run_build

    opts = _options(target, teacher, teacher_weights, trust_pickle, data, seed, device, input_size, mean, std,
                    latency_ms, memory_mb, max_accuracy_drop, epochs, method, baseline_scratch)
    cfg = load_build_config(config, {**opts, "out": str(out) if out else None, "remote": remote,
                                     "budgets.min_speedup": min_speedup, "ship": ship, "text.task": task,
                                     "search.student_arch": _student_arch(student_arch, "--student-arch"),
                                     "text.max_length": max_length}, set_ or [])
    from edgekd.rundir import refuse_earlier_run

    refuse_earlier_run(cfg.out, overwrite)  # before the teacher and data are loaded: that can take minutes
    ctx = _context(cfg)
    report = run_build(ctx, overwrite=overwrite)
    if open_:
        from edgekd.rerender import open_page

        open_page(ctx.run.report_html, console)
    unmeasured = [b.name for b in report.budgets if b.source != "measured"]
    if require_measured and unmeasured:
        err_console.print(f"failed: --require-measured, but {', '.join(unmeasured)} were predicted", markup=False)
        raise typer.Exit(1)
    better = report.extra.get("better_alternative")
    if better:  # the last line, where a CI log's tail shows it; the exit code is the verdict of what shipped
        shipped = report.extra.get("shipped")
        console.print(f"[bold]{better} (the teacher compressed alone) is better than the distilled student[/]: "
                      + (f"shipped {better} (--ship best); the exit code is its verdict" if shipped == better
                         else "shipped the student; --ship best ships it instead"), highlight=False)
    raise typer.Exit(exit_code(report.verdict))


def _student_arch(value: str | None, option: str) -> dict | None:
    """A student given by hand: an arch as JSON, or an earlier run's search.json whose pick is reused."""
    from edgekd.errors import InputError

    if value is None:
        return None
    path = Path(value)
    is_file = not value.lstrip().startswith("{") and path.is_file()
    try:
        record = json.loads(path.read_text() if is_file else value)
    except (OSError, ValueError) as e:
        raise InputError(f"{option}: {value!r} is neither an arch as JSON nor a readable search.json ({e}); pass "
                         "e.g. '{\"family\": \"resnet\", ...}' or OLD_RUN/search/search.json") from None
    arch = record.get("pick") if is_file and isinstance(record, dict) else record
    if not isinstance(arch, dict) or "family" not in arch:
        raise InputError(f"{option}: {value!r} " + ("holds no pick (that search picked no student); " if is_file
                                                    else "is not an arch (a JSON object with 'family'); ")
                         + "pass an arch or a search.json with a pick")
    return arch


@app.command("report")
@handle_errors
def report_(run: Annotated[Path, typer.Argument(help="A build's --out folder (or its report.json).")],
            open_: Annotated[bool, typer.Option("--open", help="Open report.html in a browser (where a desktop "
                                                "exists).")] = False):
    """Redraw report.md, junit.xml and report.html from report.json (an old run, or edited budgets); exit as
    check does: 0 pass, 1 fail, 3 inconclusive."""
    from edgekd.gate.verdict import exit_code
    from edgekd.report import print_summary
    from edgekd.rerender import open_page, rerender

    report = rerender(run)
    folder = run if run.is_dir() else run.parent
    print_summary(report, console)
    console.print(f"wrote {folder / 'report.md'}, {folder / 'junit.xml'}, {folder / 'report.html'}", highlight=False,
                  markup=False)
    if open_:
        open_page(folder / "report.html", console)
    raise typer.Exit(exit_code(report.verdict))


@app.command()
@handle_errors
def targets(as_json: JsonOpt = False):
    """List deployment targets (profile + runtime + precision + default budgets)."""
    from edgekd.config import list_names, load_target

    table = Table("target", "profile", "runtime", "precision", "latency_ms", "memory_mb", "max_accuracy_drop",
                  title="edgekd targets")
    _listing([load_target(n) for n in list_names("targets")], as_json, table, lambda t: (
        t.name, t.profile, t.runtime, t.precision,
        *(str(v) for v in (t.budgets.latency_ms, t.budgets.memory_mb, t.budgets.max_accuracy_drop))))


@app.command()
@handle_errors
def profiles(as_json: JsonOpt = False):
    """List hardware profiles; `host` is detected (and measured) on this machine."""
    from edgekd.config import list_names, load_profile

    table = Table("profile", "arch", "device", "cores", "RAM MB", "GB/s", "fp32 GOPS", "fp16 GOPS", "int8 GOPS",
                  "runtimes", title="edgekd profiles")
    _listing([load_profile(n) for n in list_names("profiles")], as_json, table, lambda p: (
        p.name, p.arch, p.device, f"{p.cores.value:g}", f"{p.ram_mb.value:.0f}", f"{p.memory_bandwidth_gbs.value:.3g}",
        *(f"{p.peak_gops[k].value:.4g}" for k in ("fp32", "fp16", "int8")), ",".join(p.runtimes)))


def _listing(items: list, as_json: bool, table: Table, row) -> None:
    """`edgekd targets` / `profiles`: the items as JSON, or one table row each."""
    if as_json:
        console.print_json(json.dumps([i.model_dump() for i in items]))
        return
    for item in items:
        table.add_row(*row(item))
    console.print(table)


@app.command()
@handle_errors
def search(target: Target = "host-cpu", config: ConfigFile = None, teacher: TeacherOpt = None,
           teacher_weights: TeacherWeights = None, trust_pickle: TrustPickle = False, data: DataOpt = None,
           out: OutOpt = None, latency_ms: LatencyOpt = None, memory_mb: MemoryOpt = None, seed: SeedOpt = None,
           device: DeviceOpt = None, input_size: SizeOpt = None, mean: MeanOpt = None, std: StdOpt = None,
           score: Annotated[str | None, typer.Option(
               help="Training-free score (edgekd/search/scores.py), or scores joined by '+' for their rank "
                    "ensemble, e.g. zico+flops.")] = None,
           spaces: Annotated[str | None, typer.Option(help="Search spaces, e.g. resnet,mobilenetv3.")] = None,
           candidates: Annotated[int | None, typer.Option(help="Candidates to score (those that fit).")] = None,
           top_k: Annotated[int | None, typer.Option("--top-k", help="Best candidates timed on the runtime (per "
                                                                       "round) and listed.")] = None,
           min_speedup: MinSpeedupOpt = None, set_: SetOpt = None):
    """Pick a student within the budgets without training; writes OUT/search/search.json and pareto.png."""
    from edgekd.rundir import make_dir
    from edgekd.stages import search as search_stage

    cfg = build_config(config, out, set_, **_options(target, teacher, teacher_weights, trust_pickle, data, seed,
                                                     device, input_size, mean, std, latency_ms, memory_mb),
                       **{"search.score": score, "search.spaces": spaces.split(",") if spaces else None,
                          "search.max_candidates": candidates, "search.top_k": top_k,
                          "budgets.min_speedup": min_speedup})
    ctx = _context(cfg)
    make_dir(ctx.out)
    ctx.save_config()
    search_stage.run(ctx)
    console.print(f"wrote {ctx.run.search_json}", markup=False)


@app.command(epilog=describe_methods())
@handle_errors
def distill(out: Annotated[Path, typer.Option("--out", help="Run folder holding search/search.json.")],
            arch: Annotated[str | None, typer.Option(help="Student arch as JSON (default: the search pick).")] = None,
            target: Annotated[str | None, typer.Option("--target", "-t", help="Target (default: the run's).")] = None,
            config: ConfigFile = None, teacher: TeacherOpt = None, teacher_weights: TeacherWeights = None,
            trust_pickle: TrustPickle = False, data: DataOpt = None, epochs: EpochsOpt = None,
            seed: SeedOpt = None, device: DeviceOpt = None, method: MethodOpt = None, set_: SetOpt = None,
            baseline_scratch: BaselineScratchOpt = False,
            resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/distill's newest usable "
                                                 "checkpoint (same settings).")] = False,
            nproc_per_node: Annotated[int, typer.Option("--nproc-per-node", min=1, help="DDP processes on this "
                                                        "machine (torch.distributed.run; one per GPU).")] = 1):
    """Distil the searched (or --arch) student from the teacher; writes OUT/distill/."""
    from edgekd.results import SearchResult
    from edgekd.rundir import RunDir, make_dir
    from edgekd.stages import distill as distill_stage

    cfg = build_config(config, out, set_, **_options(target, teacher, teacher_weights, trust_pickle, data, seed,
                                                     device, epochs=epochs, method=method,
                                                     baseline_scratch=baseline_scratch))
    ctx = _context(cfg)
    searched = SearchResult(_student_arch(arch, "--arch")) if arch is not None else SearchResult.load(RunDir(out))
    make_dir(ctx.out)
    ctx.save_config()
    distill_stage.run(ctx, searched, resume=resume, nproc_per_node=nproc_per_node)


@app.command("export")
@handle_errors
def export_(out: Annotated[Path, typer.Option("--out", help="Run folder holding distill/.")],
            set_: SetOpt = None):
    """Export the distilled student (and a torch teacher) to ONNX with a parity check; writes OUT/export/."""
    from edgekd.results import DistillResult
    from edgekd.rundir import RunDir
    from edgekd.stages import export as export_stage

    ctx = _context(build_config(None, out, set_))
    export_stage.run(ctx, DistillResult.load(RunDir(out)))


@app.command("compile")
@handle_errors
def compile_(model: Annotated[Path | None, typer.Argument(help="One .onnx to compile (else the run in --out).")] = None,
             out: Annotated[Path | None, typer.Option("--out", help="Run folder holding export/; with MODEL, the "
                                                      "folder for the artifact.")] = None,
             target: Annotated[str | None, typer.Option("--target", "-t", help="Target (default: the run's).")] = None,
             runtime: RuntimeOpt = None,
             precision: Annotated[str | None, typer.Option(help="With MODEL: fp32 | fp16 | int8.")] = None,
             calibration: Annotated[Path | None, typer.Option(help="With MODEL and int8: inputs .npy/.npz.")] = None,
             batch: Annotated[int, typer.Option(min=1, help="With MODEL: the batch to optimize for.")] = 1,
             mobile: Annotated[bool, typer.Option("--mobile", help="With MODEL: ORT format (ONNX Runtime Mobile).")]
             = False,
             max_length: TokensOpt = None, as_json: JsonOpt = False, remote: RemoteOpt = None,
             set_: SetOpt = None):
    """Compile the run's exported ONNX for the target (OUT/compile/), or one MODEL for --runtime."""
    from edgekd.compile import compile_model
    from edgekd.errors import InputError
    from edgekd.results import ExportResult
    from edgekd.rundir import RunDir
    from edgekd.stages import compile as compile_stage

    if model is not None:
        if runtime is None or out is None:
            raise InputError("compile MODEL: give --runtime and --out (the folder for the artifact)")
        from edgekd.model_meta import announce

        announce(model, err_console if as_json else console, "the artifact takes inputs prepared the same way"
                 + (" (so must --calibration)" if calibration else ""))
        if remote:
            from edgekd.remote import remote_compile

            artifact = remote_compile(remote, model, runtime, precision, out, batch, calibration, max_length)
        else:
            artifact = compile_model(model, out, runtime, precision, calibration, batch, mobile, max_length)
        if as_json:
            print(json.dumps(artifact.to_dict(), default=str))
        else:
            console.print(f"wrote {artifact.path}", markup=False)
        return
    if out is None:
        raise InputError("compile: give --out (a run folder holding export/), or a MODEL.onnx")
    ctx = _context(build_config(None, out, set_, target=target, remote=remote))
    compiled = compile_stage.run(ctx, ExportResult.load(RunDir(out)))
    console.print(f"skipped: {escape(compiled.skipped)}" if compiled.skipped else f"wrote {compiled.student.path}")


@app.command()
@handle_errors
def lint(model: Annotated[Path, typer.Argument(help="The .onnx to check.")],
         runtime: Annotated[str, typer.Option("--runtime", "-r", help="Runtime whose parser to check against.")]
         = "tensorrt",
         batch: Annotated[int, typer.Option(min=1, help="Batch the target runs (the profile's opt).")] = 1,
         max_batch: Annotated[int, typer.Option(min=1, help="Largest batch the engine must take.")] = 64,
         max_length: TokensOpt = None, as_json: JsonOpt = False):
    """Find what the runtime would refuse (node, op, why); exit 1 if anything would fail, 0 when clean."""
    from edgekd.errors import InputError
    from edgekd.runtimes import create_backend, linting_runtimes

    backend = create_backend(runtime)
    if not backend.has_lint:
        raise InputError(f"--runtime {runtime}: edgekd has no lint for it; lint knows {', '.join(linting_runtimes())}")
    findings = backend.lint(model, batch, max(batch, max_batch), max_length)
    errors = sum(f.severity == "error" for f in findings)
    if as_json:
        console.print_json(json.dumps({"model": str(model), "runtime": runtime, "errors": errors,
                                       "findings": [f.to_dict() for f in findings]}))
    else:
        for f in findings:
            console.print(f.line(), highlight=False, soft_wrap=True, markup=False)
        console.print(f"{model}: {errors} error(s), {len(findings) - errors} warning(s) for {runtime}", markup=False)
    raise typer.Exit(1 if errors else 0)


def _opt(flag: str, help_: str, typ=str | None):
    return Annotated[typ, typer.Option(flag, help=help_)]


@app.command()
@handle_errors
def bench(model: Annotated[Path, typer.Argument(help="Artifact: .onnx, .ort, OpenVINO .xml, TensorRT .engine.")],
          runtime: RuntimeOpt = None,
          batch: Annotated[int, typer.Option(min=1, help="Batch size to time.")] = 1,
          threads: Annotated[int | None, typer.Option(min=1, help="Threads (default: the usable cores).")] = None,
          eval_: Annotated[Path | None, typer.Option("--eval", help="Also top-1 accuracy on an .npz (x, y).")] = None,
          logits: Annotated[Path | None, typer.Option(help="With --eval: save the logits (.npy) here.")] = None,
          as_json: JsonOpt = False, remote: RemoteOpt = None,
          trtexec: Annotated[bool, typer.Option("--trtexec", help="With --remote: time with trtexec on the device "
                                                "(GPU compute and host latency), no edgekd needed there.")] = False,
          against: Annotated[Path | None, typer.Option(
              "--against", help="A teacher for the same runtime: time it and MODEL as a pair, interleaved, and "
                                "give the speed-up with its interval.")] = None):
    """Latency (p50 with its interval; GPU compute apart on TensorRT), memory and accuracy of one artifact."""
    from edgekd.runtimes import artifact_from_path
    from edgekd.runtimes.bench import bench as run_bench
    from edgekd.runtimes.bench import print_bench

    artifact = artifact_from_path(model, runtime)
    if eval_ is not None:
        from edgekd.model_meta import announce

        # --json keeps stdout one JSON document; the remark goes to stderr there
        announce(model, err_console if as_json else console, "--eval inputs must be prepared the same way")
    if trtexec:
        from edgekd.errors import InputError
        from edgekd.remote import remote_trtexec

        if not remote:
            raise InputError("--trtexec runs on the device: give --remote ssh://user@host")
        print(json.dumps(remote_trtexec(remote, model, artifact.precision, batch), default=str))
        return
    if remote:
        import shutil

        from edgekd.remote import remote_bench
        from edgekd.rundir import check_output_file
        from edgekd.validate import load_input_arrays

        if eval_ is not None:  # refused here, not after the upload
            load_input_arrays(eval_, "--eval", labels=True)
        if logits is not None:
            check_output_file(logits, "--logits")

        result = remote_bench(remote, model, artifact.runtime, threads, batch, eval_, logits=logits is not None,
                              against=against)
        if logits is not None and "logits_path" in result:
            shutil.move(result.pop("logits_path"), logits)
    else:
        from edgekd.hostinfo import usable_cores

        result = run_bench(artifact, threads or usable_cores(), batch, eval_, logits,
                           against=artifact_from_path(against, artifact.runtime) if against else None)
    if as_json:
        print(json.dumps(result, default=str))
    else:
        print_bench(result, console)


@app.command()
@handle_errors
def check(model: Annotated[Path, typer.Argument(help="Model to gate: .onnx, OpenVINO .xml, or an edgekd artifact.")],
          target: Annotated[str, typer.Option("--target", "-t", help="Target name or .yaml (its budgets are the "
                                              "defaults).")],
          latency_ms: LatencyOpt = None, memory_mb: MemoryOpt = None, max_accuracy_drop: DropOpt = None,
          data: _opt("--data", "Evaluation data (digits | fonts | shapes | folder | .npz); its held-out split is "
                                    "used.") = None,
          reference: _opt("--reference", "Model to compare accuracy (with --data) and speed (with --min-speedup) "
                                         "with, e.g. the fp32 teacher.", Path | None) = None,
          min_speedup: _opt("--min-speedup", "Speed-up budget: --reference / MODEL latency, timed interleaved.",
                            float | None) = None,
          baseline: _opt("--baseline", "The old model (OLD.onnx|.xml|.engine: timed interleaved with MODEL, A/B) or "
                                       "the report.json of an earlier check or build.", Path | None) = None,
          max_regression: _opt("--max-regression", "Allowed growth over --baseline, e.g. 5%.", str) = "5%",
          json_path: _opt("--json", "Write the report (report.json schema) here.", Path | None) = None,
          junit_path: _opt("--junit", "Write JUnit XML here (one testcase per budget).", Path | None) = None,
          markdown_path: _opt("--markdown", "Write a Markdown summary (for a PR comment) here.", Path | None) = None,
          html_path: _opt("--html", "Write a self-contained HTML report (charts, no network needed) here.",
                          Path | None) = None,
          remote: _opt("--remote", "ssh://user@host: measure on the device (its edgekd bench).") = None,
          require_measured: _opt("--require-measured", "Predicted figures fail.", bool) = False,
          statistic: _opt("--statistic", "Latency statistic gated: p50 | p90.", str) = "p50",
          inconclusive: _opt("--inconclusive", "An interval straddling a limit gives: exit3 | pass | fail.",
                             str) = "exit3",
          max_seconds: _opt("--max-seconds", "Timing adds rounds while a verdict is undecided, up to this many "
                                             "seconds.", float) = 20.0,
          input_size: SizeOpt = None, mean: MeanOpt = None, std: StdOpt = None, seed: SeedOpt = None):
    """CI gate: latency, memory, accuracy, speed-up and regression of any model; exit 0 pass, 1 fail, 2 bad input,
    3 inconclusive."""
    options = dict(locals()) | {"input_size": _numbers("--input-size", input_size, int),
                                "mean": _numbers("--mean", mean), "std": _numbers("--std", std)}
    from edgekd.gate import config_from_options, exit_code, run_gate
    from edgekd.model_meta import fill_preprocessing

    options["input_size"], options["mean"], options["std"] = fill_preprocessing(
        model, options["input_size"], options["mean"], options["std"], console)

    raise typer.Exit(exit_code(run_gate(config_from_options(**options), console).verdict))


from edgekd.cli_calibrate import calibrate as _calibrate  # noqa: E402  (the cost model's command, own module)

app.command("calibrate")(handle_errors(_calibrate))


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)  # here, not at import: a program that imports edgekd keeps its own
    # Click reports its own usage errors with exit 2, as docs/report-contract.md asks for bad input.
    app(prog_name="edgekd")


if __name__ == "__main__":
    sys.exit(main())
