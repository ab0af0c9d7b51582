"""Feature drift: population stability index (PSI) of each feature, scored rows vs training.

The training distribution is kept with the model as decile edges and the share of training rows
in each bin (plus the share missing). PSI = sum over bins of (a - e) * ln(a / e); above 0.2 the
population has shifted enough that the model's scores deserve a look.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

PSI_WARNING = 0.2
_EPS = 1e-4


def reference_bins(frame: pd.DataFrame, features: list[str]) -> dict[str, dict[str, Any]]:
    """Decile edges and shares (numeric) or category shares, per feature, of training rows."""
    reference: dict[str, dict[str, Any]] = {}
    for name in features:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(
            column
        ):
            shares = (
                column.astype("str").where(column.notna(), "<missing>").value_counts(normalize=True)
            )
            reference[name] = {"kind": "category", "shares": shares.to_dict()}
            continue
        values = column.to_numpy(dtype=float)
        present = values[~np.isnan(values)]
        edges = (
            np.unique(np.quantile(present, np.linspace(0, 1, 11)))
            if len(present)
            else np.array([0.0])
        )
        reference[name] = {
            "kind": "number",
            "edges": edges.tolist(),
            "shares": _numeric_shares(values, edges).tolist(),
        }
    return reference


def _numeric_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares of: missing, below the first inner edge, each inner bin, above the last edge."""
    missing = np.isnan(values)
    bins = (
        np.searchsorted(edges[1:-1], values[~missing], side="right")
        if len(edges) > 2
        else np.zeros(int((~missing).sum()), dtype=int)
    )
    counts = np.r_[missing.sum(), np.bincount(bins, minlength=max(len(edges) - 1, 1))]
    total = max(len(values), 1)
    shares: np.ndarray = counts / total
    return shares


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.maximum(np.asarray(expected, dtype=float), _EPS)
    a = np.maximum(np.asarray(actual, dtype=float), _EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def drift_report(frame: pd.DataFrame, reference: dict[str, dict[str, Any]]) -> dict[str, float]:
    """PSI of each feature of ``frame`` against the training reference, largest first."""
    result = {}
    for name, ref in reference.items():
        if name not in frame:
            continue
        column = frame[name]
        if ref["kind"] == "category":
            shares = (
                column.astype("str").where(column.notna(), "<missing>").value_counts(normalize=True)
            )
            levels = sorted(set(ref["shares"]) | set(shares.index))
            result[name] = psi(
                np.array([ref["shares"].get(k, 0.0) for k in levels]),
                np.array([shares.get(k, 0.0) for k in levels]),
            )
        else:
            actual = _numeric_shares(column.to_numpy(dtype=float), np.asarray(ref["edges"]))
            result[name] = psi(np.asarray(ref["shares"]), actual)
    return dict(sorted(result.items(), key=lambda kv: -kv[1]))
