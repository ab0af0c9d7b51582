"""Shared fixtures: small synthetic worlds made once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from features.engine import build_feature_table
from inmarket.config import Config, load_config
from inmarket.synthetic import CHUNK_ACCOUNTS, WorldSpec, generate_world
from training.job import TrainJob, TrainResult

# CI replays the same examples run after run, so a landing is never decided by chance;
# local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# two chunks, so chunked generation is exercised
WORLD_ACCOUNTS = CHUNK_ACCOUNTS + 500


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(WorldSpec(accounts=WORLD_ACCOUNTS, seed=11), out)
    return out


@pytest.fixture(scope="session")
def dirty_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dirty")
    generate_world(WorldSpec(accounts=WORLD_ACCOUNTS, seed=11, dirty=True), out)
    return out


def train_config(store: Path, **train: object) -> Config:
    return load_config(None, {"tracking": {"store": str(store)}, "train": train})


@pytest.fixture(scope="session")
def world_features(world_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train") / "features.parquet"
    build_feature_table(world_dir, out, every_days=14, snapshots=None)
    return out


@pytest.fixture(scope="session")
def trained(
    world_dir: Path, world_features: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, TrainResult]:
    """One store with one trained challenger, made once per session; tests copy it."""
    store = tmp_path_factory.mktemp("store") / "mlruns"
    result = TrainJob(train_config(store)).run(world_dir, world_features)
    return store, result


def copy_store(source: Path, target: Path) -> Path:
    """Copy an MLflow store; its SQLite file holds absolute artifact locations, which are
    pointed at the copy."""
    import shutil
    import sqlite3

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
