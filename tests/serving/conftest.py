"""The served store shared by the tests of a real server (tests/serving/test_service_*.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from features.settings import DataSettings, FeatureSettings
from serving.batch import score_batch
from tests.serving.server import Server
from tests.stores import client_of, copy_store
from training.job import TrainResult
from training.promotion import promote
from training.registry import load_model


@pytest.fixture(scope="session")
def served(
    trained: tuple[Path, TrainResult], world_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Path]]:
    """A store with a champion, a batch scoring, and a server on them."""
    root = tmp_path_factory.mktemp("served")
    store = copy_store(trained[0], root / "mlruns")
    client = client_of(store)
    promote(client, "inmarket")
    ranked = root / "ranked.parquet"
    score_batch(
        load_model("models:/inmarket@champion"),
        world_dir,
        ranked,
        DataSettings(),
        FeatureSettings(),
        model_uri=f"models:/inmarket/{trained[1].version}",
    )
    with Server(
        {
            "INMARKET_STORE": str(store),
            "INMARKET_RANKED": str(ranked),
            "INMARKET_RELOAD_SECONDS": "0",
            # short, so the tests of slow clients are quick
            "INMARKET_HEADER_SECONDS": "2",
            "INMARKET_BODY_SECONDS": "3",
        },
        root,
    ) as server:
        assert server.wait("/readyz").status_code == 200
        yield server, ranked
