"""Batch scoring: the latest snapshot of every account, ranked, with trend, reasons and gaps.

``inmarket score DATA --out ranked.parquet`` builds the features of the newest snapshots (the
extract time and ``history - 1`` periods before it), scores them with the champion, and writes
one run (``serving.runs``: its own folder, published by replacing ``ranked.manifest.json``):

- ``ranked.parquet``, ``ranked.csv``: the newest snapshot of every account, ranked, with trend
  against the snapshot before, reasons and buying-group gaps (copied beside the manifest too);
- ``ranked.drift.json``: PSI of each feature against the model's training data, warnings
  above 0.2;
- ``ranked.history.parquet``: every account's score at every snapshot scored (the page's chart);
- ``ranked.activity.parquet``: weekly engagement by person of the 13 weeks before the newest
  snapshot (``features.activity``);
- ``ranked.opportunities.parquet``: the validated opportunities, open and past;
- ``ranked.people.parquet``: the people in the CRM, with name, email and owner where the
  export has them (the account view's contacts to reach);
- ``ranked.changes.json``: the accounts that moved up into in-market or ready since the run
  published before, and those that fell out (``serving.changes``; the list's ``change``,
  ``stage_before`` and ``score_before`` columns say the same per account).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.activity import weekly_activity
from features.engine import build_feature_table
from features.errors import ContractError
from features.io import write_csv_atomic, write_json_atomic
from features.leftovers import scratch_dir
from features.plan import load_small_tables
from features.settings import DataSettings, FeatureSettings
from features.sources import TableSource, open_source
from serving.changes import (
    CHANGE_COLUMNS,
    CHANGES,
    Baseline,
    changes_record,
    compare,
    previous_period,
)
from serving.runs import NewRun, new_run
from serving.scoring import (
    account_status,
    buying_group,
    explain_rows,
    score_and_stage,
    why_now,
)
from training.drift import PSI_WARNING, drift_report
from training.model import InMarketModel
from training.registry import parse_model_uri

RANKED_COLUMNS = (
    "rank",
    "account_id",
    "name",
    "domain",
    "owner",
    "industry",
    "region",
    "employee_band",
    "as_of",
    "score",
    "stage",
    "probability",
    "trend",
    "people_engaged_90d",
    "departments_engaged_90d",
    "high_intent_people_30d",
    "top_reasons",
    "reasons",
    "roles_engaged",
    "roles_missing",
    "buying_group_gap",
    "status",
    "model_version",
    "in_pipeline",
    "is_customer",
    "mql_points_max_90d",
    *CHANGE_COLUMNS,
)
# who the contacts to reach are: never features, shown beside the list (features.contract)
PEOPLE_COLUMNS = (
    "person_id",
    "account_id",
    "name",
    "email",
    "owner",
    "title",
    "department",
    "buying_role",
)
CELL_SEPARATOR = "; "  # a list in one CSV cell (roles, contacts): no comma, split on it to read
_ROW_NUMBER = "_row_number"  # carries each feature row's position through Spark


@dataclass
class BatchResult:
    """The ranked list written, the drift found against the model's training data, what to
    warn of, each worded to print (an export time long after the events end, drifted
    features), and what changed since the previous period (``serving.changes``)."""

    ranked: pd.DataFrame
    drift: dict[str, float]
    warnings: list[str]
    changes: dict[str, Any]


def rank_accounts(
    model: InMarketModel,
    features: pd.DataFrame,
    accounts: pd.DataFrame,
    history: pd.DataFrame,
    model_version: str | None = None,
    baseline: Baseline | None = None,
) -> pd.DataFrame:
    """Rank the prospects of the newest snapshot; trend against the one before, stage change
    against ``baseline`` (the previous period's list). Customers, accounts in pipeline and
    accounts new since the snapshot follow, with their status as stage and no score
    (``score_history`` holds the scores of every snapshot): every account of ``accounts`` is in
    the list once."""
    stamps = np.sort(features["as_of"].unique())
    is_latest = (features["as_of"] == stamps[-1]).to_numpy()
    latest = features[is_latest].reset_index(drop=True)
    now = history[history["as_of"] == stamps[-1]].set_index("account_id").loc[latest["account_id"]]
    now = now[["probability", "score", "stage"]].reset_index(drop=True)
    scored = pd.concat([latest, now], axis=1)
    scored["status"] = account_status(model, latest)
    prospect = (scored["status"] == "prospect").to_numpy()
    scored["stage"] = scored["stage"].where(prospect, scored["status"])
    if len(stamps) > 1:
        before = history[history["as_of"] == stamps[-2]].set_index("account_id")["score"]
        scored["trend"] = scored["score"] - scored["account_id"].map(before)
    else:
        scored["trend"] = float("nan")
    reasons: list[dict[str, list[dict[str, object]]]] = [
        {"positive": [], "negative": [], "unusual": []} for _ in range(len(latest))
    ]
    explained_prospects = explain_rows(model, latest[prospect])
    for i, explained in zip(np.flatnonzero(prospect), explained_prospects, strict=True):
        reasons[i] = explained
    scored["reasons"] = [json.dumps(e) for e in reasons]
    scored["top_reasons"] = [why_now(e) for e in reasons]
    scored = pd.concat([scored, buying_group(latest)], axis=1)
    info = accounts.set_index("account_id")[["name", "domain", "owner"]]
    info = info.reindex(scored["account_id"])
    for column in info.columns:
        scored[column] = info[column].to_numpy()
    scored["model_version"] = pd.Series(model_version, index=scored.index, dtype="str")
    # accounts created since the newest snapshot have no features yet: listed, never dropped
    new = accounts[~accounts["account_id"].isin(scored["account_id"])]
    if len(new):
        listed = new.reindex(columns=[c for c in scored.columns if c in new.columns]).assign(
            as_of=scored["as_of"].iloc[0] if len(scored) else pd.NaT,
            status="new",
            stage="new",
            reasons=json.dumps({"positive": [], "negative": [], "unusual": []}),
            top_reasons="",
            roles_engaged=[[] for _ in range(len(new))],
            roles_missing=[[] for _ in range(len(new))],
            buying_group_gap="",
            model_version=model_version,
        )
        scored = pd.concat([scored, listed], ignore_index=True)
    scored = compare(scored, baseline)
    # prospects by score; the others after them, by status and name, unranked
    order = {"prospect": 0, "in-pipeline": 1, "customer": 2, "new": 3}
    scored["_order"] = scored["status"].map(order)
    scored = scored.sort_values(
        ["_order", "score", "probability", "name"],
        ascending=[True, False, False, True],
        kind="stable",
        na_position="last",
    )
    n = int(prospect.sum())
    scored["rank"] = pd.array([*range(1, n + 1), *[None] * (len(scored) - n)], dtype="Int64")
    return scored[list(RANKED_COLUMNS)].reset_index(drop=True)


def spark_probabilities(
    features: pd.DataFrame, model_uri: str, feature_names: list[str], master: str
) -> np.ndarray:
    """The registered model's probability of every feature row, in row order, computed on Spark
    with ``mlflow.pyfunc.spark_udf``.

    The table is handed to Spark from the driver (Arrow), not read from a path, so on a real
    cluster the executors need no access to the driver's scratch space; MLflow ships the model
    to them the same way."""
    import mlflow.pyfunc
    from pyspark.sql import functions as F

    from features.spark import spark_session

    spark = spark_session(master)
    frame = features[feature_names].copy()
    for name in feature_names:  # Spark takes categories as their text
        if isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    frame.insert(0, _ROW_NUMBER, np.arange(len(frame), dtype="int64"))
    table = spark.createDataFrame(frame)
    # the executors run the model in their own Python (env_manager="local"): it must have
    # this package installed, like the feature engine's executors
    predict = mlflow.pyfunc.spark_udf(spark, model_uri, result_type="double", env_manager="local")
    scored = table.select(
        _ROW_NUMBER,
        predict(F.struct(*[F.col(name) for name in feature_names])).alias("probability"),
    ).toPandas()
    probability = np.full(len(frame), np.nan)
    probability[scored[_ROW_NUMBER].to_numpy()] = scored["probability"].to_numpy(dtype="float64")
    if np.isnan(probability).any() or len(scored) != len(frame):
        raise RuntimeError(
            f"Spark scoring returned {len(scored):,} probabilities for {len(frame):,} feature rows"
        )
    return probability


def score_history(
    model: InMarketModel, features: pd.DataFrame, probability: np.ndarray
) -> pd.DataFrame:
    """Every account's probability, score and stage at every snapshot of ``features``; none at
    the snapshots where it was a customer or in pipeline (outside the model's population)."""
    score, stage = score_and_stage(model, probability)
    prospect = account_status(model, features) == "prospect"
    history = features[["account_id", "as_of"]].assign(
        probability=np.where(prospect, probability, np.nan),
        score=pd.array(score, dtype="Int64"),
        stage=pd.Series(stage, dtype="str").where(prospect).to_numpy(),
    )
    history["score"] = history["score"].where(prospect)
    return history.sort_values(["account_id", "as_of"]).reset_index(drop=True)


def score_batch(
    model: InMarketModel,
    data: TableSource | Path,
    out: Path,
    data_settings: DataSettings,
    settings: FeatureSettings,
    *,
    history: int = 6,
    model_uri: str | None = None,
) -> BatchResult:
    """Build features, rank every account and write the ranked list and its side files.

    Refused, before any scoring and on either engine, when the export time came from the clock
    and every dated table ends long before it (``ValidationReport.check_export_time``, as in
    training); warned of when only the events do, or the export time was given.

    With the Spark engine the features are built on Spark and the probabilities computed by
    ``mlflow.pyfunc.spark_udf`` from ``model_uri`` (the model's reasons are still worked out
    here, for the newest snapshot only)."""
    # the grid and engine are the caller's; what the features are is the model's
    settings = settings.with_spec(model.spec).model_copy(update={"snapshots": max(2, history)})
    source = open_source(data, data_settings)
    with scratch_dir("score") as tmp:
        table = tmp / "features.parquet"
        build = build_feature_table(
            source, table, data_settings, settings, categories=model.category_levels
        )
        if lost := build.report.unreconciled():  # a row lost on the way: part of the data
            raise ContractError(lost)
        stale = build.report.check_export_time()  # the newest snapshot would see no engagement
        features = pd.read_parquet(table)
        if settings.engine == "spark":
            if model_uri is None:
                raise ValueError("Spark scoring needs the model's URI (models:/<name>/<version>)")
            probability = spark_probabilities(
                features, model_uri, model.features, settings.spark_master
            )
        else:
            probability = model.predict(features)
    tables = load_small_tables(source, data_settings)
    scores = score_history(model, features, probability)
    version = model_version_of(model_uri)
    latest = features[features["as_of"] == features["as_of"].max()]
    as_of = str(latest["as_of"].max())
    baseline, unchanged = previous_period(out, as_of)
    ranked = rank_accounts(model, features, tables.accounts, scores, version, baseline)
    changes = changes_record(ranked, as_of, baseline, unchanged)
    activity = weekly_activity(source, until=latest["as_of"].max(), settings=data_settings)
    # like with like: the model's training rows were prospects, so are the rows compared
    prospects = latest[account_status(model, latest) == "prospect"]
    drift = drift_report(prospects, model.info.get("reference", {}))
    drifted = [
        f"{name}: PSI {value:.2f} above {PSI_WARNING}"
        for name, value in drift.items()
        if value > PSI_WARNING
    ]
    with new_run(out) as run:
        scores.to_parquet(run.path("history.parquet"), index=False)
        activity.to_parquet(run.path("activity.parquet"), index=False)
        tables.opportunities.to_parquet(run.path("opportunities.parquet"), index=False)
        tables.people[list(PEOPLE_COLUMNS)].to_parquet(run.path("people.parquet"), index=False)
        write_ranked(ranked, run)
        drift_file = {"as_of": as_of, "model": model_uri, "psi": drift, "warnings": drifted}
        write_json_atomic(drift_file, run.path("drift.json"))
        write_json_atomic(changes, run.path(CHANGES))
        run.publish(
            {
                "model": model_uri,
                "model_version": version,
                "as_of": as_of,
                "written_at": pd.Timestamp.now("UTC").isoformat(timespec="microseconds"),
                "accounts": len(ranked),
                "prospects": int((ranked["status"] == "prospect").sum()),
            }
        )
    warnings = [*([stale] if stale else []), *(f"drift {warning}" for warning in drifted)]
    return BatchResult(ranked, drift, warnings, changes)


def model_version_of(model_uri: str | None) -> str | None:
    """The version in ``models:/<name>/<version>`` (None for another kind of URI)."""
    ref = parse_model_uri(model_uri) if model_uri else None
    return ref.version if ref and ref.version and ref.version.isdigit() else None


def write_ranked(ranked: pd.DataFrame, run: NewRun) -> None:
    """The run's list as Parquet and CSV side by side; roles ``; ``-joined in the CSV, every
    text cell inert (``features.io.csv_text``)."""
    ranked.to_parquet(run.path(), index=False)
    text = ranked.assign(
        roles_engaged=ranked["roles_engaged"].map(CELL_SEPARATOR.join),
        roles_missing=ranked["roles_missing"].map(CELL_SEPARATOR.join),
    ).drop(columns=["reasons"])
    write_csv_atomic(text, run.path().with_suffix(".csv"))
