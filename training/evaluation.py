"""How a model is measured: every method (the model, its ablations, the baselines) scored on the
same test rows, with account-bootstrap intervals and lead times (``Evaluation``); in
short-history mode, cross-validated over groups of accounts instead."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.catalogue import BUYING_GROUP_FAMILIES, META_COLUMNS, catalogue
from features.settings import FeatureSpec
from training.baselines import RULES, fit_baselines
from training.bootstrap import bootstrap, mean_intervals
from training.metrics import deal_warnings, evaluate_scores, lead_times
from training.model import LABEL, InMarketModel, fit_model
from training.settings import TrainSettings
from training.split import Folds

# the ablations trained beside the model on the same rows: which features carry the ranking
ABLATIONS = {
    "no_intent": "every feature but third-party intent",
    "buying_group": "buying-group features only: people, departments, seniority, roles, "
    "breadth and momentum",
}
# the order of the comparison table: the model, its ablations, then the baselines
METHOD_ORDER = ("model", *ABLATIONS, "mql_rule", "logistic", "engagement")


@dataclass
class Evaluation:
    """Metrics, intervals and lead times of the model, its ablations and every baseline on the
    same test rows."""

    metrics: dict[str, dict[str, float]]
    lead_times: dict[str, tuple[float, int]]  # mean days of warning, deals flagged
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)
    intervals: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    confidence: float = 0.95
    deals: int = 0  # later-won deals the lead times are measured on, the same for every method
    # recall in the top 10% over the MQL rule's: the interval of the paired ratio, per method
    ratios: dict[str, tuple[float, float]] = field(default_factory=dict)
    # the mean lead days' interval, per method, over the same replicates
    lead_intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    # the share of the later-won deals each method had in its top 10% beforehand, interval
    found_intervals: dict[str, tuple[float, float]] = field(default_factory=dict)

    def deals_found(self, method: str) -> float:
        """The share of the later-won deals ``method`` had in its top 10% at least once in
        the horizon before the deal (the unit is the deal, not the snapshot)."""
        return self.lead_times[method][1] / self.deals if self.deals else float("nan")

    def table(self) -> str:
        columns = ["roc_auc", "pr_auc", "brier", "lift_at_10", "recall_at_10"]
        width = 24 if self.intervals else 10
        lead_width = 22 if self.lead_intervals else 14
        lines = [
            f"{'':<13}"
            + "".join(f"{c:>{width}}" for c in columns)
            + f"{'deals_found':>{max(width, 12)}}"
            + f"{'lead days':>{lead_width}}"
        ]
        for name, m in self.metrics.items():
            lead, n = self.lead_times[name]
            cells = []
            for c in columns:
                lo, hi = self.intervals.get(name, {}).get(c, (np.nan, np.nan))
                d = 4 if c == "brier" else 3  # Brier scores are small numbers
                cell = f"{m[c]:.{d}f}" + (f" [{lo:.{d}f}-{hi:.{d}f}]" if self.intervals else "")
                cells.append(f"{cell:>{width}}")
            lo, hi = self.found_intervals.get(name, (np.nan, np.nan))
            found = f"{self.deals_found(name):.3f}" + (
                f" [{lo:.3f}-{hi:.3f}]" if self.found_intervals else ""
            )
            cells.append(f"{found:>{max(width, 12)}}")
            lead_lo, lead_hi = self.lead_intervals.get(name, (np.nan, np.nan))
            interval = f" [{lead_lo:.1f}-{lead_hi:.1f}]" if self.lead_intervals else ""
            lines.append(f"{name:<13}" + "".join(cells) + f"{lead:>7.1f}{interval} ({n:>3})")
        if self.intervals:
            lines.append(
                f"[a-b]: {self.confidence:.0%} interval, accounts resampled "
                "(the same replicates for every row of the table)"
            )
        lines.append(
            "recall_at_10 counts snapshots: an account in the top 10% of a snapshot within the "
            "horizon before its win; a deal with more snapshots before it weighs more"
        )
        lines.append(
            f"deals_found: share of the {self.deals} later-won deals whose account was in the "
            "top 10% at least once in the horizon before the deal was created"
        )
        lines.append(
            f"lead days: mean days between a later-won deal's creation and its account's first "
            f"snapshot in the top 10% (0 if never), over the same {self.deals} deals for every "
            "method; (n): deals flagged"
        )
        return "\n".join(lines)

    def comparison(self) -> dict[str, dict[str, Any]]:
        """Every method's metrics, intervals, ratio to the MQL rule and lead days, as the model
        card shows them (JSON-ready)."""
        mql = self.metrics.get("mql_rule", {}).get("recall_at_10")
        out: dict[str, dict[str, Any]] = {}
        for name, values in self.metrics.items():
            lead, flagged = self.lead_times[name]
            out[name] = {
                "metrics": values,
                "intervals": {k: list(v) for k, v in self.intervals.get(name, {}).items()},
                "vs_mql": values["recall_at_10"] / mql if mql else None,
                "vs_mql_interval": list(self.ratios[name]) if name in self.ratios else None,
                "lead_days": lead,
                "lead_days_interval": (
                    list(self.lead_intervals[name]) if name in self.lead_intervals else None
                ),
                "deals_flagged": flagged,
                "deals_found": self.deals_found(name),
                "deals_found_interval": (
                    list(self.found_intervals[name]) if name in self.found_intervals else None
                ),
            }
        return out

    def versus_mql(self, method: str) -> str:
        """``method``'s recall in the top 10% as a multiple of the MQL rule's, with the
        interval of that ratio (paired: the same accounts drawn for both), whether it is
        distinguishable from the rule, and the later-won deals each had on its list."""
        mql = self.metrics["mql_rule"]["recall_at_10"]
        if not mql:  # the rule found no later win in its top 10%: no multiple to give
            return (
                f"recall in the top 10% {self.metrics[method]['recall_at_10']:.3f} where the "
                "MQL rule's is 0 (per snapshot before a later win)"
            )
        value = self.metrics[method]["recall_at_10"] / mql
        lo, hi = self.ratios.get(method, (np.nan, np.nan))
        interval = f" ({self.confidence:.0%} interval {lo:.2f}-{hi:.2f}x)" if self.ratios else ""
        said = (
            f"{value:.2f}x{interval} the MQL rule's recall in the top 10% (per snapshot before a "
            "later win)"
        )
        if self.ratios and lo <= 1:
            said += f", not distinguishable from the rule at {self.confidence:.0%}"
        if self.deals:
            said += (
                f"; {self.lead_times[method][1]} of the {self.deals} later-won deals on its list "
                f"beforehand, the rule {self.lead_times['mql_rule'][1]}"
            )
        return said


def score_methods(
    model: InMarketModel,
    ablations: dict[str, InMarketModel],
    baselines: list[Any],
    test: pd.DataFrame,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every method's ranking score and probability on the test rows."""
    scores = {"model": model.predict(test, raw_score=True)}
    probabilities = {"model": model.predict(test)}
    for name, ablation in ablations.items():
        scores[name] = ablation.predict(test, raw_score=True)
        probabilities[name] = ablation.predict(test)
    for baseline in baselines:
        scores[baseline.name] = np.asarray(baseline.score(test), dtype=float)
        probabilities[baseline.name] = baseline.predict_proba(test)
    return scores, probabilities


def evaluate_methods(
    scores: dict[str, np.ndarray],
    probabilities: dict[str, np.ndarray],
    test: pd.DataFrame,
    opportunities: pd.DataFrame,
    settings: TrainSettings,
) -> Evaluation:
    """Metrics, account-bootstrap intervals and lead times of every method on the same rows."""
    labels, as_of = test[LABEL].to_numpy(), test["as_of"].to_numpy()
    names = [n for n in METHOD_ORDER if n in scores]
    metrics = {n: evaluate_scores(scores[n], probabilities[n], labels, as_of) for n in names}
    deals, warnings = deal_warnings(
        test, {n: scores[n] for n in names}, opportunities, settings.horizon_days
    )
    leads = lead_times(warnings)
    lead_intervals: dict[str, tuple[float, float]] = {}
    found_intervals: dict[str, tuple[float, float]] = {}
    intervals: dict[str, dict[str, tuple[float, float]]] = {}
    ratios: dict[str, tuple[float, float]] = {}
    if settings.bootstrap_rounds and "mql_rule" in names:
        replicates = bootstrap(
            {n: scores[n] for n in names},
            {n: probabilities[n] for n in names},
            labels,
            as_of,
            test["account_id"].to_numpy(),
            rounds=settings.bootstrap_rounds,
            seed=settings.seed,
        )
        intervals = replicates.intervals(settings.confidence)
        lead_intervals, found_intervals = (
            mean_intervals(
                per_deal,
                deals["account_id"].to_numpy(),
                test["account_id"].to_numpy(),
                rounds=settings.bootstrap_rounds,
                seed=settings.seed,
                confidence=settings.confidence,
            )
            for per_deal in (
                warnings,
                {n: (days > 0).astype(float) for n, days in warnings.items()},
            )
        )
        ratios = {
            n: replicates.ratio_interval(n, "mql_rule", "recall_at_10", settings.confidence)
            for n in names
        }
    return Evaluation(
        metrics,
        leads,
        {n: scores[n] for n in names},
        {n: probabilities[n] for n in names},
        intervals,
        settings.confidence,
        len(deals),
        ratios,
        lead_intervals,
        found_intervals,
    )


def evaluate(
    model: InMarketModel,
    baselines: list[Any],
    test: pd.DataFrame,
    opportunities: pd.DataFrame,
    settings: TrainSettings,
    ablations: dict[str, InMarketModel] | None = None,
) -> Evaluation:
    """Model, ablations and baselines on the same test rows."""
    scores, probabilities = score_methods(model, ablations or {}, baselines, test)
    return evaluate_methods(scores, probabilities, test, opportunities, settings)


def ablation_columns(name: str, spec: FeatureSpec, features: list[str]) -> list[str]:
    """The model's input columns an ablation keeps."""
    family = {f.name: f.family for f in catalogue(spec)}
    if name == "no_intent":
        return [c for c in features if family.get(c) != "intent"]
    if name == "buying_group":
        return [c for c in features if family.get(c) in BUYING_GROUP_FAMILIES]
    raise KeyError(name)


def fit_ablations(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: list[str],
    settings: TrainSettings,
    spec: FeatureSpec,
) -> dict[str, InMarketModel]:
    """The ablation models (``ABLATIONS``), trained like the model on the same rows, each on
    its subset of the model's features; none when ``settings.ablations`` is off."""
    if not settings.ablations:
        return {}
    models = {}
    for name in ABLATIONS:
        keep = [*META_COLUMNS, *ablation_columns(name, spec, features), LABEL]
        models[name] = fit_model(
            train[keep], valid[keep], seed=settings.seed, params=settings.lightgbm, spec=spec
        )
    return models


def shuffled(
    train: pd.DataFrame, valid: pd.DataFrame, settings: TrainSettings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The fitting rows, their labels permuted for the permutation check (the test rows keep
    the truth), else as they are."""
    if not settings.shuffle_labels:
        return train, valid
    rng = np.random.default_rng(settings.seed)
    return tuple(  # type: ignore[return-value]
        part.assign(**{LABEL: rng.permutation(part[LABEL].to_numpy())}) for part in (train, valid)
    )


def cross_validate(
    folds: Folds, spec: FeatureSpec, opportunities: pd.DataFrame, settings: TrainSettings
) -> Evaluation:
    """Short-history evaluation: every method fitted on the other groups of accounts and
    scored on each group in turn, then measured on all rows at once (out of fold). The five
    fitted models' margins are on five scales, so a fitted method is ranked by its calibrated
    probability; a rule (``RULES``) by its score, the same function in every group."""
    n = len(folds.rows)
    scores: dict[str, np.ndarray] = {}
    probabilities: dict[str, np.ndarray] = {}
    for k in range(folds.folds):
        train, valid, test = folds.part(k)
        train, valid = shuffled(train, valid, settings)
        model = fit_model(train, valid, seed=settings.seed, params=settings.lightgbm, spec=spec)
        ablations = fit_ablations(train, valid, model.features, settings, spec)
        baselines = fit_baselines(train, valid, seed=settings.seed)
        fold_scores, fold_probabilities = score_methods(model, ablations, baselines, test)
        rows = np.flatnonzero(folds.fold == k)
        for name, values in fold_scores.items():
            ranking = values if name in RULES else fold_probabilities[name]
            scores.setdefault(name, np.full(n, np.nan))[rows] = ranking
            probabilities.setdefault(name, np.full(n, np.nan))[rows] = fold_probabilities[name]
    return evaluate_methods(scores, probabilities, folds.rows, opportunities, settings)


def out_of_fold_baselines(
    folds: Folds, settings: TrainSettings
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every baseline fitted on the other groups of accounts and scored on each group."""
    n = len(folds.rows)
    scores: dict[str, np.ndarray] = {}
    probabilities: dict[str, np.ndarray] = {}
    for k in range(folds.folds):
        train, valid, test = folds.part(k)
        rows = np.flatnonzero(folds.fold == k)
        for baseline in fit_baselines(train, valid, seed=settings.seed):
            probability = baseline.predict_proba(test)
            # a fitted baseline's scores are on five scales: pooled by probability, as in
            # cross_validate
            ranking = baseline.score(test) if baseline.name in RULES else probability
            scores.setdefault(baseline.name, np.full(n, np.nan))[rows] = ranking
            probabilities.setdefault(baseline.name, np.full(n, np.nan))[rows] = probability
    return scores, probabilities
