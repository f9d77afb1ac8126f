"""Fitting a calibration's predictors from timings (edgekd/cost/calibrate.py takes them): a forest per kernel
kind, per-kind linear predictors over network sums, and the memory model. Every fit reports held-out errors."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import KFold

from edgekd.cost.calibration import (
    NET_FEATURES,
    NETWORK_KINDS,
    KernelModel,
    MemoryModel,
    Roofline,
    features,
    kernel_terms,
    roofline_us,
)
from edgekd.cost.forest import export_forest, fit_forest, predict_forest
from edgekd.cost.ops import Kernel


def _kernel_matrix(kernels: list[Kernel], r: Roofline) -> tuple[np.ndarray, np.ndarray]:
    base = np.array([roofline_us(k, r.peak_gops, r.bandwidth_gbs, r.overhead_us) for k in kernels])
    return np.array([features(k, b) for k, b in zip(kernels, base, strict=True)]), base


def fit_kernel_models(samples: dict[str, list[tuple[Kernel, float]]], r: Roofline,
                      seed: int) -> dict[str, KernelModel]:
    """Per kind: a forest on log(stand-alone time / roofline time), with its 5-fold error."""
    models = {}
    for kind, rows in samples.items():
        if len(rows) < 8:
            continue
        x, base = _kernel_matrix([k for k, _ in rows], r)
        y = np.log(np.array([t for _, t in rows]) / base)
        errors = []
        for train, test in KFold(5, shuffle=True, random_state=seed).split(x):
            forest = export_forest(fit_forest(x[train], y[train], seed))
            errors.extend(np.abs(np.exp(predict_forest(forest, x[test]) - y[test]) - 1))
        models[kind] = KernelModel(samples=len(rows), cv_median_abs_error=float(np.median(errors)),
                                   forest=export_forest(fit_forest(x, y, seed)))
    return models


def worst(models: dict[str, KernelModel], rows: list[tuple[Kernel, float]], r: Roofline, share: float):
    """The `share` of timed kernels the current models predict worst (relative error)."""
    errs = []
    for k, t in rows:
        model = models.get(k.kind)
        if model is None:
            continue
        x, base = _kernel_matrix([k], r)
        errs.append((abs(base[0] * np.exp(predict_forest(model.forest, x)[0]) / t - 1), k))
    errs.sort(key=lambda e: -e[0])
    return [k for _, k in errs[: max(1, int(len(errs) * share))]]


def network_features(kernels: list[Kernel], models: dict[str, KernelModel], r: Roofline, call_us: float,
                     block: int) -> dict[str, dict[str, float]]:
    """Per kind, the sums over a network's kernels of what the kind's linear predictor weighs."""
    terms = kernel_terms(kernels, models, r, call_us, block)
    sums = {kind: dict.fromkeys(NET_FEATURES, 0.0) for kind in NETWORK_KINDS}
    for k, row in zip(kernels, terms, strict=True):
        s = sums[k.kind if k.kind in sums else "other"]
        for f, v in zip(NET_FEATURES, row, strict=True):
            s[f] += float(v)
    return sums


def _flat(sums: dict[str, dict[str, float]], columns: list[tuple[str, str]]) -> list[float]:
    return [sums[kind][f] for kind, f in columns]


def fit_network(rows: list[tuple[dict, float]], seed: int) -> tuple[dict, float, np.ndarray]:
    """Non-negative per-kind linear predictors fitted on network sums; returns (coef by kind and feature,
    intercept, held-out measured/predicted ratios from 10-fold cross-validation)."""
    columns = [(kind, f) for kind in NETWORK_KINDS for f in NET_FEATURES
               if sum(s[kind][f] > 0 for s, _ in rows) >= max(3, len(rows) // 10)]
    x = np.array([_flat(s, columns) for s, _ in rows])
    y = np.array([t for _, t in rows])
    scale = x.max(axis=0)

    def fit(idx):
        # relative error is what the band and the +-10% target are about: weight by 1/y^2
        return LinearRegression(positive=True).fit(x[idx] / scale, y[idx], sample_weight=1 / y[idx] ** 2)

    ratios = np.empty(len(y))
    for train, test in KFold(min(10, len(y)), shuffle=True, random_state=seed).split(x):
        ratios[test] = y[test] / np.maximum(fit(train).predict(x[test] / scale), 1e-9)
    model = fit(np.arange(len(y)))
    coef: dict[str, dict[str, float]] = {}
    for (kind, f), c, s in zip(columns, model.coef_, scale, strict=True):
        coef.setdefault(kind, {})[f] = float(c / s)
    return coef, float(model.intercept_), ratios


def fit_memory(rows: list[tuple[float, float, float]]) -> MemoryModel:
    """model MB ~ a * weights MB + b * activations MB + c, non-negative, with 5-fold held-out ratios."""
    data = np.array(rows)
    x, y = data[:, :2], data[:, 2]
    ratios = np.empty(len(y))
    for train, test in KFold(min(5, len(y)), shuffle=True, random_state=0).split(x):
        m = LinearRegression(positive=True).fit(x[train], y[train])
        ratios[test] = y[test] / np.maximum(m.predict(x[test]), 1e-6)
    m = LinearRegression(positive=True).fit(x, y)
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return MemoryModel(weights=float(m.coef_[0]), activations=float(m.coef_[1]), constant_mb=float(m.intercept_),
                       ratio_interval=(float(lo), float(hi)), networks=len(y))
