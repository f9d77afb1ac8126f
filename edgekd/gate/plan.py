"""What `edgekd check` was asked to do, resolved and validated before anything is measured, so that
bad input exits 2 before a second is spent timing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, ValidationError

from edgekd.config import Budgets, Preprocess, Profile, Strict, Target, load_profile, load_target
from edgekd.errors import InputError
from edgekd.gate.inputs import Baseline, ModelInput, inspect_model, load_baseline, load_eval_split, preprocess_for
from edgekd.gate.verdict import parse_percent
from edgekd.measurable import local_measurement_blocker, local_threads
from edgekd.remote import parse_remote
from edgekd.rundir import check_output_file
from edgekd.runtimes import Artifact, artifact_from_path, create_backend
from edgekd.validate import refuse_custom_ops


class CheckConfig(Strict):
    """Options of `edgekd check` (field names follow the CLI options)."""

    model: Path
    target: str
    latency_ms: Annotated[float, Field(gt=0)] | None = None
    memory_mb: Annotated[float, Field(gt=0)] | None = None
    max_accuracy_drop: Annotated[float, Field(ge=0)] | None = None  # percentage points
    min_speedup: Annotated[float, Field(ge=1)] | None = None  # --reference latency / MODEL latency
    data: str | None = None
    reference: Path | None = None
    baseline: Path | None = None  # report.json (a stored figure) or a model (A/B, timed beside MODEL)
    max_regression_pct: Annotated[float, Field(ge=0)] = 5.0
    statistic: Literal["p50", "p90"] = "p50"
    inconclusive: Literal["exit3", "pass", "fail"] = "exit3"
    require_measured: bool = False
    remote: str | None = None
    max_seconds: Annotated[float, Field(gt=0)] = 20.0  # rounds are added while a verdict is undecided, up to this
    preprocess: Preprocess = Preprocess()
    seed: int = 0
    json_path: Path | None = None
    junit_path: Path | None = None
    markdown_path: Path | None = None
    html_path: Path | None = None


OPTION_NAMES = {"json_path": "--json", "junit_path": "--junit", "markdown_path": "--markdown", "html_path": "--html",
                "model": "MODEL",
                "max_regression_pct": "--max-regression", "preprocess": "--mean/--std"}


def config_from_options(max_regression: str = "5%", input_size=None, mean=None, std=None, **options) -> CheckConfig:
    """CLI options -> a validated CheckConfig; an InputError names the option."""
    options = {k: v for k, v in options.items() if v is not None}
    options["max_regression_pct"] = parse_percent(max_regression)
    options["preprocess"] = {"input_size": input_size, "mean": mean, "std": std}
    try:
        return CheckConfig.model_validate(options)
    except ValidationError as e:
        first = e.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        if field == "preprocess" and len(first["loc"]) > 1:
            field = str(first["loc"][1])  # input_size, mean, std: each its own option
        option = OPTION_NAMES.get(field, "--" + field.replace("_", "-"))
        raise InputError(f"{option}: {first['msg'][0].lower()}{first['msg'][1:]}") from None


@dataclass
class GatePlan:
    """Everything resolved and validated before anything is measured."""

    cfg: CheckConfig
    target: Target
    profile: Profile
    budgets: Budgets
    artifact: Artifact  # the model as given, on the target's runtime
    model: ModelInput
    run_art: Artifact  # what runs: the artifact, or its ONNX through onnxruntime where the runtime is not here
    blocker: str | None  # why latency/memory are predicted (None: measured)
    shape: tuple[int, ...]
    baseline: Baseline | None  # a stored report's figures
    baseline_model: Artifact | None  # an A/B baseline: timed interleaved with MODEL on the target's runtime
    threads: int  # the sessions' threads here: the profile's, capped to this host's cores (as the build)
    data: tuple[np.ndarray, np.ndarray] | None
    reference: Artifact | None
    reference_model: ModelInput | None
    reference_timed: Artifact | None  # --reference on the target's runtime, timed for --min-speedup
    not_checked: list[str]


def make_plan(cfg: CheckConfig) -> GatePlan:
    if cfg.remote is not None:
        parse_remote(cfg.remote)  # a malformed URL exits 2 here, before anything runs
        if cfg.statistic != "p50":
            raise InputError(f"--statistic {cfg.statistic}: with --remote the device's `edgekd bench` gates p50; "
                             "use --statistic p50, or run `edgekd check` on the device itself")
    target = load_target(cfg.target)
    profile = load_profile(target.profile)
    if target.runtime not in profile.runtimes:
        raise InputError(f"--target {cfg.target}: runtime '{target.runtime}' is not one of profile "
                         f"'{profile.name}' runtimes {profile.runtimes}")
    budgets = target.budgets.merged(Budgets(latency_ms=cfg.latency_ms, memory_mb=cfg.memory_mb,
                                            max_accuracy_drop=cfg.max_accuracy_drop, min_speedup=cfg.min_speedup))
    for path, option in ((cfg.json_path, "--json"), (cfg.junit_path, "--junit"), (cfg.markdown_path, "--markdown"),
                         (cfg.html_path, "--html")):
        if path is not None:
            check_output_file(path, option)  # before any timing, not an OSError when the report is written
    not_checked = []
    if cfg.reference is not None and cfg.data is None and cfg.min_speedup is None:
        raise InputError("--reference: needs --data to compare accuracy on, or --min-speedup to gate a speed-up")
    if cfg.min_speedup is not None and cfg.reference is None:
        raise InputError("--min-speedup: needs --reference, the model it must be faster than (e.g. the teacher)")
    if budgets.min_speedup is not None and cfg.min_speedup is None:  # --reference alone is for accuracy
        not_checked.append(f"speedup (target default {budgets.min_speedup:g}x) was not checked: give "
                           "--min-speedup and --reference")
        budgets = budgets.model_copy(update={"min_speedup": None})
    if cfg.max_accuracy_drop is not None and (cfg.data is None or cfg.reference is None):
        raise InputError("--max-accuracy-drop: needs --data (evaluation set) and --reference (the model to "
                         "compare against, e.g. the fp32 teacher)")
    if budgets.max_accuracy_drop is not None and cfg.reference is None:
        not_checked.append(f"accuracy_drop (target default {budgets.max_accuracy_drop:g} points) was not "
                           "checked: give --data and --reference")
        budgets = budgets.model_copy(update={"max_accuracy_drop": None})
    stored = cfg.baseline is not None and cfg.baseline.suffix.lower() == ".json"
    if cfg.baseline is not None and not stored and \
            cfg.baseline.suffix.lower() not in (".onnx", ".ort", ".xml", ".engine"):
        raise InputError(f"--baseline '{cfg.baseline}': neither a report.json nor a model; give the old model "
                         "(.onnx, .xml, .engine) to time it beside MODEL, or an earlier report.json")
    baseline = load_baseline(cfg.baseline) if stored else None
    if budgets.latency_ms is None and budgets.memory_mb is None and budgets.max_accuracy_drop is None \
            and budgets.min_speedup is None and cfg.baseline is None:
        raise InputError(f"nothing to check: target '{target.name}' sets no budgets; give --latency-ms, "
                         "--memory-mb, --max-accuracy-drop with --data and --reference, or --baseline")

    artifact_from_path(cfg.model, target.runtime)  # file not found, unknown format, wrong runtime
    model = inspect_model(cfg.model)
    if model is None:
        raise InputError(f"MODEL '{cfg.model}': edgekd check cannot read a TensorRT engine's input here; "
                         "check the ONNX it was built from (with --remote, the device builds and times it)")
    artifact = artifact_from_path(cfg.model, target.runtime, model.precision)
    # Over --remote everything about the model is measured on the device itself.
    blocker = None if cfg.remote else local_measurement_blocker(profile, target.runtime)
    if blocker is not None and cfg.model.suffix.lower() != ".onnx":
        raise InputError(f"MODEL '{cfg.model}': a {artifact.runtime} artifact cannot be measured here ({blocker}) "
                         "and the cost model predicts only from ONNX; pass the .onnx model instead")
    run_art = artifact
    if cfg.remote is None and create_backend(target.runtime).unavailable_reason() is not None:
        # The target runtime (TensorRT) is not here: accuracy and the audits run the ONNX through ORT, labelled.
        run_art = Artifact(cfg.model, "onnxruntime", artifact.precision)
    if cfg.remote is None and cfg.model.suffix.lower() == ".onnx" and run_art.runtime in ("onnxruntime", "openvino"):
        refuse_custom_ops(cfg.model)  # a runtime's traceback when the session opens, otherwise
    threads = profile.threads if cfg.remote else local_threads(profile)
    if baseline is not None:
        _check_baseline(baseline, "measured" if blocker is None else "predicted", cfg.statistic, profile.name)
        _same_settings(baseline, target, threads, blocker)
    baseline_model = None if cfg.baseline is None or stored else _baseline_model(cfg, target, model, blocker)
    if model.token_inputs:  # a text encoder: latency and memory at its sequence length (edgekd/text)
        if cfg.data is not None or cfg.reference is not None:
            raise InputError(f"MODEL '{cfg.model}' is a text encoder ({', '.join(model.token_inputs)}); edgekd check "
                             "gates its latency and memory, not accuracy: leave out --data and --reference "
                             "(edgekd build reports a text student's quality)")
        if blocker is not None:
            raise InputError(f"MODEL '{cfg.model}' is a text encoder and cannot be measured here ({blocker}); the "
                             "cost model prices a text encoder from its architecture, in edgekd build")
    shape = model.shape(target.batch_size, cfg.preprocess.input_size)
    data = reference = reference_model = None
    if cfg.data is not None:
        preprocess = preprocess_for(model, cfg.preprocess.input_size, cfg.preprocess.mean, cfg.preprocess.std)
        data = load_eval_split(cfg.data, model, preprocess, cfg.seed)
    reference_timed = None
    if cfg.reference is not None:
        if not cfg.reference.is_file() or cfg.reference.suffix.lower() not in (".onnx", ".xml"):
            what = "unknown model format" if cfg.reference.is_file() else "file not found"
            raise InputError(f"--reference '{cfg.reference}': {what}; give an .onnx or OpenVINO .xml model")
        reference_model = inspect_model(cfg.reference, "--reference")
        reference = artifact_from_path(cfg.reference)
        if create_backend(reference.runtime).unavailable_reason() is not None:
            raise InputError(f"--reference '{cfg.reference}': {reference.runtime} cannot run here; give the ONNX")
        if tuple(reference_model.dims[1:]) != tuple(model.dims[1:]):
            raise InputError(f"--reference '{cfg.reference}': takes inputs {reference_model.dims[1:]} but MODEL "
                             f"takes {model.dims[1:]}; compare models on the same inputs")
        if budgets.min_speedup is not None:
            if blocker is not None or cfg.remote:
                where = blocker or "over --remote only MODEL (and an A/B --baseline) is timed on the device"
                raise InputError(f"--min-speedup: the speed-up is timed with MODEL and --reference interleaved "
                                 f"here, and {where}")
            reference_timed = _on_target(cfg.reference, target, "--reference")
    return GatePlan(cfg, target, profile, budgets, artifact, model, run_art, blocker, shape, baseline,
                    baseline_model, threads, data, reference, reference_model, reference_timed, not_checked)


def _on_target(path: Path, target: Target, option: str) -> Artifact:
    try:
        return artifact_from_path(path, target.runtime)
    except InputError as e:  # its messages name the file as MODEL; here it is the option's
        raise InputError(f"{option} {str(e).replace('MODEL ', '', 1)}") from None


def _baseline_model(cfg: CheckConfig, target: Target, model: ModelInput, blocker: str | None) -> Artifact:
    """An A/B baseline: a model OLD timed beside MODEL on the target's runtime, on the same inputs."""
    where = f"--baseline '{cfg.baseline}'"
    old = inspect_model(cfg.baseline, "--baseline") if cfg.baseline.is_file() else None
    artifact = _on_target(cfg.baseline, target, "--baseline")
    if blocker is not None:
        raise InputError(f"{where}: an A/B comparison times OLD and MODEL on {target.runtime} here, but {blocker}")
    if cfg.remote and (cfg.data is not None or cfg.reference is not None):
        raise InputError(f"{where}: over --remote the device runs the A/B gate on latency and memory; check "
                         "accuracy (--data, --reference) in a separate run")
    if old is not None and (old.token_inputs != model.token_inputs or tuple(old.dims[1:]) != tuple(model.dims[1:])):
        raise InputError(f"{where}: takes inputs {_dims(old)} but MODEL takes {_dims(model)}; an A/B gate compares "
                         "two versions of one model on the same inputs")
    return artifact


def _dims(m: ModelInput) -> str:
    return "x".join("?" if d is None else str(d) for d in m.dims[1:]) + (f" ({', '.join(m.token_inputs)})"
                                                                            if m.token_inputs else "")


def _same_settings(baseline: Baseline, target: Target, threads: int, blocker: str | None) -> None:
    """A stored figure is compared only when it was measured as this check measures: same runtime,
    precision, threads and estimator (the median of interleaved block medians, edgekd/interleave.py). Another
    host is allowed but marked (GateRun.report): it is what a stored baseline is for, and why A/B is better."""
    if blocker is not None or baseline.latency_ms is None:
        return
    for what, theirs, ours in (("runtime", baseline.runtime, target.runtime),
                               ("precision", baseline.precision, target.precision),
                               ("threads", baseline.threads, threads),
                               ("timing", baseline.method, "interleaved blocks")):
        if theirs != ours:
            raise InputError(f"--baseline '{baseline.path}': its latency was measured with {what} {theirs!r} but "
                             f"this check's is {ours!r}; re-measure the baseline with this edgekd and target, or "
                             "give the old model itself (--baseline OLD.onnx) for an A/B comparison")


def _check_baseline(baseline: Baseline, source: str, statistic: str, profile: str) -> None:
    """A regression compares like with like: measured with measured, p50 with p50, a prediction with a
    prediction for the same profile."""
    if source == "predicted" and baseline.profile != profile:
        raise InputError(f"--baseline '{baseline.path}': was made for profile '{baseline.profile}' but this "
                         f"target's is '{profile}'; compare predictions for the same device")
    for name, theirs in (("latency", baseline.latency_source), ("memory", baseline.memory_source)):
        value = baseline.latency_ms if name == "latency" else baseline.memory_mb
        if value is not None and theirs != source:
            raise InputError(f"--baseline '{baseline.path}': its {name} was {theirs} but this run's will be "
                             f"{source}; compare reports made the same way")
    if baseline.latency_ms is not None and baseline.statistic != statistic:
        raise InputError(f"--baseline '{baseline.path}': gates {baseline.statistic} latency but --statistic is "
                         f"{statistic}; use the same statistic")
