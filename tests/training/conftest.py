"""Fixtures of the training tests: a client of a new store, a nine-month world and a model
trained on it."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.stores import client_of, copy_store, train_job
from training.job import TrainResult


@pytest.fixture
def client(new_store: Path) -> MlflowClient:
    return client_of(new_store)


@pytest.fixture(scope="session")
def nine_months(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from inmarket.synthetic import WorldSpec, generate_world

    world = tmp_path_factory.mktemp("nine_months")
    generate_world(WorldSpec(accounts=2500, seed=7, days=270), world)
    return world


@pytest.fixture(scope="session")
def nine_month_trained(
    nine_months: Path, empty_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, TrainResult, list[str]]:
    """A store with a short-history model of the nine-month world, the run and what training
    announced: made once, tests copy the store."""
    store = copy_store(empty_store, tmp_path_factory.mktemp("nine") / "mlruns")
    heard: list[str] = []
    result = train_job(store, bootstrap_rounds=200).run(nine_months, announce=heard.extend)
    return store, result, heard
