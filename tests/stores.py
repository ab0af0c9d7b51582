"""MLflow stores for tests: a training job on a store, a client of it, and a cheap copy of one
made once per session (fmind/mlops-python-package's pattern)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from training.job import TrainJob
from training.registry import connect
from training.settings import TrackingSettings, TrainSettings

# what tests train by default: no ablation models and fewer bootstrap rounds (the session
# model trains with both, and its test checks them); any can be given
QUICK = {"ablations": False, "bootstrap_rounds": 100}


def train_job(store: Path, **train: Any) -> TrainJob:
    """A training job on ``store`` with the given train settings (``QUICK``, else defaults)."""
    return TrainJob(
        train=TrainSettings(**{**QUICK, **train}), tracking=TrackingSettings(store=store)
    )


def client_of(store: Path) -> MlflowClient:
    """A client of the store, which becomes MLflow's current store."""
    return connect(TrackingSettings(store=store))


def copy_store(source: Path, target: Path) -> Path:
    """Copy an MLflow store; its SQLite file holds absolute artifact locations, which are
    pointed at the copy."""
    shutil.copytree(source, target)
    old, new = (source.resolve() / "artifacts").as_uri(), (target.resolve() / "artifacts").as_uri()
    with sqlite3.connect(target / "mlflow.db") as con:
        for table, column in (
            ("experiments", "artifact_location"),
            ("runs", "artifact_uri"),
            ("model_versions", "source"),
            ("model_versions", "storage_location"),
            ("logged_models", "artifact_location"),
        ):
            con.execute(f"UPDATE {table} SET {column} = REPLACE({column}, ?, ?)", (old, new))
    return target


def experiment_id(client: MlflowClient) -> str:
    """The id of the store's experiment ``inmarket``."""
    found = client.get_experiment_by_name("inmarket")
    assert found is not None
    return str(found.experiment_id)
