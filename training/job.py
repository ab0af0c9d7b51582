"""The training and evaluation jobs: features -> labels -> time split -> model and baselines ->
evaluation -> one MLflow run -> a registered model version, then alias ``challenger`` once the
run has finished (``TrainJob``); any registered version re-scored on any data (``EvaluateJob``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import mlflow
import numpy as np
import pandas as pd

from features.catalogue import catalogue
from features.engine import build_feature_table, read_feature_table
from features.errors import ConfigError, ContractError
from features.io import sidecar
from features.leftovers import scratch_dir
from features.plan import load_small_tables
from features.report import ValidationReport
from features.settings import DataSettings, FeatureSettings, FeatureSpec
from features.sources import TableSource, open_source
from features.validation import Dataset
from training.baselines import fit_baselines
from training.drift import reference_bins
from training.evaluation import (
    Evaluation,
    cross_validate,
    evaluate,
    evaluate_methods,
    fit_ablations,
    out_of_fold_baselines,
    score_methods,
    shuffled,
)
from training.labels import LabelCounts, label_words, ranked_population, undated_outcomes
from training.model import LABEL, InMarketModel, fit_model
from training.promotion import other_dataset_warning, unseen_by
from training.registry import (
    connect,
    discard_version,
    load_model,
    owner_tags,
    reaching,
    shown_uri,
    version_uri,
)
from training.settings import PromotionSettings, TrackingSettings, TrainSettings
from training.split import (
    SHORT_MIN_EVENT_DAYS,
    Folds,
    Split,
    SplitError,
    label_and_split,
    window_lines,
)
from training.tracking import (
    data_fingerprint,
    log_run,
    make_challenger,
    owned_temporary_files,
    register_model,
    run_description,
    run_name,
)


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


def _require_usable(report: ValidationReport | None) -> None:
    """A model of a world without events would rank by fit and deals alone, under the name of
    buying-group engagement, and one of a build that lost rows on the way on part of the data:
    both refused before any run is made."""
    why = report and (report.without_events() or report.unreconciled())
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


class _Logged(NamedTuple):
    """What a training run logs besides its settings: the tables' source, the model, its split
    and evaluation, the label counts, the labelled rows and their fingerprint."""

    source: TableSource
    model: InMarketModel
    split: Split | Folds
    evaluation: Evaluation
    counts: LabelCounts
    labelled: pd.DataFrame
    fingerprint: str


class Job:
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

    def training_grid(self, start: pd.Timestamp | None) -> FeatureSettings:
        """The feature settings of training: every ``train.every_days`` over all history (from
        ``start`` if given), the features and engine as configured."""
        grid = {"every_days": self.train.every_days, "snapshots": None, "start": start}
        return self.feature_settings.model_copy(update=grid)

    def features(
        self, data: TableSource, features_path: Path | None, start: pd.Timestamp | None = None
    ) -> tuple[pd.DataFrame, FeatureSpec, Dataset]:
        """The feature table (read, or built from ``data``, its snapshots from ``start`` if
        given), the specification it was built with, and the validated small tables. Refused
        when no event could be used."""
        tables = load_small_tables(data, self.data)
        if features_path is not None:
            self.events_report = _report_beside(features_path)
            _require_usable(self.events_report)
            return *read_feature_table(features_path), tables
        with scratch_dir("train") as tmp:
            out = tmp / "features.parquet"
            build = build_feature_table(data, out, self.data, self.training_grid(start))
            _require_usable(build.report)
            self.grid_warnings, self.events_report = build.warnings, build.report
            return *read_feature_table(out), tables

    def labelled(self, data: TableSource, features_path: Path | None) -> Labelled:
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


class TrainJob(Job):
    """``inmarket train``: everything from tables (or a feature file) to a challenger."""

    def run(
        self,
        data: TableSource | Path,
        features_path: Path | None = None,
        announce: Callable[[list[str]], None] | None = None,
    ) -> TrainResult:
        """Train, evaluate and register; ``announce`` hears the history and each window's
        counts as soon as they are known, before any model is fitted."""
        tc = self.train
        source = open_source(data, self.data)
        labelled, counts, split, spec, dataset = self.labelled(source, features_path)
        if announce is not None:
            announce(
                [
                    *self.history,
                    f"labels ({label_words(tc.label, tc.horizon_days)}; snapshots every "
                    f"{tc.every_days} days):",
                    *window_lines(counts, split),
                ]
            )
        model, evaluation = self._fit(split, spec, dataset.opportunities)
        model.info.update(self._model_info(model, split, evaluation, spec))
        fingerprint = data_fingerprint(labelled)
        warnings = [*self.grid_warnings, *static_column_warnings(spec)]
        logged = _Logged(source, model, split, evaluation, counts, labelled, fingerprint)
        run_id, version = self._record(logged, dataset.report, warnings)
        return TrainResult(
            run_id,
            version,
            version_uri(self.tracking.model_name, version),
            evaluation,
            counts,
            split.describe(),
            fingerprint,
            dataset.report.column_notes(spec.columns),
            warnings,
        )

    def _record(
        self, logged: _Logged, report: ValidationReport, warnings: list[str]
    ) -> tuple[str, str]:
        """One MLflow run and a model version, then the ``challenger`` alias, last: (run id,
        version); ``warnings`` gains a champion trained on another dataset. A failure on the
        way (a tracking server gone: ``TrackingUnreachable``) deletes the version if one was
        registered and leaves the alias where it was (``discard_version`` says what becomes of
        a version the server could not delete)."""
        tc, name = self.train, self.tracking.model_name
        client = connect(self.tracking)
        dataset_name = self.tracking.project or logged.source.name
        split, evaluation = logged.split, logged.evaluation
        described = run_description(logged.source, split, evaluation, logged.counts, report, tc)
        version: str | None = None
        try:
            with (
                reaching(client.tracking_uri),
                owned_temporary_files("train"),
                mlflow.start_run(
                    run_name=run_name(dataset_name, tc, report.extracted_at),
                    description=described,
                    tags={**owner_tags(), "dataset": dataset_name},
                ) as run,
            ):
                log_run(config=self._config(), settings=tc, **logged._asdict())
                warnings += other_dataset_warning(client, name, split.test, self.promotion)
                if warnings:
                    mlflow.set_tag("warnings", " | ".join(warnings))
                version = register_model(client, name, logged.model, split.test)
            with reaching(client.tracking_uri):
                make_challenger(client, name, version)
        except BaseException:
            if version is not None:
                discard_version(client, name, version)
            raise
        return run.info.run_id, version

    def _fit(
        self, split: Split | Folds, spec: FeatureSpec, opportunities: pd.DataFrame
    ) -> tuple[InMarketModel, Evaluation]:
        """The model, and its evaluation beside the ablations and baselines: on the test
        window, or in short-history mode cross-validated over groups of accounts."""
        tc = self.train
        train, valid = shuffled(split.train, split.valid, tc)
        model = fit_model(train, valid, seed=tc.seed, params=tc.lightgbm, spec=spec)
        if isinstance(split, Folds):
            return model, cross_validate(split, spec, opportunities, tc)
        ablations = fit_ablations(train, valid, model.features, tc, spec)
        baselines = fit_baselines(train, valid, seed=tc.seed)
        return model, evaluate(model, baselines, split.test, opportunities, tc, ablations)

    def _model_info(
        self,
        model: InMarketModel,
        split: Split | Folds,
        evaluation: Evaluation,
        spec: FeatureSpec,
    ) -> dict[str, Any]:
        """What the model carries besides its booster: its measures, the question it answers,
        the rows it was fitted on, its drift reference and what its score is a percentile of."""
        tc = self.train
        reference = _score_reference(model, split, evaluation, self.newest)
        return {
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
            "score_quantiles": np.quantile(reference, np.linspace(0, 1, 101)).tolist(),
            "label": tc.label,
            "include_customers": tc.include_customers,
            "evaluation": split.describe()["evaluation"],  # grouped_cv: a short history
            "feature_sources": {
                f.name: f.source for f in catalogue(spec) if f.name in model.features
            },
        }

    def _config(self) -> dict[str, Any]:
        """The settings sections this run used, as JSON."""
        sections = {
            "data": self.data,
            "features": self.feature_settings,
            "train": self.train,
            "tracking": self.tracking,
        }
        config = {name: json.loads(s.model_dump_json()) for name, s in sections.items()}
        if self.tracking.uri:  # a password or token in it is not for every reader of the run
            config["tracking"]["uri"] = shown_uri(self.tracking.uri)
        return config


class EvaluateJob(Job):
    """``inmarket evaluate``: re-score any registered version on any data."""

    def run(
        self, model_uri: str, data: TableSource | Path, features_path: Path | None = None
    ) -> Evaluation:
        connect(self.tracking)
        model = load_model(model_uri)
        # the model's features, never the current config's
        self.feature_settings = self.feature_settings.with_spec(model.spec)
        source = open_source(data, self.data)
        labelled = self.labelled(source, features_path)
        if labelled.spec != model.spec:
            raise ConfigError(
                f"{features_path}: built with {labelled.spec.model_dump()}, but {model_uri} "
                f"was trained on {model.spec.model_dump()}; leave --features out (features are "
                "then built with the model's specification) or build them with it"
            )
        split, dataset = labelled.split, labelled.dataset
        if isinstance(split, Folds):  # the baselines out of fold, like training measures them
            scores, probabilities = out_of_fold_baselines(split, self.train)
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
                f"of {len(rows):,} labelled test snapshots of {source.uri}, too few come later by "
                "more than its label horizon to measure it; evaluate it on a later export"
            )
        return evaluate_methods(
            {n: v[keep] for n, v in scores.items()},
            {n: v[keep] for n, v in probabilities.items()},
            rows[keep],
            dataset.opportunities,
            self.train,
        )
