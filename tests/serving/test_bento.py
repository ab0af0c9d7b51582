"""The service as a Bento: ``bentoml build`` snapshots the champion into it (its labels name the
model), ``bentoml serve <tag>`` run outside the checkout with no store serves that snapshot with
the scores ``inmarket serve`` gives, and a build with no champion is refused in one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from serving.bento import ChampionSnapshot, Snapshot, SnapshotLabels
from tests.serving.server import Server, feature_records
from tests.stores import client_of, copy_store
from training.job import TrainResult
from training.promotion import promote

ROOT = Path(__file__).resolve().parents[2]
BENTOML = str(Path(sys.executable).with_name("bentoml"))
# what the shell of a team serving the Bento has not: a store, a tracking server, this checkout
_NOT_SET = {
    name: ""  # an empty variable is an unset one, to the service and to Python alike
    for name in (
        "INMARKET_STORE",
        "INMARKET_TRACKING_URI",
        "MLFLOW_TRACKING_URI",
        "INMARKET_MODEL",
        "INMARKET_MODEL_NAME",
        "PYTHONPATH",
    )
}


@dataclass(frozen=True)
class Built:
    tag: str
    home: Path  # the BENTOML_HOME holding it
    champion: TrainResult  # the model it was built on
    seconds: float


def _build(home: Path, store: Path) -> subprocess.CompletedProcess[str]:
    """``bentoml build`` in the checkout, on ``store`` as a user names it."""
    env = {**os.environ, **_NOT_SET, "BENTOML_HOME": str(home), "INMARKET_STORE": str(store)}
    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")  # the code under test is built
    return subprocess.run(
        [BENTOML, "build", "--output", "tag"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def bento(trained: tuple[Path, TrainResult], tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The Bento built on a store whose champion is the session's model."""
    root = tmp_path_factory.mktemp("bento")
    store = copy_store(trained[0], root / "mlruns")
    promote(client_of(store), "inmarket")
    started = time.monotonic()
    built = _build(root / "bentoml", store)
    seconds = time.monotonic() - started
    assert built.returncode == 0, built.stderr[-3000:]
    found = re.search(r"__tag__:(\S+)", built.stdout)
    assert found, built.stdout[-2000:]
    return Built(found[1], root / "bentoml", trained[1], seconds)


def _probabilities(answer: dict[str, Any]) -> np.ndarray:
    return np.array([result["probability"] for result in answer["results"]])


@pytest.mark.slow
def test_the_bento_names_the_model_it_was_built_with(bento: Built) -> None:
    # when the Bento is shown as `bentoml get` shows it
    shown = subprocess.run(
        [BENTOML, "get", bento.tag, "-o", "json"],
        env={**os.environ, "BENTOML_HOME": str(bento.home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    # then its labels name the champion's name, version, training run and data fingerprint
    assert shown.returncode == 0, shown.stderr[-2000:]
    labels = json.loads(shown.stdout)["labels"]
    result = bento.champion
    assert labels["model_name"] == "inmarket"
    assert labels["model_version"] == result.version
    assert labels["run_id"] == result.run_id
    assert labels["data_fingerprint"] == result.fingerprint
    assert labels["project"] == "inmarket"  # bentofile.yaml's own label is kept


@pytest.mark.slow
def test_the_bento_holds_every_file_the_service_reads(bento: Built) -> None:
    """Found in review: the venv's editable install finds in the checkout any module a Bento
    lacks, so serving it outside the checkout alone cannot show the Bento is whole."""
    # given the Bento's own copy of the code
    name, version = bento.tag.split(":")
    src = bento.home / "bentos" / name / version / "src"
    packed = {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()}
    # then it holds every module of the four packages, the page and the data files they read
    wanted = [p for d in ("features", "training", "serving") for p in (ROOT / d).rglob("*")]
    wanted += list((ROOT / "inmarket").rglob("*.py"))
    needed = {
        p.relative_to(ROOT).as_posix()
        for p in wanted
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert needed - packed == set()


@pytest.mark.slow
def test_the_bento_serves_its_snapshot_outside_the_checkout(
    bento: Built, served: tuple[Server, Path], world_features: Path, tmp_path: Path
) -> None:
    # given `bentoml serve <tag>` run in a folder of its own, with no store, no tracking URI
    # and not this checkout on the path; and `inmarket serve`'s server on the same model
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    records = feature_records(world_features, 50)
    with Server(
        {**_NOT_SET, "BENTOML_HOME": str(bento.home)},
        tmp_path,
        lambda port: [BENTOML, "serve", bento.tag, "--port", str(port)],
        workdir=elsewhere,
    ) as server:
        # when it is asked whether it is ready, what it serves, and to score fifty accounts
        ready = server.wait("/readyz")
        card = httpx.get(server.url + "/v1/model", timeout=30)
        ours = httpx.post(server.url + "/v1/score", json={"records": records}, timeout=60)
    theirs = httpx.post(served[0].url + "/v1/score", json={"records": records}, timeout=60)
    # then it serves the snapshot it was built with, says so, and scores as `inmarket serve`
    assert ready.status_code == 200, ready.text
    assert "bento" in ready.text
    assert card.status_code == 200, card.text
    source = card.json()["source"]
    assert card.json()["version"] == bento.champion.version
    assert source["kind"] == "bento" and source["bento"] == bento.tag
    assert source["run_id"] == bento.champion.run_id
    assert ours.status_code == 200 and theirs.status_code == 200, (ours.text, theirs.text)
    mine, same_model = ours.json(), theirs.json()
    np.testing.assert_allclose(_probabilities(mine), _probabilities(same_model), rtol=0, atol=1e-9)
    assert [r["stage"] for r in mine["results"]] == [r["stage"] for r in same_model["results"]]
    assert not list(elsewhere.iterdir())  # and it left nothing there (no store made)


@pytest.mark.slow
def test_a_build_without_a_champion_is_refused_in_one_line(
    trained: tuple[Path, TrainResult], tmp_path: Path
) -> None:
    # given a store with a trained model that was never promoted
    store = copy_store(trained[0], tmp_path / "mlruns")
    # when a Bento is built on it
    refused = _build(tmp_path / "bentoml", store)
    # then the build fails saying, in one line, to train and promote first; nothing is built
    assert refused.returncode != 0
    said = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(said) == 1, refused.stderr[-3000:]
    assert "no 'champion' version" in said[0], said
    assert "`inmarket train` and `inmarket promote` first" in said[0], said
    assert not (tmp_path / "bentoml" / "bentos").exists() or not any(
        (tmp_path / "bentoml" / "bentos").iterdir()
    )


def test_importing_the_service_snapshots_nothing_until_the_labels_are_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a snapshot whose taking is counted (the real one is built above)
    taken: list[int] = []

    def take(self: ChampionSnapshot) -> Snapshot:
        taken.append(1)
        return Snapshot(tag=None, labels={"model_version": "3"})  # type: ignore[arg-type]

    monkeypatch.setattr(ChampionSnapshot, "take", take)
    labels = SnapshotLabels(ChampionSnapshot())
    # when the labels are handed around, as the service's decorator does, nothing is taken
    assert (labels or {}) is labels and taken == []
    # and when BentoML copies them into a Bento's labels, the snapshot is taken, once
    built = {"project": "inmarket"}
    built.update(labels)
    assert built == {"project": "inmarket", "model_version": "3"}
    assert dict(labels) == {"model_version": "3"} and len(taken) == 1
