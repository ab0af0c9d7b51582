"""How far a metric could move by chance: the accounts bootstrap.

Snapshots of one account are not independent (the same buying group is seen every two weeks),
so the unit resampled is the account: each replicate draws the test accounts with replacement
and keeps all their rows. Replicates are drawn as weights (how many times each account is
drawn: a multinomial over accounts), and every metric is computed with those row weights by
``weighted_metrics``, which with weights of one gives exactly ``evaluate_scores``'s numbers (a
test checks), top-10% cut per snapshot and fair ties included.

The same weights serve every method of a replicate, so two methods are compared *paired*: the
interval of a difference says whether one beats the other by more than the choice of accounts
could explain (the promotion gate asks exactly that).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.metrics import TOP_SHARE

METRICS = ("roc_auc", "pr_auc", "brier", "lift_at_10", "recall_at_10")


class _Ranked:
    """One method's scores on the test rows, sorted once: the order every replicate reuses."""

    def __init__(self, scores: np.ndarray, as_of_codes: np.ndarray) -> None:
        scores = np.asarray(scores, dtype=float)
        # all rows, best first; ties grouped (a tie is one threshold, as in sklearn)
        self.order = np.argsort(-scores, kind="stable")
        s = scores[self.order]
        self.tie_start = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        # within each snapshot, best first; tie groups never cross snapshots
        self.snap_order = np.lexsort((-scores, as_of_codes))
        snap, ss = as_of_codes[self.snap_order], scores[self.snap_order]
        new_snap = np.r_[True, snap[1:] != snap[:-1]]
        self.snap_group_start = np.flatnonzero(new_snap | np.r_[True, ss[1:] != ss[:-1]])
        self.snap_of_group = snap[self.snap_group_start]


def _auc_and_ap(r: _Ranked, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    pos = np.add.reduceat((w * y)[r.order], r.tie_start)
    neg = np.add.reduceat((w * (1 - y))[r.order], r.tie_start)
    p_total, n_total = pos.sum(), neg.sum()
    if p_total == 0 or n_total == 0:
        return float("nan"), float("nan")
    neg_before = np.cumsum(neg) - neg
    auc = float((pos * (n_total - neg_before - neg + 0.5 * neg)).sum() / (p_total * n_total))
    tp, fp = np.cumsum(pos), np.cumsum(neg)
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    ap = float((pos / p_total * precision).sum())
    return auc, ap


def _top_weights(r: _Ranked, w: np.ndarray, n_snapshots: int, share: float) -> np.ndarray:
    """Each row's share in the top ``share`` of its snapshot, with row weights ``w``: the
    top holds ``ceil(share * accounts drawn)`` places; a tie group at the cut shares what is
    left in proportion."""
    group_w = np.add.reduceat(w[r.snap_order], r.snap_group_start)
    snap_total = np.bincount(r.snap_of_group, weights=group_w, minlength=n_snapshots)
    places = np.ceil(share * snap_total - 1e-9)
    cum = np.cumsum(group_w)
    snap_first = np.r_[True, r.snap_of_group[1:] != r.snap_of_group[:-1]]
    offset = np.maximum.accumulate(np.where(snap_first, cum - group_w, 0.0))
    before = cum - group_w - offset  # weight ranked above the group in its snapshot
    left = places[r.snap_of_group] - before
    fraction = np.clip(
        np.divide(left, group_w, out=np.zeros_like(left), where=group_w > 0), 0.0, 1.0
    )
    sizes = np.diff(np.r_[r.snap_group_start, len(w)])
    top = np.empty(len(w))
    top[r.snap_order] = np.repeat(fraction, sizes)
    return top


def weighted_metrics(
    r: _Ranked,
    probabilities: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    n_snapshots: int,
    share: float = TOP_SHARE,
    ranking_only: bool = False,
) -> dict[str, float]:
    """The five metrics of one method with row weights ``w`` (or only the ranking ones)."""
    auc, ap = _auc_and_ap(r, y, w)
    if ranking_only:
        return {"roc_auc": auc, "pr_auc": ap}
    top = _top_weights(r, w, n_snapshots, share) * w
    positives, total = float((w * y).sum()), float(w.sum())
    found = float((top * y).sum())
    base_rate = positives / total if total else float("nan")
    top_rate = found / top.sum() if top.sum() else float("nan")
    return {
        "roc_auc": auc,
        "pr_auc": ap,
        "brier": float((w * (probabilities - y) ** 2).sum() / total),
        "lift_at_10": top_rate / base_rate if base_rate else float("nan"),
        "recall_at_10": found / positives if positives else float("nan"),
    }


@dataclass
class Replicates:
    """Every method's metrics over the same bootstrap replicates (rows: replicates)."""

    values: dict[str, dict[str, np.ndarray]]  # method -> metric -> one value per replicate

    def interval(self, method: str, metric: str, confidence: float) -> tuple[float, float]:
        """The two-sided percentile interval of one method's metric."""
        tail = (1 - confidence) / 2
        lo, hi = np.nanquantile(self.values[method][metric], [tail, 1 - tail])
        return float(lo), float(hi)

    def intervals(self, confidence: float) -> dict[str, dict[str, tuple[float, float]]]:
        return {
            m: {k: self.interval(m, k, confidence) for k in metrics}
            for m, metrics in self.values.items()
        }

    def difference(self, better: str, than: str, metric: str) -> np.ndarray:
        """``better`` minus ``than`` on each replicate: paired, the same accounts drawn."""
        return self.values[better][metric] - self.values[than][metric]

    def ratio_interval(
        self, method: str, than: str, metric: str, confidence: float
    ) -> tuple[float, float]:
        """The two-sided percentile interval of ``method``'s metric over ``than``'s, replicate
        by replicate (paired); a replicate where ``than`` is 0 gives no ratio."""
        base = self.values[than][metric]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = self.values[method][metric] / np.where(base > 0, base, np.nan)
        tail = (1 - confidence) / 2
        lo, hi = np.nanquantile(ratio, [tail, 1 - tail])
        return float(lo), float(hi)


def _account_draws(accounts: np.ndarray, rounds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct accounts (sorted) and, ``rounds`` x accounts, how many times each is drawn
    in each replicate."""
    unique = np.unique(np.asarray(accounts, dtype=str))
    n = len(unique)
    rng = np.random.default_rng(seed)
    drawn = rng.multinomial(n, np.full(n, 1.0 / n), size=rounds) if n else np.zeros((rounds, 0))
    return unique, drawn.astype(float)


def account_weights(accounts: np.ndarray, rounds: int, seed: int) -> np.ndarray:
    """``rounds`` x rows: how many times each row's account is drawn in each replicate."""
    unique, drawn = _account_draws(accounts, rounds, seed)
    return drawn[:, np.searchsorted(unique, np.asarray(accounts, dtype=str))]


def mean_intervals(
    values: dict[str, np.ndarray],
    of_accounts: np.ndarray,
    accounts: np.ndarray,
    *,
    rounds: int,
    seed: int,
    confidence: float,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of each method's mean of ``values`` (one per unit, e.g. a later-won
    deal, of the account in ``of_accounts``), the units weighted by their account's draws in
    the replicates ``bootstrap`` makes of the rows' ``accounts`` with the same seed: the same
    replicates as the metrics beside them. A unit whose account has no row is an error: it
    could never be drawn."""
    unique, drawn = _account_draws(accounts, rounds, seed)
    of_accounts = np.asarray(of_accounts, dtype=str)
    missing = ~np.isin(of_accounts, unique)
    if missing.any():
        raise ValueError(
            f"mean_intervals: {int(missing.sum())} units belong to accounts without a row "
            f"(e.g. account {of_accounts[missing][0]!r}); a unit is drawn with its account's "
            "rows, so give only units of the rows' accounts"
        )
    weights = drawn[:, np.searchsorted(unique, of_accounts)]
    total = weights.sum(axis=1)
    tail = (1 - confidence) / 2
    out = {}
    for name, v in values.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            means = (weights @ np.asarray(v, dtype=float)) / total  # no unit drawn: nan
        lo, hi = (
            np.nanquantile(means, [tail, 1 - tail])
            if np.isfinite(means).any()
            else (
                np.nan,
                np.nan,
            )
        )
        out[name] = (float(lo), float(hi))
    return out


def bootstrap(
    scores: dict[str, np.ndarray],
    probabilities: dict[str, np.ndarray],
    labels: np.ndarray,
    as_of: np.ndarray,
    accounts: np.ndarray,
    *,
    rounds: int,
    seed: int,
    share: float = TOP_SHARE,
    metrics: tuple[str, ...] = METRICS,
) -> Replicates:
    """Every method's ``metrics`` on ``rounds`` account-bootstrap replicates of the same rows
    (ROC and PR AUC alone are quicker: no top-10% cut per replicate)."""
    y = np.asarray(labels, dtype=float)
    _, snap_codes = np.unique(np.asarray(as_of), return_inverse=True)
    n_snapshots = int(snap_codes.max()) + 1 if len(snap_codes) else 0
    ranked = {m: _Ranked(s, snap_codes) for m, s in scores.items()}
    weights = account_weights(accounts, rounds, seed)
    ranking_only = set(metrics) <= {"roc_auc", "pr_auc"}
    values: dict[str, dict[str, list[float]]] = {m: {k: [] for k in metrics} for m in scores}
    for w in weights:
        for method, r in ranked.items():
            row = weighted_metrics(
                r, np.asarray(probabilities[method]), y, w, n_snapshots, share, ranking_only
            )
            for k in metrics:
                values[method][k].append(row[k])
    return Replicates(
        {m: {k: np.asarray(v) for k, v in metrics.items()} for m, metrics in values.items()}
    )


def point_metrics(
    scores: np.ndarray,
    probabilities: np.ndarray,
    labels: np.ndarray,
    as_of: np.ndarray,
    share: float = TOP_SHARE,
) -> dict[str, float]:
    """The metrics with every row weighted one: ``evaluate_scores``'s numbers."""
    _, snap_codes = np.unique(np.asarray(as_of), return_inverse=True)
    r = _Ranked(scores, snap_codes)
    w = np.ones(len(scores))
    n = int(snap_codes.max()) + 1 if len(snap_codes) else 0
    return weighted_metrics(
        r, np.asarray(probabilities, dtype=float), np.asarray(labels, float), w, n, share
    )
