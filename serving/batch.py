"""Batch scoring: the latest snapshot of every account, ranked, with trend, reasons and gaps.

``inmarket score DATA --out ranked.parquet`` builds the features of the newest snapshots (the
extract time and ``history - 1`` periods before it), scores them with the champion, and writes,
each atomically:

- ``ranked.parquet``, ``ranked.csv``: the newest snapshot of every account, ranked, with trend
  against the snapshot before, reasons and buying-group gaps;
- ``ranked.drift.json``: PSI of each feature against the model's training data, warnings
  above 0.2;
- ``ranked.history.parquet``: every account's score at every snapshot scored (the page's chart);
- ``ranked.activity.parquet``: weekly engagement by person of the 13 weeks before the newest
  snapshot (``features.activity``);
- ``ranked.opportunities.parquet``: the validated opportunities, open and past.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.activity import weekly_activity
from features.engine import build_feature_table, load_small_tables
from features.io import sidecar, write_atomic, write_json_atomic, write_parquet_atomic
from features.settings import DataSettings, FeatureSettings
from serving.scoring import buying_group, explain_rows, score_and_stage
from training.drift import PSI_WARNING, drift_report
from training.model import InMarketModel

RANKED_COLUMNS = (
    "rank",
    "account_id",
    "name",
    "domain",
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
    "in_pipeline",
    "is_customer",
    "mql_points_max_90d",
)
_ROW_NUMBER = "_row_number"  # carries each feature row's position through Spark


@dataclass
class BatchResult:
    """The ranked list written, and the drift found against the model's training data."""

    ranked: pd.DataFrame
    drift: dict[str, float]
    warnings: list[str]


def rank_accounts(
    model: InMarketModel,
    features: pd.DataFrame,
    accounts: pd.DataFrame,
    probability: np.ndarray | None = None,
) -> pd.DataFrame:
    """Rank the newest snapshot of each account; trend against the one before.

    ``probability`` holds the model's probability of every row of ``features`` when it was
    computed elsewhere (Spark); by default the model computes it here."""
    if probability is None:
        probability = model.predict(features)
    score, stage = score_and_stage(model, probability)
    stamps = np.sort(features["as_of"].unique())
    is_latest = (features["as_of"] == stamps[-1]).to_numpy()
    latest = features[is_latest].reset_index(drop=True)
    scored = latest.assign(
        probability=probability[is_latest], score=score[is_latest], stage=stage[is_latest]
    )
    if len(stamps) > 1:
        is_before = (features["as_of"] == stamps[-2]).to_numpy()
        previous = pd.Series(score[is_before], index=features["account_id"][is_before].to_numpy())
        scored["trend"] = scored["score"] - scored["account_id"].map(previous)
    else:
        scored["trend"] = float("nan")
    explained = explain_rows(model, latest)
    scored["reasons"] = [json.dumps(e) for e in explained]
    scored["top_reasons"] = ["; ".join(str(r["text"]) for r in e["positive"]) for e in explained]
    scored = pd.concat([scored, buying_group(latest)], axis=1)
    info = accounts.set_index("account_id")[["name", "domain"]].reindex(scored["account_id"])
    scored["name"] = info["name"].to_numpy()
    scored["domain"] = info["domain"].to_numpy()
    scored = scored.sort_values(["score", "probability"], ascending=False, kind="stable")
    scored["rank"] = range(1, len(scored) + 1)
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
    """Every account's probability, score and stage at every snapshot of ``features``."""
    score, stage = score_and_stage(model, probability)
    history = features[["account_id", "as_of"]].assign(
        probability=probability, score=score, stage=stage
    )
    return history.sort_values(["account_id", "as_of"]).reset_index(drop=True)


def score_batch(
    model: InMarketModel,
    data: Path,
    out: Path,
    data_settings: DataSettings,
    settings: FeatureSettings,
    *,
    history: int = 6,
    model_uri: str | None = None,
) -> BatchResult:
    """Build features, rank every account and write the ranked list and its side files.

    With the Spark engine the features are built on Spark and the probabilities computed by
    ``mlflow.pyfunc.spark_udf`` from ``model_uri`` (the model's reasons are still worked out
    here, for the newest snapshot only)."""
    # the grid and engine are the caller's; what the features are is the model's
    settings = settings.with_spec(model.spec).model_copy(update={"snapshots": max(2, history)})
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "features.parquet"
        build_feature_table(data, table, data_settings, settings, categories=model.category_levels)
        features = pd.read_parquet(table)
        if settings.engine == "spark":
            if model_uri is None:
                raise ValueError("Spark scoring needs the model's URI (models:/<name>/<version>)")
            probability = spark_probabilities(
                features, model_uri, model.features, settings.spark_master
            )
        else:
            probability = model.predict(features)
    tables = load_small_tables(Path(data), data_settings)
    ranked = rank_accounts(model, features, tables.accounts, probability)
    latest = features[features["as_of"] == features["as_of"].max()]
    history_rows = score_history(model, features, probability)
    write_parquet_atomic(history_rows, sidecar(out, "history.parquet"))
    activity = weekly_activity(data, until=latest["as_of"].max(), settings=data_settings)
    write_parquet_atomic(activity, sidecar(out, "activity.parquet"))
    write_parquet_atomic(tables.opportunities, sidecar(out, "opportunities.parquet"))
    drift = drift_report(latest, model.info.get("reference", {}))
    warnings = [
        f"{name}: PSI {value:.2f} above {PSI_WARNING}"
        for name, value in drift.items()
        if value > PSI_WARNING
    ]
    write_ranked(ranked, out)
    write_json_atomic(
        {
            "as_of": str(latest["as_of"].max()),
            "model": model_uri,
            "psi": drift,
            "warnings": warnings,
        },
        sidecar(out, "drift.json"),
    )
    return BatchResult(ranked, drift, warnings)


def write_ranked(ranked: pd.DataFrame, out: Path) -> None:
    """Parquet and CSV side by side, each written atomically."""
    write_parquet_atomic(ranked, out)
    text = ranked.assign(
        roles_engaged=ranked["roles_engaged"].map(" ".join),
        roles_missing=ranked["roles_missing"].map(" ".join),
    ).drop(columns=["reasons"])
    write_atomic(out.with_suffix(".csv"), lambda tmp: text.to_csv(tmp, index=False))
