"""Fixtures of the training tests: a client of a new store, and a nine-month world."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.stores import client_of


@pytest.fixture
def client(new_store: Path) -> MlflowClient:
    return client_of(new_store)


@pytest.fixture(scope="session")
def nine_months(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from inmarket.synthetic import WorldSpec, generate_world

    world = tmp_path_factory.mktemp("nine_months")
    generate_world(WorldSpec(accounts=2500, seed=7, days=270), world)
    return world
