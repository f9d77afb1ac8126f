"""`edgekd check`: a latency / memory / accuracy gate for CI that does not flake.

    cfg = config_from_options(model="m.onnx", target="host-cpu", latency_ms=5)
    report = run_gate(cfg, console)      # writes --json / --junit / --markdown
    sys.exit(exit_code(report.verdict))  # 0 pass, 1 fail, 3 inconclusive (2: InputError before anything ran)

Everything the user gave is validated first (gate.plan), so bad input exits 2 before a second is spent
measuring. Latency is timed until its 95% interval is tight (or a time cap), and each budget is decided
by where that interval lies (gate.verdict). Where the target's runtime or device is not here, latency and
memory come from the cost model, labelled `predicted`, with the model's error band as the interval.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from rich.console import Console

from edgekd.cost.roofline import predict_onnx
from edgekd.errors import InputError
from edgekd.figures import Figure, Figures
from edgekd.gate.ab import all_decided, checks, passes, widened
from edgekd.gate.inputs import token_pool
from edgekd.gate.plan import CheckConfig, GatePlan, config_from_options, make_plan
from edgekd.gate.timing import POOL_SIZE, outputs_match, repeated_input_audit, run_all, time_models
from edgekd.gate.verdict import budget_result, exit_code, regression_limit
from edgekd.interleave import STORED_SPREAD, load_replicas
from edgekd.remote import measure_on_device, remote_check, remote_compile
from edgekd.report import BudgetResult, Report, StageRecord, environment, print_summary, to_markdown, write_outputs
from edgekd.runtimes import Artifact, create_backend
from edgekd.runtimes.memprobe import MEMORY_PROBES, memory_figures

__all__ = ["CheckConfig", "config_from_options", "exit_code", "make_plan", "run_gate"]


def _load(artifact: Artifact, threads: int, option: str):
    try:
        return create_backend(artifact.runtime).load(artifact, threads)
    except InputError:
        raise
    except Exception as e:  # the runtime rejects a model that onnx.checker accepted (unsupported op, ...)
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise InputError(f"{option} '{artifact.path}': {artifact.runtime} cannot load it ({first})") from None


def _accuracy(session, x: np.ndarray, y: np.ndarray, batch: int, fixed: bool, option: str) -> tuple[float, np.ndarray]:
    logits = run_all(session, x, batch, fixed)
    if logits.ndim != 2:
        raise InputError(f"{option}: outputs have shape {logits.shape[1:]} per input; accuracy needs class "
                         "scores (batch, classes)")
    if logits.shape[1] <= int(y.max()):
        raise InputError(f"{option}: predicts {logits.shape[1]} classes but --data has labels up to {int(y.max())}")
    return float((logits.argmax(1) == y).mean()), logits


def _predicted(plan: GatePlan):
    proto = onnx.load(str(plan.cfg.model))
    weights = {t.name for t in proto.graph.initializer}
    graph_input = next(i for i in proto.graph.input if i.name not in weights)
    for dim, size in zip(graph_input.type.tensor_type.shape.dim, plan.shape, strict=True):
        dim.dim_value = size  # price the shape that is gated, dynamic dims included
    return predict_onnx(proto, plan.profile, plan.artifact.precision, plan.target.batch_size,
                        runtime=plan.target.runtime)


class GateRun:
    """One gate run: measures in order (accuracy, latency + audits, memory) and collects the results."""

    def __init__(self, plan: GatePlan, console: Console):
        self.plan, self.cfg, self.console = plan, plan.cfg, console
        self.batch = plan.target.batch_size
        self.session = None if plan.cfg.remote else _load(plan.run_art, plan.threads, "MODEL")
        self.prediction = _predicted(plan) if plan.blocker is not None else None
        self.student: dict = {"source": str(self.cfg.model), "artifact": plan.artifact.to_dict()}
        self.teacher: dict = {}
        self.stages: list[StageRecord] = []
        self.budgets: list[BudgetResult] = []
        self.notes = list(plan.not_checked)
        self.pool: list[np.ndarray] = []
        self.pool_outputs: list[np.ndarray] | None = None  # the accuracy run's outputs for the pool
        self.baseline_figures: dict | None = None  # the A/B baseline model's, as timed beside MODEL

    def decide(self, name: str, limit: float, value: float, source: str, interval, detail: str = "",
               at_least: bool = False) -> None:
        self.budgets.append(budget_result(name, limit, value, source, interval, detail, self.cfg.inconclusive,
                                          self.cfg.require_measured, at_least))

    def decide_all(self, name: str, limit: float | None, baseline: float | None, value: float, source: str,
                   interval, detail: str) -> None:
        """The budget (if set) and the regression against the baseline (if any), by the same interval rule."""
        if limit is not None:
            self.decide(name, limit, value, source, interval, detail)
        if baseline is not None:
            pct, unit = self.cfg.max_regression_pct, name.rsplit("_", 1)[1]
            detail = f"baseline {baseline:.4g} {unit} ({self.cfg.baseline}) + {pct:g}%; {detail}"
            if source == "predicted":
                # A prediction has no noise (same graph, same profile: same figure), and its error band is
                # systematic, shared by baseline and now; two predictions are compared as points.
                interval, detail = None, detail + "; predicted vs predicted by the same cost model, compared as points"
            elif name == "latency_ms" and interval is not None:  # a stored figure: the spread between processes
                interval = widened(interval)
                detail += f"; interval widened by {100 * STORED_SPREAD:g}% either side for the spread between processes"
            self.decide(f"{name}_regression", regression_limit(baseline, pct), value, source, interval, detail)

    def accuracy(self) -> None:
        plan, cfg, batch = self.plan, self.cfg, self.batch
        if plan.data is None:
            rng = np.random.default_rng(cfg.seed)
            self.pool = (token_pool(plan.model, batch, POOL_SIZE, cfg.seed) if plan.model.token_inputs else
                         [rng.standard_normal(plan.shape).astype(np.float32) for _ in range(POOL_SIZE)])
            self.stages.append(StageRecord("accuracy", "skipped", 0.0, "no --data"))
            return
        start = time.perf_counter()
        x, y = plan.data
        with self.console.status(f"accuracy of {cfg.model.name} on {len(x)} held-out inputs"):
            acc, logits = _accuracy(self.session, x, y, batch, plan.model.dims[0] is not None, f"MODEL '{cfg.model}'")
        n_pool = max(1, min(POOL_SIZE, len(x) // batch))
        self.pool = [x[i * batch:(i + 1) * batch] for i in range(n_pool)]
        self.pool_outputs = [logits[i * batch:(i + 1) * batch] for i in range(n_pool)]
        run = plan.run_art
        self.student |= {"accuracy": acc, "evaluated_with": f"{run.runtime} {run.precision}, batch {batch}, "
                                                            f"{len(x)} held-out samples of {cfg.data}"}
        reason = f"{acc:.4f} on {len(x)} held-out samples through {run.runtime}"
        self.stages.append(StageRecord("accuracy", "passed", time.perf_counter() - start,
                                       reason + self.versus_reference(acc)))

    def versus_reference(self, acc: float) -> str:
        """The --reference's accuracy on the same held-out split (here, through its own runtime) and the
        accuracy_drop budget; returns what to add to the accuracy stage's line."""
        plan, cfg = self.plan, self.cfg
        if plan.reference is None:
            return ""
        x, y = plan.data
        ref = plan.reference_model
        ref_fixed = ref.dims[0] is not None
        ref_acc, _ = _accuracy(_load(plan.reference, plan.threads, "--reference"), x, y,
                               ref.dims[0] if ref_fixed else 256, ref_fixed, f"--reference '{cfg.reference}'")
        self.teacher |= {"source": str(cfg.reference), "accuracy": ref_acc,
                        "evaluated_with": f"{plan.reference.runtime} {plan.reference.precision} on this host"}
        drop = 100 * (ref_acc - acc)
        if plan.budgets.max_accuracy_drop is not None:
            self.decide("accuracy_drop", plan.budgets.max_accuracy_drop, drop, "measured", None,
                        "percentage points, model vs --reference on the same held-out split")
        return f"; reference {ref_acc:.4f}; drop {drop:.2f} points"

    def on_device(self) -> None:
        """--remote: the device's own `edgekd bench` measures accuracy (held-out split shipped as an .npz),
        latency and memory of the artifact in one call; a TensorRT target gets its engine built there first,
        since an engine is tied to the GPU and TensorRT version that built it. The timing audits need the
        session in this process, so they do not run over ssh (said in the stages)."""
        plan, cfg, base = self.plan, self.cfg, self.plan.baseline
        artifact, start = plan.artifact, time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="edgekd-check-") as tmp:
            if artifact.runtime == "tensorrt" and artifact.path.suffix.lower() == ".onnx":
                with self.console.status(f"building the {artifact.precision} engine on {cfg.remote}"):
                    artifact = remote_compile(cfg.remote, artifact.path, "tensorrt", artifact.precision, Path(tmp),
                                              self.batch)
            heldout = None
            if plan.data is not None:
                heldout = Path(tmp) / "heldout.npz"
                np.savez(heldout, x=plan.data[0], y=plan.data[1])
            with self.console.status(f"measuring {cfg.model.name} on {cfg.remote}"):
                run = measure_on_device(cfg.remote, artifact, plan.profile.threads, self.batch, heldout)
        where = f"{artifact.runtime} {artifact.precision} on {cfg.remote}"
        self.student |= {"artifact": artifact.to_dict(), "device_state": run.device_state, "session": run.session}
        if run.accuracy is not None:
            acc = run.accuracy
            self.student |= {"accuracy": acc, "evaluated_with": f"{where}, {run.eval_samples} held-out samples"}
            self.stages.append(StageRecord("accuracy", "passed", 0.0,
                                           f"{acc:.4f} through {where}" + self.versus_reference(acc)))
        else:
            self.stages.append(StageRecord("accuracy", "skipped", 0.0, "no --data"))
        latency, memory, s = run.figures.latency, run.figures.memory, run.figures.extra["latency_stats"]
        interval = latency.interval
        self.student |= Figures(latency, memory, {"latency_stats": s}).as_dict()
        said = f"p50 {latency.value:.4g} ms, 95% interval [{interval[0]:.4g}, {interval[1]:.4g}], {s['runs']} runs"
        self.stages.append(StageRecord("latency", "passed", time.perf_counter() - start, f"{said} on {cfg.remote}"))
        self.stages.append(StageRecord("memory", "passed", 0.0, f"{memory.value:.4g} MB peak RSS the model "
                                       f"adds, one fresh process on {cfg.remote} (a point, no interval)"))
        self.notes.append(f"measured on {cfg.remote} through {where}, batch {self.batch}: {said}")
        for audit in ("outputs-match", "no-input-caching"):
            self.stages.append(StageRecord(audit, "skipped", 0.0, "the audits need the timed session in this "
                                                                  "process; not run over --remote"))
        self.decide_all("latency_ms", plan.budgets.latency_ms, base and base.latency_ms, latency.value,
                        "measured", interval, f"p50, batch {self.batch}, on {cfg.remote}")
        self.decide_all("memory_mb", plan.budgets.memory_mb, base and base.memory_mb, memory.value, "measured",
                        None, f"peak RSS the model adds at run time, on {cfg.remote}")

    def ab_on_device(self) -> None:
        """--remote with an A/B --baseline: the device runs the gate itself (`edgekd check MODEL --baseline
        OLD`), so OLD and MODEL are timed interleaved there in one call; its budgets are decided again here
        from their values and intervals, under this run's --inconclusive and --require-measured."""
        cfg, b = self.cfg, self.plan.budgets
        args = ["--max-regression", f"{cfg.max_regression_pct:g}%", "--max-seconds", f"{cfg.max_seconds:g}"]
        args += [a for flag, v in (("--latency-ms", b.latency_ms), ("--memory-mb", b.memory_mb)) if v is not None
                 for a in (flag, f"{v:g}")]
        start = time.perf_counter()
        with self.console.status(f"A/B gate of {cfg.model.name} against {cfg.baseline.name} on {cfg.remote}"), \
                tempfile.TemporaryDirectory(prefix="edgekd-check-") as tmp:
            device, state = remote_check(cfg.remote, cfg.model, cfg.baseline, cfg.target, args, Path(tmp))
        self.student |= device["student"] | {"device_state": state}
        self.baseline_figures = device.get("baseline_model")
        for stage in device["stages"]:
            self.stages.append(StageRecord(stage["name"], stage["status"], stage["seconds"],
                                           f"on {cfg.remote}: {stage['reason']}"))
        self.stages.append(StageRecord("remote", "passed", time.perf_counter() - start, f"one call to {cfg.remote}"))
        self.notes += [f"on {cfg.remote}: {n}" for n in device.get("notes", []) if not n.startswith("baseline:")]
        for budget in device["budgets"]:
            self.decide(budget["name"], budget["limit"], budget["value"], budget["source"], budget.get("interval"),
                        f"{budget.get('detail', '')}; on {cfg.remote}", budget["name"] == "speedup")

    def latency(self) -> None:
        plan, cfg = self.plan, self.cfg
        stored = plan.baseline.latency_ms if plan.baseline is not None else None
        if plan.budgets.latency_ms is None and stored is None and plan.baseline_model is None \
                and plan.budgets.min_speedup is None:
            self.stages.append(StageRecord("latency", "skipped", 0.0, "no latency budget, baseline or speed-up"))
            return
        if self.prediction is not None:  # plan.py refused A/B and --min-speedup here: nothing to time them on
            p = self.prediction[0]
            self.student |= {"latency_detail": p.detail, "blocker": plan.blocker}
            self.stages.append(StageRecord("latency", "skipped", 0.0, f"predicted: {plan.blocker}"))
            self.notes.append(f"latency and memory are predicted by the cost model for {plan.profile.name} "
                              f"({p.detail}), not measured: {plan.blocker}")
            self.student |= Figures(Figure(p.value, "predicted", tuple(p.interval))).as_dict()
            self.decide_all("latency_ms", plan.budgets.latency_ms, stored, p.value, "predicted", p.interval,
                            f"{cfg.statistic}, batch {self.batch}")
            return
        self.timed_latency()

    def timed_latency(self) -> None:
        """MODEL timed interleaved here in one pass per comparison (with the A/B baseline, with the
        --reference: gate/ab.py), rounds added while a verdict is undecided; then the two audits on the
        first pass's outputs."""
        plan, cfg, start = self.plan, self.cfg, time.perf_counter()
        if self.pool_outputs is None:  # no --data: an untimed pass over the same inputs is the accuracy run
            self.pool_outputs = [self.session.run(x) for x in self.pool]
        artifacts = {"model": plan.run_art, "baseline": plan.baseline_model, "reference": plan.reference_timed}
        replicas = {name: load_replicas(art, plan.threads) for name, art in artifacts.items() if art is not None}
        timings, found, said = [], [], []
        for k, names in enumerate(passes(plan)):
            seconds = max(cfg.max_seconds - (time.perf_counter() - start), 1.0)  # the cap is for all passes
            with self.console.status(f"timing {' and '.join(names)} interleaved ({cfg.statistic}, until decided, "
                                     f"up to {seconds:.0f} s)"):
                timing = time_models({n: replicas[n] for n in names}, self.pool, cfg.statistic, seconds,
                                     lambda t, first=k == 0: all_decided(plan, t, first))
            timings.append(timing)
            found += checks(plan, timing.timed, k == 0)
            how = "decided" if timing.decided else f"still undecided at the {cfg.max_seconds:g} s cap (--max-seconds)"
            t = timing.timed
            said.append(f"{t.rounds} rounds of {' and '.join(names)} in {t.seconds:.2g} s ({how})")
        first = timings[0]
        fig = first.timed.figures("model")
        value, interval = fig.latency.value, fig.latency.interval
        said = (f"{cfg.statistic} {value:.4g} ms, 95% interval [{interval[0]:.4g}, {interval[1]:.4g}]; interleaved: "
                + "; ".join(said))
        said += "".join(f"; {c.name} {c.figure.value:.4g} [{c.figure.interval[0]:.4g}, {c.figure.interval[1]:.4g}]"
                        for c in found if c.name in ("latency_regression", "speedup"))
        run_info = {"statistic": cfg.statistic, "decided": all(t.decided for t in timings),
                    "max_seconds": cfg.max_seconds, "threads": plan.threads}
        self.student |= fig.as_dict() | {"session": replicas["model"][0].settings}
        self.student["latency_stats"] |= run_info
        for t in timings:
            if "reference" in t.timed.blocks_ms:
                self.teacher |= {"source": str(cfg.reference)} | t.timed.figures("reference").as_dict()
            if "baseline" in t.timed.blocks_ms:
                self.baseline_figures = {"source": str(cfg.baseline)} | t.timed.figures("baseline").as_dict()
        self.stages.append(StageRecord("latency", "passed", time.perf_counter() - start, said))
        self.notes.append(f"latency measured through {plan.run_art.runtime} on this host, batch {self.batch}, "
                          f"{plan.threads} threads (the profile's {plan.profile.threads}, capped to this host's "
                          f"cores as the build does): {said}")
        for c in found:
            f = c.figure
            self.decide(c.name, c.limit, f.value, f.source, f.interval, f.detail, c.at_least)
        self.student["audits"] = {}
        audits = (("outputs-match", lambda: outputs_match(first.outputs["model"], self.pool_outputs)),
                  ("no-input-caching", lambda: repeated_input_audit(self.session, self.pool, value)))
        for name, audit_fn in audits:
            t0 = time.perf_counter()
            audit = audit_fn()
            self.stages.append(StageRecord(name, "passed" if audit.passed else "failed",
                                           time.perf_counter() - t0, audit.reason))
            self.student["audits"][name] = audit.figures | {"passed": audit.passed}

    def memory(self) -> None:
        plan, cfg, start = self.plan, self.cfg, time.perf_counter()
        baseline = plan.baseline.memory_mb if plan.baseline is not None else None
        if plan.budgets.memory_mb is None and baseline is None:  # an A/B gate is about latency
            self.stages.append(StageRecord("memory", "skipped", 0.0, "no memory budget or baseline"))
            return
        if self.prediction is None:
            shape = plan.model.feeds_shape(self.batch) if plan.model.token_inputs else plan.shape
            with self.console.status(f"memory of {cfg.model.name} ({MEMORY_PROBES} fresh processes)"):
                found = memory_figures(plan.run_art, shape, plan.threads)
            value, interval, source = found.memory.value, found.memory.interval, "measured"
            said = ", ".join(f"{p:.4g}" for p in found.extra["memory_probes_mb"])
            self.stages.append(StageRecord("memory", "passed", time.perf_counter() - start,
                                           f"peak RSS the model adds, in fresh processes: {said} MB"))
        else:
            p = self.prediction[1]
            value, interval, source = p.value, p.interval, "predicted"
            self.stages.append(StageRecord("memory", "skipped", 0.0, f"predicted: {plan.blocker}"))
        self.student |= Figures(memory=Figure(value, source, tuple(interval))).as_dict()
        self.decide_all("memory_mb", plan.budgets.memory_mb, baseline, value, source, interval,
                        "peak RSS the model adds at run time")

    def report(self) -> Report:
        plan, cfg, t = self.plan, self.cfg, self.plan.target
        env = environment(create_backend(plan.run_art.runtime).versions())
        mode = baseline_mode(plan)
        if mode is not None:
            self.notes.insert(0, f"baseline: {mode}")
        if plan.baseline is not None and plan.baseline.host and plan.baseline.host != env["host"]:
            self.notes.insert(1, f"the baseline was measured on another host ({plan.baseline.host}); a regression "
                                 "across machines compares the machines too: give the old model (--baseline "
                                 "OLD.onnx) to time both here")
        report = Report(target={"name": t.name, "profile": plan.profile.name, "runtime": t.runtime,
                                "precision": t.precision, "batch_size": self.batch},
                        seed=cfg.seed, teacher=self.teacher, student=self.student, budgets=self.budgets,
                        stages=self.stages, artifacts={"model": str(cfg.model)}, environment=env,
                        extra={"kind": "check", "statistic": cfg.statistic, "inconclusive": cfg.inconclusive,
                               "require_measured": cfg.require_measured,
                               "baseline": str(cfg.baseline) if cfg.baseline else None,
                               "baseline_mode": ("a/b" if plan.baseline_model else "stored") if mode else None,
                               "baseline_model": self.baseline_figures, "threads": plan.threads},
                        notes=self.notes, roles=("reference", "model"))
        report.extra |= {"verdict": report.verdict, "exit_code": exit_code(report.verdict)}
        return report


def baseline_mode(plan: GatePlan) -> str | None:
    """Which comparison the regression budgets are: said in the report, the Markdown and the terminal."""
    if plan.baseline_model is not None:
        where = f"on {plan.cfg.remote}" if plan.cfg.remote else "in this process"
        return (f"A/B: {plan.cfg.baseline} and MODEL timed interleaved {where}; the regression is decided on "
                "the interval of their ratio")
    if plan.baseline is not None:
        return (f"stored figure from {plan.baseline.path} (measured by another process); this run's interval "
                f"is widened by {100 * STORED_SPREAD:g}% either side for the spread between processes")
    return None


def run_gate(cfg: CheckConfig, console: Console | None = None) -> Report:
    """Validate, measure (or predict), decide every budget, write the requested reports."""
    console = console or Console()
    run = GateRun(make_plan(cfg), console)
    if cfg.remote and run.plan.baseline_model is not None:
        run.ab_on_device()
    elif cfg.remote:
        run.on_device()
    else:
        run.accuracy()
        run.latency()
        run.memory()
    report = run.report()
    write_outputs(report, cfg.json_path, cfg.markdown_path, cfg.junit_path, cfg.html_path)
    if os.environ.get("GITHUB_STEP_SUMMARY"):  # GitHub Actions shows this file on the run's page
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a") as summary:
            summary.write(to_markdown(report) + "\n")
    print_summary(report, console)
    return report
