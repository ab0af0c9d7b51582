"""Fixtures of the training tests: an empty store made once and copied, and a nine-month
world."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.stores import client_of, copy_store


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the experiment and nothing else, made once (creating its tables is slow)."""
    store = tmp_path_factory.mktemp("empty") / "mlruns"
    client_of(store)
    return store


@pytest.fixture
def client(empty_store: Path, tmp_path: Path) -> MlflowClient:
    return client_of(copy_store(empty_store, tmp_path / "mlruns"))


@pytest.fixture(scope="session")
def nine_months(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from inmarket.synthetic import WorldSpec, generate_world

    world = tmp_path_factory.mktemp("nine_months")
    generate_world(WorldSpec(accounts=2500, seed=7, days=270), world)
    return world
