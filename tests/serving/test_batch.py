"""Batch scoring: ranked accounts, trend, reasons, gaps, drift, CSV, atomic writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.settings import DataSettings, FeatureSettings
from serving.batch import RANKED_COLUMNS, score_batch
from tests.stores import client_of
from training.drift import drift_report, psi, reference_bins
from training.job import TrainResult
from training.registry import load_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ranked(
    trained: tuple[Path, TrainResult], world_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, pd.DataFrame]:
    store, result = trained
    client_of(store)
    out = tmp_path_factory.mktemp("ranked") / "ranked.parquet"
    score_batch(
        load_model(result.model_uri),
        world_dir,
        out,
        DataSettings(),
        FeatureSettings(),
        model_uri=result.model_uri,
    )
    return out, pd.read_parquet(out)


def test_every_account_once_ranked_by_score(
    ranked: tuple[Path, pd.DataFrame], world_dir: Path
) -> None:
    _, table = ranked
    accounts = pd.read_parquet(world_dir / "accounts.parquet")
    assert sorted(table["account_id"]) == sorted(accounts["account_id"])
    assert list(table.columns) == list(RANKED_COLUMNS)
    assert (np.diff(table["score"].to_numpy()) <= 0).all()
    assert table["rank"].tolist() == list(range(1, len(table) + 1))
    assert table["as_of"].nunique() == 1
    assert table["trend"].notna().mean() > 0.9


def test_reasons_and_gaps_are_filled(ranked: tuple[Path, pd.DataFrame]) -> None:
    _, table = ranked
    top = table.head(20)
    assert (top["top_reasons"].str.len() > 0).all()
    reasons = json.loads(top["reasons"].iloc[0])
    assert set(reasons) == {"positive", "negative"}
    assert top["buying_group_gap"].str.len().gt(0).all()


def test_csv_and_drift_beside_the_table(ranked: tuple[Path, pd.DataFrame]) -> None:
    out, table = ranked
    csv = pd.read_csv(out.with_suffix(".csv"))
    assert len(csv) == len(table) and "reasons" not in csv.columns
    drift = json.loads(out.with_name("ranked.drift.json").read_text())
    assert drift["psi"] and all(value >= 0 for value in drift["psi"].values())
    assert all("PSI" in w for w in drift["warnings"])
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_psi_is_zero_for_the_same_population_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    train = pd.DataFrame(
        {"x": rng.normal(0, 1, 5000), "c": pd.Categorical(rng.choice(["a", "b"], 5000))}
    )
    reference = reference_bins(train, ["x", "c"])
    same = drift_report(train, reference)
    assert same["x"] < 0.01 and same["c"] < 0.01
    shifted = drift_report(train.assign(x=train["x"] + 2), reference)
    assert shifted["x"] > 0.2
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0


def test_cli_score_needs_a_champion(tmp_path: Path, world_dir: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "inmarket.cli",
            "score",
            str(world_dir),
            "--store",
            str(tmp_path / "empty"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "cannot load models:/inmarket@champion" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.spark
def test_spark_scoring_equals_local_scoring(
    trained: tuple[Path, TrainResult],
    world_dir: Path,
    ranked: tuple[Path, pd.DataFrame],
    tmp_path: Path,
) -> None:
    """`inmarket score --engine spark`: features on Spark (local mode), probabilities from
    mlflow.pyfunc.spark_udf; every probability within 1e-9 of local scoring, same ranking."""
    store, result = trained
    client_of(store)
    out = tmp_path / "ranked.parquet"
    score_batch(
        load_model(result.model_uri),
        world_dir,
        out,
        DataSettings(),
        FeatureSettings(engine="spark", spark_master="local[2]"),
        model_uri=result.model_uri,
    )
    local_out, local = ranked
    spark = pd.read_parquet(out)
    assert spark["account_id"].tolist() == local["account_id"].tolist()
    np.testing.assert_allclose(spark["probability"], local["probability"], rtol=0, atol=1e-9)
    assert spark["score"].tolist() == local["score"].tolist()
    assert spark["reasons"].tolist() == local["reasons"].tolist()
    history = pd.read_parquet(out.with_name("ranked.history.parquet"))
    local_history = pd.read_parquet(local_out.with_name("ranked.history.parquet"))
    assert len(history) == len(local_history) > len(local)
    np.testing.assert_allclose(
        history["probability"], local_history["probability"], rtol=0, atol=1e-9
    )
