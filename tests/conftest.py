"""Shared fixtures: small synthetic worlds made once per test session."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from features.engine import build_feature_table
from features.settings import DataSettings, FeatureSettings
from inmarket.crm_example import crm_export
from inmarket.synthetic import WorldSpec, generate_world
from tests.stores import train_job
from tests.tracking_server import Postgres, TrackingServer
from tests.worlds import WORLD_ACCOUNTS, WORLD_SEED, WORLD_SPEC
from training.job import TrainResult

# CI replays the same examples run after run, so a landing is never decided by chance;
# local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(WorldSpec(accounts=WORLD_ACCOUNTS, seed=WORLD_SEED), out)
    return out


@pytest.fixture(scope="session")
def dirty_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dirty")
    generate_world(WorldSpec(accounts=WORLD_ACCOUNTS, seed=WORLD_SEED, dirty=True), out)
    return out


@pytest.fixture(scope="session")
def crm_dir(world_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The clean world as a CRM-shaped export, read through the shipped mapping file."""
    out = tmp_path_factory.mktemp("crm")
    crm_export(world_dir, out, seed=1)
    return out


@pytest.fixture(scope="session")
def world_features(world_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train") / "features.parquet"
    settings = FeatureSettings(every_days=14, snapshots=None).with_spec(WORLD_SPEC)
    build_feature_table(world_dir, out, DataSettings(), settings)
    return out


@pytest.fixture(scope="session")
def trained(
    world_dir: Path, world_features: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, TrainResult]:
    """One store with one trained challenger, made once per session; tests copy it."""
    store = tmp_path_factory.mktemp("store") / "mlruns"
    result = train_job(store, ablations=True, bootstrap_rounds=500).run(world_dir, world_features)
    return store, result


@pytest.fixture(scope="session", autouse=True)
def _no_tracking_uri_from_the_shell() -> Iterator[None]:
    """Each test names its store or tracking server: a MLFLOW_TRACKING_URI left in the shell
    would send the runs of every test without a URI to that server."""
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    if saved is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL 15 cluster for the session: ``url(database)``, ``create_database(name)``."""
    cluster = Postgres()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def tracking_server(
    postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrackingServer]:
    """The session's `mlflow server` on PostgreSQL, artifacts proxied (``tracking_server.uri``).
    Tests share it: each names its own model (``[tracking] project``); a test that kills a
    server starts its own (``start_tracking_server``)."""
    server = TrackingServer(postgres, tmp_path_factory.mktemp("tracking"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def start_tracking_server(
    postgres: Postgres, tmp_path: Path
) -> Iterator[Callable[[], TrackingServer]]:
    """Starts a tracking server of the test's own (a new database of the session's PostgreSQL,
    its own artifacts), for a test that kills or restarts it; all are stopped after the test."""
    started: list[TrackingServer] = []

    def start() -> TrackingServer:
        started.append(TrackingServer(postgres, tmp_path))
        return started[-1].start()

    yield start
    for server in started:
        server.stop()
