"""Tree ensembles fitted with scikit-learn, stored as plain arrays in JSON and evaluated with numpy.

A calibration file is data a user may download from a colleague: it must load without pickle (which
runs code), and prediction must not need scikit-learn's exact version. So the fitted trees are written
out as their node arrays (feature, threshold, left, right, value) and walked here.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import RandomForestRegressor


def fit_forest(x: np.ndarray, y: np.ndarray, seed: int = 0, trees: int = 60, max_leaf_nodes: int = 48):
    """A random forest on (x, y); small leaves-per-tree keep the stored file small."""
    model = RandomForestRegressor(n_estimators=trees, max_leaf_nodes=max_leaf_nodes, min_samples_leaf=2,
                                  max_features=0.7, random_state=seed)
    return model.fit(x, y)


def export_forest(model) -> dict:
    """The fitted sklearn forest's trees as lists (leaf value rounded to 6 significant digits)."""
    trees = []
    for est in model.estimators_:
        t = est.tree_
        trees.append({"feature": t.feature.tolist(), "threshold": [float(f"{v:.7g}") for v in t.threshold],
                      "left": t.children_left.tolist(), "right": t.children_right.tolist(),
                      "value": [float(f"{v:.6g}") for v in t.value[:, 0, 0]]})
    return {"type": "mean-of-trees", "trees": trees}


def predict_forest(forest: dict, x: np.ndarray) -> np.ndarray:
    """Mean over the stored trees of each row's leaf value."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    rows = np.arange(len(x))
    total = np.zeros(len(x))
    for t in forest["trees"]:
        feature, threshold = np.asarray(t["feature"]), np.asarray(t["threshold"])
        left, right, value = np.asarray(t["left"]), np.asarray(t["right"]), np.asarray(t["value"])
        node = np.zeros(len(x), dtype=np.int64)
        while True:
            inner = left[node] >= 0
            if not inner.any():
                break
            f = np.where(inner, feature[node], 0)
            go_left = x[rows, f] <= threshold[node]
            node = np.where(inner, np.where(go_left, left[node], right[node]), node)
        total += value[node]
    return total / len(forest["trees"])
