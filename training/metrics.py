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


def lead_times(
    frame: pd.DataFrame,
    scores: dict[str, np.ndarray],
    opportunities: pd.DataFrame,
    horizon_days: int,
    share: float = TOP_SHARE,
) -> tuple[dict[str, tuple[float, int]], int]:
    """How early each method saw the later wins, measured on the same deals for every method.

    The deals: won new-business opportunities created after the first scored snapshot and
    within ``horizon_days`` of the last, whose account has a scored snapshot in the
    ``horizon_days`` before the deal's creation. A method's warning on a deal is the days
    between the first such snapshot where the account was in the method's top ``share`` and
    the deal's creation, 0 if it never was (the deal came as a surprise). Per method: the mean
    warning over all those deals and how many it flagged; and the number of deals.

    ``frame`` holds the scored snapshots (account_id, as_of). An account tied at the cut counts
    as flagged when it is more likely than not in the top under a random tie-break."""
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
    deals = joined[["account_id", "created_at"]].drop_duplicates()
    result: dict[str, tuple[float, int]] = {}
    for name, score in scores.items():
        weights = _top_weights(np.asarray(score, dtype=float), frame["as_of"].to_numpy(), share)
        flagged = joined[weights[joined["index"].to_numpy()] >= 0.5]
        earliest = flagged.groupby(["account_id", "created_at"])["as_of"].min().reset_index()
        days = (earliest["created_at"] - earliest["as_of"]).dt.total_seconds()
        warning = float(days.sum() / 86_400 / len(deals)) if len(deals) else float("nan")
        result[name] = (warning, len(earliest))
    return result, len(deals)
