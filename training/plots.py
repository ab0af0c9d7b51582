"""Plots logged with every run: gains, lift, calibration, importance, MQL vs model."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve


def gains_chart(labels: np.ndarray, scores: dict[str, np.ndarray]) -> Figure:
    """Cumulative share of later wins found against the share of accounts worked."""
    fig, (gains, lift) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, score in scores.items():
        order = np.argsort(-score, kind="stable")
        found = np.cumsum(labels[order]) / max(labels.sum(), 1)
        share = np.arange(1, len(order) + 1) / len(order)
        gains.plot(share, found, label=name)
        deciles = np.array_split(labels[order], 10)
        rate = labels.mean() or 1.0
        lift.plot(range(1, 11), [d.mean() / rate for d in deciles], marker="o", label=name)
    gains.plot([0, 1], [0, 1], color="grey", linestyle=":", label="random")
    gains.axvline(0.1, color="grey", linewidth=0.5)
    gains.set(
        xlabel="share of accounts worked (by score)",
        ylabel="share of later wins found",
        title="Cumulative gains (test)",
    )
    lift.axhline(1, color="grey", linestyle=":")
    lift.set(xlabel="score decile (1 = top)", ylabel="win rate / base rate", title="Lift by decile")
    gains.legend()
    fig.tight_layout()
    return fig


def calibration_plot(labels: np.ndarray, probabilities: dict[str, np.ndarray]) -> Figure:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, prob in probabilities.items():
        observed, predicted = calibration_curve(labels, prob, n_bins=10, strategy="quantile")
        ax.plot(predicted, observed, marker="o", label=name)
    top = max(float(max(p.max() for p in probabilities.values())), 0.05)
    ax.plot([0, top], [0, top], color="grey", linestyle=":")
    ax.set(
        xlabel="predicted probability",
        ylabel="observed win rate",
        title="Calibration (test, quantile bins)",
    )
    ax.legend()
    fig.tight_layout()
    return fig


def importance_plot(gain: pd.Series, shap: pd.Series, top: int = 20) -> Figure:
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 6))
    gain.sort_values().tail(top).plot.barh(ax=left, title="Importance: total gain")
    shap.sort_values().tail(top).plot.barh(ax=right, title="Importance: mean |SHAP| (test)")
    fig.tight_layout()
    return fig


def comparison_plot(metrics: dict[str, dict[str, float]]) -> Figure:
    """The model next to the MQL rule and the other baselines on the headline metrics."""
    names = list(metrics)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    for ax, metric, title in zip(
        axes,
        ("recall_at_10", "lift_at_10", "pr_auc"),
        ("Later wins found in the top 10%", "Lift in the top 10%", "PR AUC"),
        strict=True,
    ):
        values = [metrics[n][metric] for n in names]
        bars = ax.bar(
            names, values, color=["#1f77b4" if n == "model" else "#bbbbbb" for n in names]
        )
        ax.bar_label(bars, fmt="%.2f")
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=20)
    fig.suptitle("Account model vs the MQL way, same test rows")
    fig.tight_layout()
    return fig
