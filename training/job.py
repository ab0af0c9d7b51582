"""Training and evaluation jobs: features -> labels -> time split -> model and baselines ->
metrics and plots -> one MLflow run -> a registered model version with alias ``challenger``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.sources import LocalArtifactDatasetSource  # type: ignore[attr-defined]
from mlflow.models import infer_signature
from mlflow.types import ColSpec, DataType, Schema

from features.catalogue import META_COLUMNS, catalogue
from features.contract import empty_table
from features.engine import build_feature_table, read_feature_table
from features.errors import ConfigError, ContractError
from features.families import build_features
from features.io import sidecar
from features.leftovers import scratch_dir
from features.plan import load_small_tables, plan_build
from features.report import ValidationReport
from features.settings import DataSettings, FeatureSettings, FeatureSpec
from features.snapshots import snapshot_grid
from features.validation import Dataset
from training import plots
from training.baselines import RULES, fit_baselines
from training.bootstrap import bootstrap, mean_intervals
from training.drift import reference_bins
from training.labels import LabelCounts, label_words, ranked_population, undated_outcomes
from training.metrics import deal_warnings, evaluate_scores, lead_times
from training.model import LABEL, PYFUNC_CODE, InMarketModel, fit_model
from training.registry import (
    CHALLENGER,
    CHAMPION,
    EVALUATED_SCORE,
    TEST_SET,
    connect,
    load_model,
    owner_tags,
    shared_accounts,
    test_accounts,
    unseen_by,
    version_by_alias,
)
from training.settings import PromotionSettings, TrackingSettings, TrainSettings
from training.split import SHORT_MIN_EVENT_DAYS, Folds, Split, SplitError, label_and_split


def data_fingerprint(frame: pd.DataFrame) -> str:
    """A short hash of a table's values: the identity of the data a model was trained on."""
    hashed = pd.util.hash_pandas_object(
        frame.astype(
            {c: "str" for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)}
        ),
        index=False,
    ).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


# the ablations trained beside the model on the same rows: which features carry the ranking
BUYING_GROUP_FAMILIES = ("breadth", "concentration", "momentum")
ABLATIONS = {
    "no_intent": "every feature but third-party intent",
    "buying_group": "buying-group features only: people, departments, seniority, roles, "
    "breadth and momentum",
}
# the order of the comparison table: the model, its ablations, then the baselines
METHOD_ORDER = ("model", *ABLATIONS, "mql_rule", "logistic", "engagement")


def ablation_columns(name: str, spec: FeatureSpec, features: list[str]) -> list[str]:
    """The model's input columns an ablation keeps."""
    family = {f.name: f.family for f in catalogue(spec)}
    if name == "no_intent":
        return [c for c in features if family.get(c) != "intent"]
    if name == "buying_group":
        return [c for c in features if family.get(c) in BUYING_GROUP_FAMILIES]
    raise KeyError(name)


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


@dataclass
class TrainResult:
    """What a training run produced: its MLflow run, model version and evaluation."""

    run_id: str
    version: str
    model_uri: str
    evaluation: Evaluation
    counts: LabelCounts
    split: dict[str, Any]
    fingerprint: str
    columns: list[str] = field(default_factory=list)  # what became of non-contract columns
    warnings: list[str] = field(default_factory=list)  # also tagged on the MLflow run


def static_column_warnings(spec: FeatureSpec) -> list[str]:
    """A warning for every account column declared static: its value as of the export is
    applied to every past snapshot, which leaks the outcome if it changed on the way."""
    static = [c for c, kind in spec.columns.items() if kind == "static"]
    if not static:
        return []
    return [
        f"account column(s) {', '.join(static)} declared static: their export-time values are "
        "used at every past snapshot; if they changed over time (lifecycle stage, owner, ARR, "
        "customer since) the model learned from the outcome. Give their history "
        "(account_history) and declare them dated instead."
    ]


def _require_events(report: ValidationReport | None) -> None:
    """A model of a world without events would rank by fit and deals alone, under the name of
    buying-group engagement: refused before any run is made."""
    why = report.without_events() if report is not None else None
    if why:
        raise ContractError(why)


def _report_beside(features_path: Path) -> ValidationReport | None:
    """The validation report ``inmarket features`` wrote beside a feature table, if there."""
    path = sidecar(features_path, "report.json")
    if not path.exists():
        return None
    try:
        return ValidationReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise ContractError(
            f"{path}: cannot be read ({type(exc).__name__}: {exc}); build the features again "
            "with inmarket features"
        ) from exc


class Labelled(NamedTuple):
    """Labelled snapshots with their counts and split, the feature specification and tables."""

    rows: pd.DataFrame
    counts: LabelCounts
    split: Split | Folds
    spec: FeatureSpec
    dataset: Dataset


class _Job:
    """A job over one data folder, built from the settings sections it needs."""

    def __init__(
        self,
        data: DataSettings = DataSettings(),
        features: FeatureSettings = FeatureSettings(),
        train: TrainSettings = TrainSettings(),
        tracking: TrackingSettings = TrackingSettings(),
        promotion: PromotionSettings = PromotionSettings(),
    ) -> None:
        self.data, self.feature_settings = data, features
        self.train, self.tracking, self.promotion = train, tracking, promotion
        self.grid_warnings: list[str] = []  # of the feature table built here, if one was
        self.events_report: ValidationReport | None = None  # the events' validation, if known
        self.history: list[str] = []  # the export time and the tables' spans, once labelled
        # the newest snapshot's accounts a model would rank (features, no label), once labelled
        self.newest: pd.DataFrame | None = None

    def features(
        self, data: Path, features_path: Path | None, start: pd.Timestamp | None = None
    ) -> tuple[pd.DataFrame, FeatureSpec, Dataset]:
        """The feature table (read, or built from ``data``, its snapshots from ``start`` if
        given), the specification it was built with, and the validated small tables. Refused
        when no event could be used."""
        tables = load_small_tables(data, self.data)
        if features_path is not None:
            self.events_report = _report_beside(features_path)
            _require_events(self.events_report)
            return *read_feature_table(features_path), tables
        grid = {"every_days": self.train.every_days, "snapshots": None, "start": start}
        with scratch_dir("train") as tmp:
            out = tmp / "features.parquet"
            build = build_feature_table(
                data, out, self.data, self.feature_settings.model_copy(update=grid)
            )
            _require_events(build.report)
            self.grid_warnings, self.events_report = build.warnings, build.report
            return *read_feature_table(out), tables

    def labelled(self, data: Path, features_path: Path | None) -> Labelled:
        """The labelled snapshots, their counts and time split, and the validated tables."""
        table, spec, dataset = self.features(data, features_path)
        # the events' dates against this run's export time (the events are validated apart)
        spans = {**dataset.report.spans, **(self.events_report.spans if self.events_report else {})}
        merged = replace(dataset.report, spans=spans)
        # every table ending long before the clock is refused: the test window would be the
        # months after the data ends, no honest comparison (one stopped feed only warns)
        stale = merged.check_export_time()
        if stale:
            self.grid_warnings.append(stale)
        undated = undated_outcomes(dataset.opportunities)
        if undated:
            self.grid_warnings.append(undated)
        try:
            try:
                labelled, counts, split = label_and_split(
                    table, dataset.opportunities, dataset.report.extracted_at, self.train
                )
            except SplitError:
                start = self._short_start(features_path, table)
                if start is None:
                    raise
                # snapshots whose windows the events do not fill yet: a short history's only
                # labelled ones (their label windows must end before the export)
                table, spec, dataset = self.features(data, features_path, start)
                labelled, counts, split = label_and_split(
                    table, dataset.opportunities, dataset.report.extracted_at, self.train
                )
                self.grid_warnings.append(
                    f"short history: snapshots start {start:%Y-%m-%d}, "
                    f"{SHORT_MIN_EVENT_DAYS} days after the first event, where the "
                    f"{spec.lookback_days}-day windows are not yet full; at scoring they are, "
                    "so counts run higher than those the model was trained on"
                )
        except SplitError as exc:  # an export time far after the data, or undated deals,
            # explain it first
            causes = [c for c in (stale, undated) if c]
            raise SplitError(". ".join([*causes, str(exc)])) from exc
        if isinstance(split, Folds):
            because = " (here because deals have no close date: see above)" if undated else ""
            self.grid_warnings.append(f"short-history mode: {split.reason}{because}")
        self.history = merged.history()
        newest = table[table["as_of"] == table["as_of"].max()]
        self.newest = newest[ranked_population(newest, self.train.include_customers)]
        return Labelled(labelled, counts, split, spec, dataset)

    def _short_start(self, features_path: Path | None, table: pd.DataFrame) -> pd.Timestamp | None:
        """An earlier first snapshot for a short history, when this job builds the features,
        the events begin less than a full window before the first snapshot, and short-history
        mode is on; else None."""
        span = (self.events_report.spans if self.events_report else {}).get("events")
        if features_path is not None or not self.train.short_history or not span:
            return None
        start = pd.Timestamp(span[0]).normalize() + pd.Timedelta(days=SHORT_MIN_EVENT_DAYS)
        start = start.tz_localize("UTC") if start.tzinfo is None else start
        return start if start < table["as_of"].min() else None


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


def _shuffled(
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
        train, valid = _shuffled(train, valid, settings)
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


def _score_reference(
    model: InMarketModel, split: Split | Folds, evaluation: Evaluation, newest: pd.DataFrame | None
) -> np.ndarray:
    """The probabilities the score 0-100 is a percentile of: this model's on the test window
    it was measured on; in short-history mode, this model's on the newest snapshot's accounts
    (the out-of-fold probabilities come from five other models, and the labelled snapshots of
    a short history may have windows not yet full, unlike the ones it will score)."""
    if isinstance(split, Folds):
        return model.predict(newest if newest is not None and len(newest) else split.valid)
    return evaluation.probabilities["model"]


class TrainJob(_Job):
    """``inmarket train``: everything from tables (or a feature file) to a challenger."""

    def run(
        self,
        data: Path,
        features_path: Path | None = None,
        announce: Callable[[list[str]], None] | None = None,
    ) -> TrainResult:
        """Train, evaluate and register; ``announce`` hears the history and each window's
        counts as soon as they are known, before any model is fitted."""
        tc = self.train
        labelled, counts, split, spec, dataset = self.labelled(data, features_path)
        if announce is not None:
            announce(
                [
                    *self.history,
                    f"labels ({label_words(tc.label, tc.horizon_days)}; snapshots every "
                    f"{tc.every_days} days):",
                    *window_lines(counts, split),
                ]
            )
        if isinstance(split, Folds):
            evaluation = cross_validate(split, spec, dataset.opportunities, tc)
            model = fit_model(
                *_shuffled(split.train, split.valid, tc),
                seed=tc.seed,
                params=tc.lightgbm,
                spec=spec,
            )
        else:
            train, valid = _shuffled(split.train, split.valid, tc)
            model = fit_model(train, valid, seed=tc.seed, params=tc.lightgbm, spec=spec)
            ablations = fit_ablations(train, valid, model.features, tc, spec)
            baselines = fit_baselines(train, valid, seed=tc.seed)
            evaluation = evaluate(
                model, baselines, split.test, dataset.opportunities, tc, ablations
            )
        fingerprint = data_fingerprint(labelled)
        model.info.update(
            {
                "trained_at": pd.Timestamp.now("UTC").isoformat(timespec="seconds"),
                "test_metrics": evaluation.metrics["model"],
                "mql_test_metrics": evaluation.metrics["mql_rule"],
                "test_intervals": evaluation.intervals.get("model", {}),
                "mql_test_intervals": evaluation.intervals.get("mql_rule", {}),
                # every method of the comparison, for the model card
                "comparison": evaluation.comparison(),
                "lead_time_deals": evaluation.deals,
                "confidence": evaluation.confidence,
                "horizon_days": tc.horizon_days,
                # the last snapshot it was fitted on (trained, stopped or calibrated): the gate
                # compares it only on rows after this by more than the horizon
                "fitted_until": split.valid["as_of"].max().isoformat(),
                "reference": reference_bins(split.train, model.features),
                "score_quantiles": np.quantile(
                    _score_reference(model, split, evaluation, self.newest), np.linspace(0, 1, 101)
                ).tolist(),
                "label": tc.label,
                "include_customers": tc.include_customers,
                "evaluation": split.describe()["evaluation"],  # grouped_cv: a short history
                "feature_sources": {
                    f.name: f.source for f in catalogue(spec) if f.name in model.features
                },
            }
        )
        warnings = [*self.grid_warnings, *static_column_warnings(spec)]
        client = connect(self.tracking)
        source = Path(data).resolve()
        dataset_name = self.tracking.project or source.name
        with mlflow.start_run(
            run_name=f"{dataset_name} · {tc.label}, created within {tc.horizon_days}d · "
            f"{dataset.report.extracted_at:%Y-%m-%d}",
            description=self._description(source, split, evaluation, counts, dataset),
            tags={**owner_tags(), "dataset": dataset_name},
        ) as run:
            self._log(str(source), model, split, evaluation, counts, labelled, fingerprint)
            warnings += self._other_dataset(client, split.test)
            if warnings:
                mlflow.set_tag("warnings", " | ".join(warnings))
            version = self._register(client, run.info.run_id, model, split)
        return TrainResult(
            run.info.run_id,
            version,
            f"models:/{self.tracking.model_name}/{version}",
            evaluation,
            counts,
            split.describe(),
            fingerprint,
            dataset.report.column_notes(spec.columns),
            warnings,
        )

    def _description(
        self,
        source: Path,
        split: Split | Folds,
        evaluation: Evaluation,
        counts: LabelCounts,
        dataset: Dataset,
    ) -> str:
        """The run's description in MLflow: what was trained on what, and what it showed."""
        tc, report = self.train, dataset.report
        m = evaluation.metrics
        mode = (
            f"cross-validated over {split.folds} groups of accounts (short history)"
            if isinstance(split, Folds)
            else "time split: train, validation and test windows with embargoes"
        )
        lines = [
            f"Trained on `{source}` (export time {report.extracted_at:%Y-%m-%d}, taken from "
            f"{report.extracted_from}).",
            f"Label `{tc.label}`: {label_words(tc.label, tc.horizon_days)} after a snapshot; "
            f"{mode}; "
            f"{counts.labelled:,} labelled snapshots, {counts.positives:,} positive.",
            f"Test: recall in the top 10% {m['model']['recall_at_10']:.3f} against the MQL "
            f"rule's {m['mql_rule']['recall_at_10']:.3f}: {evaluation.versus_mql('model')}; "
            f"ROC AUC {m['model']['roc_auc']:.3f}, PR AUC {m['model']['pr_auc']:.3f}.",
        ]
        if "no_intent" in m:
            lines.append(f"Without third-party intent: {evaluation.versus_mql('no_intent')}.")
        return "\n\n".join(lines)

    def _other_dataset(self, client: Any, test: pd.DataFrame) -> list[str]:
        """A warning when the champion of this model name was trained on another dataset:
        ``promote`` will not compare them."""
        name = self.tracking.model_name
        champion = version_by_alias(client, name, CHAMPION)
        if champion is None:
            return []
        shared = shared_accounts(
            set(test["account_id"].astype(str)), test_accounts(client, name, champion.version)
        )
        if shared >= self.promotion.min_shared_accounts:
            return []
        return [
            f"the champion of '{name}' (v{champion.version}) was trained on another dataset: "
            f"only {shared:.0%} of this run's test accounts are among its own, so `promote` "
            "will not compare them; give each dataset its own project ([tracking] project = "
            '"..." in the config)'
        ]

    def _log(
        self,
        source: str,
        model: InMarketModel,
        split: Split | Folds,
        evaluation: Evaluation,
        counts: LabelCounts,
        labelled: pd.DataFrame,
        fingerprint: str,
    ) -> None:
        tc = self.train
        sections = {
            "data": self.data,
            "features": self.feature_settings,
            "train": tc,
            "tracking": self.tracking,
        }
        mlflow.log_dict(
            {name: json.loads(section.model_dump_json()) for name, section in sections.items()},
            "config.json",
        )
        mlflow.log_params({**tc.model_dump(exclude={"lightgbm"}), **tc.lightgbm.model_dump()})
        mlflow.log_params(
            {
                "best_iteration": model.info["best_iteration"],
                "n_features": len(model.features),
                "data_fingerprint": fingerprint,
                **{k: v for k, v in split.describe().items()},
            }
        )
        # The data's identity without re-reading a million rows: our own fingerprint, the
        # source folder and the schema of a sample.
        sample = labelled.head(1000).astype(
            {
                c: "str"
                for c in labelled.columns
                if isinstance(labelled[c].dtype, pd.CategoricalDtype)
            }
        )
        # the label is declared, not inferred: an inferred integer column warns on every run
        # that it cannot hold missing values, and a label is never missing
        inferred = infer_signature(sample.drop(columns=LABEL)).inputs
        schema = Schema([*inferred.inputs, ColSpec(DataType.long, LABEL)])
        mlflow.log_input(
            MetaDataset(  # type: ignore[abstract]
                LocalArtifactDatasetSource(source),
                name="labelled_snapshots",
                digest=fingerprint,
                schema=schema,
            ),
            context="training",
            tags={"rows": str(len(labelled)), "positives": str(int(labelled[LABEL].sum()))},
        )
        for name, values in evaluation.metrics.items():
            prefix = "test" if name == "model" else f"{name}_test"
            mlflow.log_metrics({f"{prefix}_{k}": v for k, v in values.items()})
            for k, (lo, hi) in evaluation.intervals.get(name, {}).items():
                mlflow.log_metrics({f"{prefix}_{k}_lo": lo, f"{prefix}_{k}_hi": hi})
            if name in evaluation.ratios:
                ratio = values["recall_at_10"] / evaluation.metrics["mql_rule"]["recall_at_10"]
                lo, hi = evaluation.ratios[name]
                mlflow.log_metrics(
                    {
                        f"{prefix}_recall_at_10_vs_mql": ratio,
                        f"{prefix}_recall_at_10_vs_mql_lo": lo,
                        f"{prefix}_recall_at_10_vs_mql_hi": hi,
                    }
                )
            lead, deals = evaluation.lead_times[name]
            if not np.isnan(lead):
                mlflow.log_metric(f"{prefix}_lead_time_days", lead)
            mlflow.log_metric(f"{prefix}_deals_found", evaluation.deals_found(name))
            for key, bounds in (
                ("deals_found", evaluation.found_intervals),
                ("lead_time_days", evaluation.lead_intervals),
            ):
                lo, hi = bounds.get(name, (np.nan, np.nan))
                if np.isfinite(lo) and np.isfinite(hi):
                    mlflow.log_metrics({f"{prefix}_{key}_lo": lo, f"{prefix}_{key}_hi": hi})
            mlflow.log_metric(f"{prefix}_lead_time_deals", deals)
        mlflow.log_metric("test_lead_time_deals_total", evaluation.deals)
        # the model on the rows it was fitted on and stopped on: beside test, the gap says
        # how much it memorised
        for part, frame in (("train", split.train), ("valid", split.valid)):
            fitted = evaluate_scores(
                model.predict(frame, raw_score=True),
                model.predict(frame),
                frame[LABEL].to_numpy(),
                frame["as_of"].to_numpy(),
            )
            mlflow.log_metrics({f"{part}_{k}": v for k, v in fitted.items() if np.isfinite(v)})
        mlflow.log_text(evaluation.table(), "evaluation/comparison.txt")
        mlflow.log_metrics({f"labels_{k}": v for k, v in counts.as_dict().items()})
        mode = split.describe()["evaluation"]
        mlflow.set_tags(
            {
                "data_fingerprint": fingerprint,
                "label": tc.label,
                "evaluation": mode,  # time_split, or grouped_cv: short-history mode
                "short_history": str(mode == "grouped_cv").lower(),
                **({"short_history_reason": split.reason} if isinstance(split, Folds) else {}),
            }
        )
        labels = split.test[LABEL].to_numpy()
        # mean |SHAP| on a seeded sample of test rows: the ranking of features is stable long
        # before every row is explained
        explained = split.test.sample(min(len(split.test), 20_000), random_state=tc.seed)
        shap = model.contributions(explained).abs().mean()
        gain = pd.Series(model.booster.feature_importance("gain"), index=model.features)
        figures = {
            "plots/gains_and_lift.png": plots.gains_chart(labels, evaluation.scores),
            "plots/calibration.png": plots.calibration_plot(labels, evaluation.probabilities),
            "plots/feature_importance.png": plots.importance_plot(gain, shap),
            "plots/model_vs_mql.png": plots.comparison_plot(evaluation.metrics),
        }
        for path, figure in figures.items():
            mlflow.log_figure(figure, path)
            plt.close(figure)
        mlflow.log_dict(
            {
                "metrics": evaluation.metrics,
                "intervals": evaluation.intervals,
                "confidence": evaluation.confidence,
                "recall_at_10_vs_mql_intervals": evaluation.ratios,
                "lead_times": evaluation.lead_times,
                "lead_time_intervals": evaluation.lead_intervals,
                "deals_found_intervals": evaluation.found_intervals,
                "lead_time_deals": evaluation.deals,
                "ablations": ABLATIONS,
                "labels": counts.as_dict(),
            },
            "evaluation/metrics.json",
        )
        mlflow.log_dict(
            {"gain": gain.to_dict(), "mean_abs_shap": shap.to_dict()}, "evaluation/importance.json"
        )
        with scratch_dir("train") as tmp:
            test_file = tmp / Path(TEST_SET).name
            split.test.assign(**{EVALUATED_SCORE: evaluation.scores["model"]}).to_parquet(
                test_file, index=False
            )
            mlflow.log_artifact(str(test_file), str(Path(TEST_SET).parent))

    def _register(
        self, client: Any, run_id: str, model: InMarketModel, split: Split | Folds
    ) -> str:
        name = self.tracking.model_name
        example = split.test[model.features].head(5)
        example = example.astype({c: "str" for c in model.categories})
        with scratch_dir("train") as tmp:
            folder = model.save(tmp / "model")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=PYFUNC_CODE,
                artifacts={"model": str(folder)},
                signature=infer_signature(example, model.predict(example)),
                input_example=example,
                registered_model_name=name,
            )
        version = str(info.registered_model_version)
        client.set_registered_model_alias(name, CHALLENGER, version)
        client.set_model_version_tag(
            name, version, "test_pr_auc", f"{model.info['test_metrics']['pr_auc']:.6f}"
        )
        return version


class EvaluateJob(_Job):
    """``inmarket evaluate``: re-score any registered version on any data."""

    def run(self, model_uri: str, data: Path, features_path: Path | None = None) -> Evaluation:
        connect(self.tracking)
        model = load_model(model_uri)
        # the model's features, never the current config's
        self.feature_settings = self.feature_settings.with_spec(model.spec)
        labelled = self.labelled(data, features_path)
        if labelled.spec != model.spec:
            raise ConfigError(
                f"{features_path}: built with {labelled.spec.model_dump()}, but {model_uri} "
                f"was trained on {model.spec.model_dump()}; leave --features out (features are "
                "then built with the model's specification) or build them with it"
            )
        split, dataset = labelled.split, labelled.dataset
        if isinstance(split, Folds):  # the baselines out of fold, like training measures them
            scores, probabilities = _out_of_fold_baselines(split, self.train)
            scores["model"] = model.predict(split.rows, raw_score=True)
            probabilities["model"] = model.predict(split.rows)
        else:
            baselines = fit_baselines(split.train, split.valid, seed=self.train.seed)
            scores, probabilities = score_methods(model, {}, baselines, split.test)
        rows = split.test
        # only rows the model was not fitted on and whose outcome it could not have seen
        keep = rows.index.isin(unseen_by(model, rows).index)
        if keep.sum() == 0 or rows.loc[keep, LABEL].nunique() < 2:
            raise SplitError(
                f"{model_uri} was fitted on snapshots up to {model.info.get('fitted_until')}: "
                f"of {len(rows):,} labelled test snapshots of {data}, too few come later by "
                "more than its label horizon to measure it; evaluate it on a later export"
            )
        return evaluate_methods(
            {n: v[keep] for n, v in scores.items()},
            {n: v[keep] for n, v in probabilities.items()},
            rows[keep],
            dataset.opportunities,
            self.train,
        )


def _out_of_fold_baselines(
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


def window_lines(counts: LabelCounts, split: Split | Folds) -> list[str]:
    """Each evaluation window's labelled snapshots and positives, in words: what validate
    forecasts and what train says before it fits anything."""
    s = split.describe()
    lines = [
        f"  {counts.labelled:,} snapshots labelled, {counts.positives:,} positive; left out "
        f"{counts.window_not_observed:,} not fully observed, {counts.in_pipeline:,} in "
        f"pipeline, {counts.customers:,} customers, {counts.outcome_open:,} still open",
    ]
    if isinstance(split, Folds):
        lines.append(
            f"  short-history mode, {split.folds} groups of accounts (no account in two): "
            f"{s['test_rows']:,} snapshots {s['test_as_of']} of {s['test_accounts']:,} "
            f"accounts, {s['test_positives']:,} positive, each scored by a model that never "
            "saw its account"
        )
        return lines
    for name, part in (("train", "train"), ("validation", "valid"), ("test", "test")):
        lines.append(
            f"  {name:<10} {s[f'{part}_as_of']}: {s[f'{part}_rows']:,} labelled, "
            f"{s[f'{part}_positives']:,} positive"
        )
    lines.append(
        f"  left out {s['decided_late']:,} labels decided only after the next window began"
    )
    return lines


class ForecastJob(_Job):
    """What ``inmarket train`` would get from a folder under the current settings, told before
    any event is counted (``inmarket validate``): labels need only the deals and the accounts'
    pipeline and customer status, so the snapshots are built without events, on the grid and
    with the rules training uses (short-history mode and its earlier start included)."""

    def __init__(self, events_report: ValidationReport, **sections: Any) -> None:
        super().__init__(**sections)
        self.events_report = events_report

    def features(
        self, data: Path, features_path: Path | None, start: pd.Timestamp | None = None
    ) -> tuple[pd.DataFrame, FeatureSpec, Dataset]:
        grid = {"every_days": self.train.every_days, "snapshots": None, "start": start}
        settings = self.feature_settings.model_copy(update=grid)
        plan = plan_build(data, self.data, settings)
        base = plan.base
        table = build_features(
            snapshot_grid(base.accounts, plan.as_ofs),
            base.accounts,
            base.people,
            empty_table("events"),
            base.intent,
            base.opportunities,
            settings,
            plan.categories,
            base.account_history,
        )
        return table, settings.spec(), base

    def lines(self, data: Path) -> list[str]:
        """The forecast in words: each window's labelled snapshots and positives, or why
        training is impossible and what to change."""
        tc = self.train
        head = (
            f"what `inmarket train` would get (label: {label_words(tc.label, tc.horizon_days)}; "
            f"snapshots every {tc.every_days} days):"
        )
        try:
            _, counts, split, _, _ = self.labelled(data, None)
        except (SplitError, ContractError) as exc:
            return [head, f"  training is not possible: {exc}"]
        lines = [head, *window_lines(counts, split)]
        lines += [f"  note: {w}" for w in self.grid_warnings]
        return lines
