"""Evaluation metrics, the same for the model and every baseline on the same rows.

Top-10% metrics rank accounts within each snapshot, as a team works its list each period, and
treat ties fairly: accounts tied at the cut-off count in proportion to the places left, so a
score with many ties (lead points are often 0) is neither helped nor hurt by an arbitrary order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

TOP_SHARE = 0.10


def top_share_weights(scores: np.ndarray, share: float = TOP_SHARE) -> np.ndarray:
    """For one snapshot: each row's weight in the top ``share`` (1, 0, or a fraction for ties)."""
    n = len(scores)
    if n == 0:
        return np.zeros(0)
    k = int(np.ceil(share * n))
    threshold = np.sort(scores)[::-1][k - 1]
    above = scores > threshold
    tied = scores == threshold
    weights = above.astype(float)
    weights[tied] = (k - above.sum()) / tied.sum()
    return weights


def _top_weights(scores: np.ndarray, as_of: np.ndarray, share: float) -> np.ndarray:
    weights = np.zeros(len(scores))
    for stamp in np.unique(as_of):  # a loop over snapshots (a dozen), not over accounts
        rows = np.flatnonzero(as_of == stamp)
        weights[rows] = top_share_weights(scores[rows], share)
    return weights


def evaluate_scores(
    scores: np.ndarray,
    probabilities: np.ndarray,
    labels: np.ndarray,
    as_of: np.ndarray,
    share: float = TOP_SHARE,
) -> dict[str, float]:
    """ROC AUC, PR AUC, Brier, lift and recall in the top ``share`` of each snapshot."""
    labels = np.asarray(labels, dtype=float)
    weights = _top_weights(np.asarray(scores, dtype=float), np.asarray(as_of), share)
    base_rate = labels.mean()
    found = float((weights * labels).sum())
    top_rate = found / weights.sum() if weights.sum() else float("nan")
    return {
        "roc_auc": float(roc_auc_score(labels, scores)),
        "pr_auc": float(average_precision_score(labels, scores)),
        "brier": float(brier_score_loss(labels, probabilities)),
        "lift_at_10": float(top_rate / base_rate) if base_rate else float("nan"),
        "recall_at_10": found / labels.sum() if labels.sum() else float("nan"),
        "base_rate": float(base_rate),
    }


def deal_warnings(
    frame: pd.DataFrame,
    scores: dict[str, np.ndarray],
    opportunities: pd.DataFrame,
    horizon_days: int,
    share: float = TOP_SHARE,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """How early each method saw each later win, on the same deals for every method.

    The deals: won new-business opportunities created after the first scored snapshot and
    within ``horizon_days`` of the last, whose account has a scored snapshot in the
    ``horizon_days`` before the deal's creation. A method's warning on a deal is the days
    between the first such snapshot where the account was in the method's top ``share`` and
    the deal's creation, 0 if it never was (the deal came as a surprise).

    ``frame`` holds the scored snapshots (account_id, as_of). An account tied at the cut counts
    as flagged when it is more likely than not in the top under a random tie-break. Returns the
    deals (account_id, created_at) and, per method, the warning in days on each."""
    horizon = pd.Timedelta(days=horizon_days)
    wins = opportunities[
        (opportunities["type"] == "new_business") & (opportunities["status"] == "won")
    ][["account_id", "created_at"]]
    first, last = frame["as_of"].min(), frame["as_of"].max()
    wins = wins[(wins["created_at"] > first) & (wins["created_at"] <= last + horizon)]
    snapshots = frame[["account_id", "as_of"]].reset_index(drop=True)
    joined = wins.drop_duplicates().merge(snapshots.reset_index(), on="account_id")
    joined = joined[
        (joined["as_of"] < joined["created_at"])
        & (joined["as_of"] >= joined["created_at"] - horizon)
    ]
    keys = ["account_id", "created_at"]
    deals = joined[keys].drop_duplicates().reset_index(drop=True)
    warnings: dict[str, np.ndarray] = {}
    for name, score in scores.items():
        weights = _top_weights(np.asarray(score, dtype=float), frame["as_of"].to_numpy(), share)
        flagged = joined[weights[joined["index"].to_numpy()] >= 0.5]
        earliest = flagged.groupby(keys)["as_of"].min().rename("first").reset_index()
        seen = deals.merge(earliest, on=keys, how="left")
        days = (seen["created_at"] - seen["first"]).dt.total_seconds() / 86_400
        warnings[name] = days.fillna(0.0).to_numpy(dtype=float)
    return deals, warnings


def lead_times(warnings: dict[str, np.ndarray]) -> dict[str, tuple[float, int]]:
    """Per method, the mean of its warnings from ``deal_warnings`` and how many deals it
    flagged (warned of at least one snapshot before)."""
    return {
        name: (float(days.mean()) if len(days) else float("nan"), int((days > 0).sum()))
        for name, days in warnings.items()
    }
