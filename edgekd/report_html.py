"""report.html: one self-contained page (verdict, budgets, trade-offs, training curves, environment).

Rendered from the report.json dict alone, plus the stage files under OUT that a build leaves
(search/search.json, distill/history.json), so `edgekd report DIR` redraws any run. Every section copes
with missing data by saying so: a gate report has no search, a failed build stops early. The plotting
library's JavaScript is inlined once, so the page needs no network when it is opened (a CI artifact viewer
or a laptop on a plane). The page records script errors and how many charts drew into a hidden element,
which is what a headless browser reads back in the tests.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

import edgekd
from edgekd.kernel_costs import kernel_costs
from edgekd.rundir import RunDir

MEASURED, PREDICTED = "#2b6cb0", "#b7791f"
RESULT_COLOURS = {"pass": "#2f855a", "fail": "#c53030", "inconclusive": "#b7791f", "open": "#718096"}
NOT_AVAILABLE = "not available"


# ----------------------------------------------------------------------------- small helpers
def fmt(v) -> str:
    """Numbers as in report.md (4 significant digits), so the page and the Markdown agree."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _e(v) -> str:
    return html.escape(fmt(v) if not isinstance(v, str) else v)


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _d(v) -> dict:
    """A field that should be an object; anything else reads as missing."""
    return v if isinstance(v, dict) else {}


def _read_json(path: Path | None):
    try:
        return json.loads(path.read_text()) if path is not None and path.is_file() else None
    except (OSError, ValueError):
        return None  # a half-written or foreign file: the section says "not available"


def budget_result(b: dict) -> str:
    """pass | fail | inconclusive | open (a budget that a stopped build never reached)."""
    if b.get("verdict"):
        return b["verdict"]
    if b.get("passed") is None:
        return "open"
    return "pass" if b["passed"] else "fail"


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell if cell.startswith("<td") else f"<td>{cell}</td>" for cell in row)
                   + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _missing(what: str) -> str:
    return f'<p class="na">{html.escape(what)}: {NOT_AVAILABLE}</p>'


class Charts:
    """Collects figures; each becomes an empty div plus its JSON, drawn by one script at the end."""

    def __init__(self):
        self.figures: list[tuple[str, str]] = []

    def add(self, fig, name: str) -> str:
        div = f"chart-{name}"
        # "</" inside the JSON (an arch string, a path) must not close the <script> that carries it
        self.figures.append((div, fig.to_json().replace("</", "<\\/")))
        return f'<div class="chart" id="{div}" data-chart="{name}"></div>'


# ----------------------------------------------------------------------------- sections
def _verdict(report: dict) -> str:
    budgets = report.get("budgets") or []
    results = [budget_result(b) for b in budgets]
    stages = report.get("stages") or []
    if report.get("passed"):
        verdict = "pass"
    elif results and "fail" not in results and "inconclusive" in results \
            and not any(s.get("status") == "failed" for s in stages):
        verdict = "inconclusive"
    else:
        verdict = "fail"
    t = _d(report.get("target"))
    failed = [s for s in stages if s.get("status") == "failed"]
    why = "".join(f"<p>stage <b>{_e(s.get('name'))}</b> failed: {_e(s.get('reason', ''))}</p>" for s in failed)
    counts = ", ".join(f"{results.count(r)} {r}" for r in ("pass", "fail", "inconclusive", "open") if r in results)
    return (f'<section class="verdict {verdict}" id="verdict" data-verdict="{verdict}">'
            f"<h1>{verdict.upper()}</h1><p>target <b>{_e(t.get('name', '?'))}</b> "
            f"({_e(t.get('runtime', '?'))}, {_e(t.get('precision', '?'))}, profile {_e(t.get('profile', '?'))})"
            f" &middot; budgets: {counts or 'none checked'}</p>{why}</section>")


def _budgets(report: dict, charts: Charts) -> str:
    budgets = [b for b in report.get("budgets") or [] if isinstance(b, dict) and b.get("name")]
    if not budgets:
        return "<h2>Budgets</h2>" + _missing("budgets")
    rows = []
    for b in budgets:
        iv = b.get("interval")
        src = b.get("source", "")
        rows.append([f"<td><b>{_e(b['name'])}</b></td>",
                     f'<td class="value" data-budget="{_e(b["name"])}">{_e(b.get("value"))}</td>',
                     f'<td class="limit" data-budget="{_e(b["name"])}">{_e(b.get("limit"))}</td>',
                     f'<td class="src-{_e(src)}">{_e(src)}</td>',
                     f"{_e(iv[0])} .. {_e(iv[1])}" if iv else "",
                     f'<td class="res {budget_result(b)}">{budget_result(b)}</td>', _e(b.get("detail", ""))])
    table = _table(["budget", "value", "limit", "source", "interval", "result", "detail"], rows, "budgets")

    # One row per budget: units differ, so each has its own axis; the limit is a dashed line.
    fig = make_subplots(rows=len(budgets), cols=1, vertical_spacing=0.5 / len(budgets) if len(budgets) > 1 else 0,
                        subplot_titles=[f"{b['name']} ({b.get('source', '?')}): {budget_result(b)}, limit "
                                        f"{fmt(b.get('limit'))}" for b in budgets])
    for i, b in enumerate(budgets, start=1):
        value, limit = _num(b.get("value")), _num(b.get("limit"))
        iv = b.get("interval") if isinstance(b.get("interval"), list) and len(b["interval"]) == 2 else None
        predicted = b.get("source") == "predicted"
        error = None
        if iv and value is not None:
            error = {"type": "data", "symmetric": False, "array": [max(0.0, iv[1] - value)],
                     "arrayminus": [max(0.0, value - iv[0])], "color": "#1a202c", "thickness": 2, "width": 8}
        text = NOT_AVAILABLE if value is None else fmt(value) + (" predicted" if predicted else "")
        fig.add_trace(go.Bar(
            x=[value or 0.0], y=[b["name"]], orientation="h", error_x=error, text=[text], textposition="outside",
            cliponaxis=False, showlegend=False, name=b["name"],
            marker={"color": RESULT_COLOURS[budget_result(b)], "line": {"color": "#1a202c", "width": 1},
                    "pattern": {"shape": "/" if predicted else "", "fgcolor": "white", "size": 6}},
            hovertemplate=f"{b['name']}: %{{x:.4g}} ({b.get('source', '?')})<extra></extra>"), row=i, col=1)
        top = max(v for v in (value, limit, iv[1] if iv else None, 1e-9) if v is not None)
        if limit is not None:
            fig.add_vline(x=limit, line={"dash": "dash", "color": "#1a202c", "width": 2}, row=i, col=1)
        low = min(0.0, value or 0.0, iv[0] if iv else 0.0)
        span = top - low
        # room for the value's label on whichever side of zero the bar grows
        fig.update_xaxes(range=[low - 0.2 * span if low < 0 else 0.0, top + 0.25 * span], row=i, col=1)
        fig.update_yaxes(showticklabels=False, row=i, col=1)
    fig.update_layout(height=95 + 120 * len(budgets), margin={"l": 20, "r": 20, "t": 50, "b": 20},
                      template="plotly_white", bargap=0.35)
    legend = ('<p class="legend"><span class="swatch solid"></span> measured &nbsp; '
              '<span class="swatch hatched"></span> predicted (cost model; the error bar is its band)'
              " &nbsp; dashed line: the limit</p>")
    return f"<h2>Budgets</h2>{table}{legend}{charts.add(fig, 'budgets')}"


def _side(d: dict, key: str):
    return _num(d.get(key)) if isinstance(d, dict) else None


def _models(report: dict, charts: Charts, out: Path | None) -> str:
    t, s = _d(report.get("teacher")), _d(report.get("student"))
    # A gate report (edgekd check) has no search stage: its two sides are the reference and the model.
    build = any(st.get("name") == "search" for st in report.get("stages") or [])
    roles = ("teacher", "student") if build else ("reference", "model")
    title = f"<h2>{roles[0].capitalize()} vs {roles[1]}</h2>"
    if not any(_side(x, k) is not None for x in (t, s) for k in ("accuracy", "latency_ms")):
        return title + _missing(f"{roles[0]} and {roles[1]} figures")

    def latency(d):
        v = _side(d, "latency_ms")
        if v is None:
            return NOT_AVAILABLE
        iv = d.get("latency_interval")
        band = f" [{fmt(iv[0])} .. {fmt(iv[1])}]" if iv else ""
        return f"{fmt(v)}{band} <small>{_e(d.get('latency_source', ''))}</small>"

    def size_mb(d, rel):
        path = out / rel if out is not None and rel else None
        return fmt(path.stat().st_size / 2 ** 20) if path is not None and path.is_file() else NOT_AVAILABLE

    speed = NOT_AVAILABLE
    paired = _d(s.get("speedup"))
    if isinstance(paired.get("value"), (int, float)):  # timed as a pair: the median of the rounds' ratios
        speed = f"{paired['value']:.2f}x <small>({_e(paired.get('source', ''))})</small>"
    elif _side(t, "latency_ms") and _side(s, "latency_ms"):
        sources = {t.get("latency_source"), s.get("latency_source")}
        speed = f"{t['latency_ms'] / s['latency_ms']:.2f}x <small>({'/'.join(sorted(x for x in sources if x))})</small>"
    teacher_file = _d(_d(s.get("compile")).get("teacher")).get("path")
    rows = []
    for label, key in (("accuracy", "accuracy"), ("memory (MB)", "memory_mb"), ("parameters", "params")):
        rows.append([label] + [f'<td data-side="{who}" data-key="{key}">{_e(d.get(key)) if key in d else NOT_AVAILABLE}'
                               "</td>" for who, d in (("teacher", t), ("student", s))])
    rows[1:1] = [["latency p50 (ms) [interval]", latency(t), latency(s)]] + [
        [f"latency {p[:3]} (ms)"] + [_e(_d(d.get("latency_stats")).get(p, NOT_AVAILABLE)) for d in (t, s)]
        for p in ("p90_ms", "p99_ms")]
    rows.append(["file size (MB)", size_mb(t, f"compile/{teacher_file}" if teacher_file else None),
                 size_mb(s, _d(report.get("artifacts")).get("compiled"))])
    rows.append([f"speed-up ({roles[0]} / {roles[1]} latency)", f'<td colspan="2" id="speedup">{speed}</td>'])
    table = _table(["", *roles], rows, "models")

    fig = go.Figure()
    for who, d, colour in ((roles[0], t, "#4a5568"), (roles[1], s, MEASURED)):
        stats = _d(d.get("latency_stats"))
        names = [k for k in ("p50_ms", "p90_ms", "p99_ms") if _num(stats.get(k)) is not None]
        if not names:
            continue
        iv = d.get("latency_interval")
        err = None
        if iv:  # the interval belongs to the gated statistic (p50) only
            err = {"type": "data", "symmetric": False, "array": [iv[1] - stats["p50_ms"]] + [0] * (len(names) - 1),
                   "arrayminus": [stats["p50_ms"] - iv[0]] + [0] * (len(names) - 1)}
        fig.add_trace(go.Bar(x=[n.removesuffix("_ms") for n in names], y=[stats[n] for n in names], name=who,
                             marker_color=colour, error_y=err, text=[fmt(stats[n]) for n in names],
                             textposition="outside"))
    if not fig.data:
        return title + table + _missing("latency distribution")
    fig.update_layout(barmode="group", height=320, template="plotly_white", yaxis_title="latency (ms)",
                      title="latency distribution (measured percentiles)", margin={"t": 50, "b": 30})
    return title + table + charts.add(fig, "latency")


def _search(report: dict, charts: Charts, out: Path | None) -> str:
    data = _read_json(RunDir(out).search_json if out is not None else None)
    if not isinstance(data, dict) or not data.get("candidates"):
        return "<h2>Search</h2>" + _missing("search candidates (no search/search.json in this run)")
    cands = [c for c in data["candidates"] if _num(c.get("latency_ms")) is not None and _num(c.get("score"))
             is not None]
    if not cands:
        return "<h2>Search</h2>" + _missing("scored candidates")
    by_index = {c.get("index", i): c for i, c in enumerate(data["candidates"])}

    def hover(c):
        arch = ", ".join(f"{k}={v}" for k, v in _d(c.get("arch")).items())
        return (f"#{c.get('index')} {c.get('space', '')}<br>{html.escape(arch)}<br>params {c.get('params')}"
                f"<br>{fmt(c['latency_ms'])} ms (predicted), score {fmt(c['score'])}"
                + ("" if c.get("fits") else f"<br>does not fit: {html.escape(str(c.get('reason', '')))}"))

    fig = go.Figure()
    for fits, name, colour in ((True, "fits the budgets", MEASURED), (False, "does not fit", "#a0aec0")):
        group = [c for c in cands if bool(c.get("fits")) == fits]
        if group:
            fig.add_trace(go.Scatter(x=[c["latency_ms"] for c in group], y=[c["score"] for c in group], mode="markers",
                                     name=name, marker={"color": colour, "size": 8, "opacity": 0.75},
                                     text=[hover(c) for c in group], hovertemplate="%{text}<extra></extra>"))
    front = sorted((by_index[i] for i in data.get("pareto_front") or [] if i in by_index
                    and _num(by_index[i].get("latency_ms")) is not None), key=lambda c: c["latency_ms"])
    if front:
        fig.add_trace(go.Scatter(x=[c["latency_ms"] for c in front], y=[c["score"] for c in front],
                                 mode="lines+markers", name="Pareto front", line={"color": "#2f855a", "width": 2},
                                 marker={"size": 9}, text=[hover(c) for c in front],
                                 hovertemplate="%{text}<extra></extra>"))
    pick = by_index.get(data.get("pick_index"))
    if pick is not None and _num(pick.get("latency_ms")) is not None:
        fig.add_trace(go.Scatter(x=[pick["latency_ms"]], y=[pick["score"]], mode="markers+text", name="pick",
                                 marker={"symbol": "star", "size": 20, "color": "#d69e2e",
                                         "line": {"color": "#1a202c", "width": 1}},
                                 text=["pick"], textposition="top center", hovertext=[hover(pick)],
                                 hovertemplate="%{hovertext}<extra></extra>"))
    limit = _num(_d(data.get("limits")).get("latency_ms"))
    if limit is not None:  # a trace, not a shape: shapes take log10 coordinates on a log axis
        ys = [c["score"] for c in cands]
        fig.add_trace(go.Scatter(x=[limit, limit], y=[min(ys), max(ys)], mode="lines",
                                 name=f"latency limit {fmt(limit)}", hoverinfo="name",
                                 line={"dash": "dash", "color": "#c53030", "width": 2}))
    fig.update_layout(height=420, template="plotly_white", title=f"search: {data.get('score', 'score')} vs predicted "
                      "latency (hover a point for its arch)", xaxis_title="predicted latency (ms)",
                      yaxis_title=f"score ({data.get('score', '?')})", margin={"t": 50})
    # Candidates often sit far below the limit and flops-like scores span decades: log axes keep them apart.
    xs = [c["latency_ms"] for c in cands] + ([limit] if limit else [])
    if min(xs) > 0 and max(xs) > 10 * min(xs):
        fig.update_xaxes(type="log", dtick="D2")
    ys = [c["score"] for c in cands]
    if min(ys) > 0 and max(ys) > 10 * min(ys):
        fig.update_yaxes(type="log", dtick="D2")
    summary = (f"<p>{len(data['candidates'])} candidates priced, {sum(bool(c.get('fits')) for c in cands)} fit; "
               f"pick: <code>{_e(json.dumps(data.get('pick')))}</code></p>")
    return f"<h2>Search</h2>{summary}{charts.add(fig, 'search')}{_considered(report)}"


def _considered(report: dict) -> str:
    """Why this student: the candidates the pick was chosen among (report.json `search`), with their scores."""
    search = _d(report.get("search"))
    rows = [c for c in search.get("considered") or [] if isinstance(c, dict)]
    if not rows:
        return ""
    members = sorted({str(k) for c in rows for k in _d(c.get("scores"))})

    def speedup(c):
        iv = c.get("measured_speedup_interval") or []
        if _num(c.get("measured_speedup")) is None:
            return "not timed"
        return f"{fmt(c['measured_speedup'])}x" + (f" [{fmt(iv[0])} .. {fmt(iv[1])}]" if len(iv) == 2 else "")

    body = [[("<b>pick</b> " if c.get("picked") else "") + f"#{c.get('index')}", _e(str(c.get("space", ""))),
             f"<code>{_e(json.dumps(c.get('arch')))}</code>", _e(c.get("score")),
             *(_e(_d(c.get("scores")).get(m)) for m in members), _e(c.get("flops")), _e(c.get("params")),
             _e(c.get("latency_ms")), _e(speedup(c))] for c in rows]
    header = ["candidate", "space", "arch", _e(f"score ({search.get('score', '?')})"), *map(_e, members), "FLOPs",
              "params", "latency ms (predicted)", "speed-up (measured)"]
    others = ", ".join(str(n) for n in search.get("scores_available") or [] if n != search.get("score"))
    return (f"<h3>Why this student</h3><p>Ranked by <code>{_e(str(search.get('score', '?')))}</code>, best "
            "first; the first whose measured speed-up clears the budget is the pick"
            + (f" (other scores: <code>--score</code> {_e(others)})" if others else "") + ".</p>"
            + _table(header, body))


def _history(report: dict, charts: Charts, out: Path | None) -> str:
    hist = _read_json(RunDir(out).history_json if out is not None else None)
    if not isinstance(hist, list) or not hist or not all(isinstance(h, dict) for h in hist):
        return "<h2>Distillation</h2>" + _missing("training history (no distill/history.json in this run)")
    keys = sorted({k for h in hist for k, v in h.items() if _num(v) is not None})
    groups = {"loss terms": [k for k in keys if k == "loss" or k.startswith("term_")],
              "held-out accuracy": [k for k in keys if "acc" in k],
              "KL decomposition": [k for k in keys if k == "kl" or k.startswith("kl_")]}
    shown = {name: ks for name, ks in groups.items() if ks}
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(hist)]
    fig = make_subplots(rows=1, cols=len(shown), subplot_titles=list(shown))
    labels = {"kl": "KL (sum)", "kl_bcd": "binary", "kl_scd": "strong", "kl_wcd": "weak"}
    for col, (name, ks) in enumerate(shown.items(), start=1):
        for k in ks:
            fig.add_trace(go.Scatter(x=epochs, y=[h.get(k) for h in hist], mode="lines+markers", marker={"size": 4},
                                     name=labels.get(k, k.removeprefix("term_")), legendgroup=name), row=1, col=col)
        fig.update_xaxes(title_text="epoch", row=1, col=col)
        if name == "loss terms":
            fig.update_yaxes(type="log", dtick=1, row=1, col=col)
    fig.update_layout(height=360, template="plotly_white", margin={"t": 50})
    notes = []
    if not groups["held-out accuracy"]:
        acc = _side(_d(report.get("student")), "torch_accuracy")
        notes.append("held-out accuracy per epoch: not recorded by the trainer"
                     + (f"; after the last epoch: {fmt(acc)} (torch)" if acc is not None else ""))
    if not groups["KL decomposition"]:
        notes.append(f"KL decomposition: {NOT_AVAILABLE}")
    note = "".join(f'<p class="na">{html.escape(n)}</p>' for n in notes)
    method = _d(report.get("student")).get("method") or _d(report.get("distillation")).get("method")
    head = f"<p>method <b>{_e(method or '?')}</b>, {len(hist)} epochs</p>"
    return f"<h2>Distillation</h2>{head}{charts.add(fig, 'history')}{note}"


def _kernels(report: dict, charts: Charts, out: Path | None) -> str:
    title = "<h2>Where the student's latency goes (predicted)</h2>"
    onnx_rel = _d(report.get("artifacts")).get("onnx")
    path = out / onnx_rel if out is not None and onnx_rel else None
    t = _d(report.get("target"))
    if path is None or not path.is_file() or not t.get("profile"):
        return title + _missing("per-kernel cost (no exported student ONNX in this run)")
    costs = kernel_costs(path, t["profile"], t.get("runtime"), t.get("precision", "fp32"), t.get("batch_size") or 1)
    rows = costs["kernels"]
    if not rows:
        return title + _missing("kernels")
    top = sorted(rows, key=lambda r: -r["us"])[:15][::-1]  # largest at the top of a horizontal chart
    fig = go.Figure(go.Bar(
        x=[r["us"] for r in top], y=[f"#{r['index']} {r['kind']}" for r in top], orientation="h",
        text=[f"{r['us']:.3g} us" for r in top], textposition="outside", cliponaxis=False,
        marker={"color": PREDICTED, "pattern": {"shape": "/", "fgcolor": "white", "size": 6}},
        hovertext=[f"{r['kind']} {r['shape']}<br>{r['flops']:.3g} flops" for r in top],
        hovertemplate="%{hovertext}<br>%{x:.3g} us predicted<extra></extra>"))
    fig.update_layout(height=120 + 22 * len(top), template="plotly_white", xaxis_title="predicted time (us)",
                      title=f"slowest {len(top)} of {len(rows)} kernels ({costs['source']} cost model, "
                            f"{costs['profile']}, {costs['precision']})", margin={"t": 50, "l": 120})
    kinds: dict[str, float] = {}
    for r in rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0.0) + r["us"]
    total = costs["total_us"] or 1.0
    by_kind = sorted(kinds.items(), key=lambda x: -x[1])
    table = _table(["kernel kind", "predicted us", "share"],
                   [[_e(k), f"{v:.3g}", f"{100 * v / total:.0f}%"] for k, v in by_kind])
    return f"{title}<p class=\"na\">{_e(costs['detail'])}</p>{charts.add(fig, 'kernels')}{table}"


def _precision(report: dict) -> str:
    guard = _d(_d(report.get("student")).get("compile")).get("precision_guard")
    if not isinstance(guard, dict):
        return "<h2>Precision guard</h2>" + _missing("precision guard decision")
    head = (f"<p>requested <b>{_e(guard.get('requested', '?'))}</b>, shipped <b>{_e(guard.get('shipped', '?'))}</b>"
            f": {_e(guard.get('reason', ''))}</p>")
    rows = []
    for name, c in _d(guard.get("candidates")).items():
        if not isinstance(c, dict):
            continue
        parity = _d(c.get("parity"))
        iv = c.get("latency_interval")
        rows.append([f"<b>{_e(name)}</b>" + (" (shipped)" if name == guard.get("shipped") else ""),
                     _e(c.get("accuracy")), _e(c.get("accuracy_drop")),
                     _e(c.get("latency_ms")) + (f" [{fmt(iv[0])} .. {fmt(iv[1])}]" if iv else ""),
                     _e(c.get("latency_source", "")), _e(parity.get("top1_agreement")), _e(parity.get("max_abs_diff"))])
    table = _table(["precision", "accuracy", "drop (points)", "latency (ms)", "source", "top-1 agreement",
                    "max |diff|"], rows) if rows else _missing("candidates' figures")
    return f"<h2>Precision guard</h2>{head}{table}"


def _stages(report: dict) -> str:
    stages = report.get("stages") or []
    if not stages:
        return "<h2>Stages</h2>" + _missing("stages")
    rows = [[_e(s.get("name")), f'<td class="res {_e(s.get("status"))}">{_e(s.get("status"))}</td>',
             _e(round(s["seconds"], 1) if _num(s.get("seconds")) is not None else None), _e(s.get("reason", ""))]
            for s in stages]
    return "<h2>Stages</h2>" + _table(["stage", "status", "seconds", "reason"], rows)


def _environment(report: dict) -> str:
    env = _d(report.get("environment"))
    rows = [[_e(k), _e(v) if v != "" else "not installed"] for k, v in env.items()]
    extra = []
    for key in ("preprocessing", "data"):
        if isinstance(report.get(key), dict):
            extra.append([_e(key), f"<code>{_e(json.dumps(report[key]))}</code>"])
    extra.append(["seed", _e(report.get("seed"))])
    body = _table(["component", "version"], rows + extra, "env") if rows else _missing("environment")
    notes = "".join(f"<li>{_e(n)}</li>" for n in report.get("notes") or [])
    return f"<h2>Environment</h2>{body}" + (f"<ul>{notes}</ul>" if notes else "")


# ----------------------------------------------------------------------------- page
CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a202c;background:#f7fafc;margin:0}
main{max-width:1100px;margin:0 auto;padding:16px 20px 40px}
section.card{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:4px 18px 14px;margin:14px 0}
.verdict{border-radius:8px;padding:10px 18px;color:#fff}.verdict h1{margin:4px 0}
.verdict.pass{background:#2f855a}.verdict.fail{background:#c53030}.verdict.inconclusive{background:#b7791f}
table{border-collapse:collapse;margin:8px 0;font-size:14px}
th,td{border-bottom:1px solid #e2e8f0;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#edf2f7}.res.pass,.res.passed{color:#2f855a;font-weight:600}
.res.fail,.res.failed{color:#c53030;font-weight:700}.res.inconclusive,.res.skipped,.res.open{color:#b7791f}
.src-predicted{font-style:italic;color:#b7791f}.na{color:#718096;font-style:italic}
.chart{width:100%;min-height:200px}code{font-size:12px;word-break:break-all}
.swatch{display:inline-block;width:14px;height:11px;border:1px solid #1a202c;vertical-align:middle}
.swatch.solid{background:#2f855a}.legend{font-size:13px;color:#4a5568}
.swatch.hatched{background:repeating-linear-gradient(45deg,#2f855a 0 3px,#fff 3px 5px)}
footer{color:#718096;font-size:12px}#edgekd-status{display:none}
"""

# Before anything else runs: collect script errors (also failed resource loads, in the capture phase)
# and console.error calls, so a headless browser can read them back from the DOM.
ERROR_HOOK = """
window.edgekdErrors=[];
window.addEventListener('error',function(e){
  edgekdErrors.push('error: '+(e.message||(e.target&&(e.target.src||e.target.href))||'?'));},true);
window.addEventListener('unhandledrejection',function(e){edgekdErrors.push('rejection: '+e.reason);});
(function(){var ce=console.error;console.error=function(){
  edgekdErrors.push('console: '+Array.prototype.join.call(arguments,' '));return ce.apply(console,arguments);};})();
"""

DRAW = """
(function(){
  var st=document.getElementById('edgekd-status'), els=document.querySelectorAll('script.figure'), jobs=[];
  function done(){st.setAttribute('data-errors',String(edgekdErrors.length));st.textContent=edgekdErrors.join('\\n');
    st.setAttribute('data-done','1');}
  if(typeof Plotly==='undefined'){edgekdErrors.push('plotly did not load');done();return;}
  els.forEach(function(el){
    var fig=JSON.parse(el.textContent), div=document.getElementById(el.getAttribute('data-div'));
    jobs.push(Plotly.newPlot(div,fig.data,fig.layout,{responsive:true,displaylogo:false}).then(function(){
      st.setAttribute('data-drawn',String(Number(st.getAttribute('data-drawn'))+1));}));
  });
  Promise.all(jobs).catch(function(e){edgekdErrors.push('plot: '+e);}).then(done);
})();
"""


def render_html(report: dict, out: Path | None = None) -> str:
    """The page for one report dict; `out` is the run folder whose stage files add the search and history."""
    charts = Charts()
    sections = [("budgets", lambda: _budgets(report, charts)), ("models", lambda: _models(report, charts, out)),
                ("search", lambda: _search(report, charts, out)), ("distill", lambda: _history(report, charts, out)),
                ("kernels", lambda: _kernels(report, charts, out)), ("precision", lambda: _precision(report)),
                ("stages", lambda: _stages(report)), ("environment", lambda: _environment(report))]
    body = [_verdict(report)]
    for name, render in sections:
        try:
            content = render()
        except Exception as e:  # a report this page does not understand must not cost the build its report
            content = f'<h2>{name}</h2><p class="na render-error">could not be drawn: {html.escape(repr(e))}</p>'
        body.append(f'<section class="card" id="{name}">{content}</section>')
    figures = "".join(f'<script type="application/json" class="figure" data-div="{div}">{js}</script>'
                      for div, js in charts.figures)
    t = _d(report.get("target"))

    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>edgekd report: {_e(t.get('name', '?'))}</title><style>{CSS}</style>"
            f"<script>{ERROR_HOOK}</script><script>{get_plotlyjs()}</script></head><body><main>"
            + "".join(body)
            + f'<footer>edgekd {_e(edgekd.__version__)} &middot; schema {_e(report.get("schema", "?"))} &middot; '
            f'figures in italics or hatched are predicted by the cost model, not measured</footer>'
            f'<div id="edgekd-status" data-charts="{len(charts.figures)}" data-drawn="0" data-done="0"></div>'
            f"</main>{figures}<script>{DRAW}</script></body></html>")


def write_html(report: dict, path: Path, out: Path | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(render_html(report, out), encoding="utf-8")
    os.replace(tmp, path)  # a reader never sees half a page
    return path
