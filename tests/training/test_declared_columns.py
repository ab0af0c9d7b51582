"""Account columns beyond the contract: ignored unless declared; a static one is used as the
export says (and the run warned), a dated one point in time from account_history."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from features.engine import build_feature_table
from features.settings import DataSettings, FeatureSettings
from features.validation import load_dataset
from tests.stores import client_of, train_job

pytestmark = pytest.mark.slow
GRID = {"every_days": 14, "snapshots": None}


@pytest.fixture(scope="module")
def leaky_world(world_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session world, its accounts carrying the CRM's lifecycle stage as exported: 'customer'
    for every account that ever won a deal, which is the outcome itself. Its history (the stage
    became 'customer' when the first deal was won) is in account_history."""
    out = tmp_path_factory.mktemp("leaky")
    for path in world_dir.iterdir():
        if path.is_file():
            shutil.copy(path, out / path.name)
    accounts = pd.read_parquet(world_dir / "accounts.parquet")
    deals = pd.read_parquet(world_dir / "opportunities.parquet")
    won = deals[deals["status"] == "won"].groupby("account_id")["closed_at"].min()
    accounts["lifecycle_stage"] = (
        accounts["account_id"].isin(won.index).map({True: "customer", False: "prospect"})
    )
    accounts.to_parquet(out / "accounts.parquet", index=False)
    first = accounts[["account_id", "created_at"]].assign(field="lifecycle_stage", value="prospect")
    # (some accounts entered the CRM after their first win: they were never a prospect in it)
    first = first[~(first["created_at"] >= first["account_id"].map(won))]
    became = (
        won.rename("valid_from").reset_index().assign(field="lifecycle_stage", value="customer")
    )
    history = pd.concat([first.rename(columns={"created_at": "valid_from"}), became])
    history[["account_id", "field", "value", "valid_from"]].to_parquet(
        out / "account_history.parquet", index=False
    )
    return out


def _train(world: Path, store: Path, columns: dict[str, str]):  # type: ignore[no-untyped-def]
    features = store.parent / "features.parquet"
    build_feature_table(world, features, DataSettings(), FeatureSettings(**GRID, columns=columns))
    return pd.read_parquet(features), train_job(store).run(world, features)


def test_an_undeclared_column_is_ignored_and_said_so(leaky_world: Path, new_store: Path) -> None:
    # given a world whose accounts carry an export-time column that encodes the outcome
    report = load_dataset(leaky_world, DataSettings()).report
    # when it is validated and trained on with the default settings
    notes = report.column_notes({})
    features, result = _train(leaky_world, new_store, {})
    # then the column is listed as ignored, is no feature, and the run carries no warning
    assert any(n.startswith("accounts.lifecycle_stage: ignored") for n in notes)
    assert any(c.startswith("accounts.lifecycle_stage: ignored") for c in result.columns)
    assert "lifecycle_stage" not in features.columns
    assert result.warnings == []
    assert result.evaluation.metrics["model"]["roc_auc"] < 0.97


def test_a_static_column_is_used_and_the_run_warned(leaky_world: Path, new_store: Path) -> None:
    # given the same world, the column declared static
    # when it is trained on
    features, result = _train(leaky_world, new_store, {"lifecycle_stage": "static"})
    # then the column is a feature, the model leans on it (the leak is real), and the MLflow run
    # is tagged with a warning naming it
    assert "lifecycle_stage" in features.columns
    assert result.evaluation.metrics["model"]["roc_auc"] > 0.97
    tags = client_of(new_store).get_run(result.run_id).data.tags
    assert "lifecycle_stage" in tags["warnings"] and "static" in tags["warnings"]
    assert any("used as a feature (declared static)" in c for c in result.columns)


def test_a_dated_column_is_taken_point_in_time(leaky_world: Path, new_store: Path) -> None:
    # given the same column declared dated, its history in account_history
    # when it is trained on
    features, result = _train(leaky_world, new_store, {"lifecycle_stage": "dated"})
    # then each snapshot sees the stage of its own day: 'customer' only after the first win,
    # so the outcome no longer leaks and the run carries no warning
    deals = pd.read_parquet(leaky_world / "opportunities.parquet")
    won = deals[deals["status"] == "won"].groupby("account_id")["closed_at"].min()
    first_win = features["account_id"].map(won)
    customer = features["lifecycle_stage"].astype("str") == "customer"
    assert (customer == (first_win < features["as_of"])).all()
    assert customer.any() and (~customer).any()
    assert result.warnings == []
    assert result.evaluation.metrics["model"]["roc_auc"] < 0.97
