"""The store: models:/ URIs built and read one way, an alias resolved to its version, runs left
RUNNING by a dead process marked FAILED (on an empty store, no training needed); `mlflow ui`
reads the store."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient

from features.leftovers import this_host
from tests.processes import ended_pid
from tests.serving.server import Server
from tests.stores import experiment_id
from training.job import TrainJob, TrainResult
from training.registry import (
    CHALLENGER,
    CHAMPION,
    HOST_TAG,
    PID_TAG,
    ModelRef,
    RegistryError,
    champion_uri,
    fail_abandoned_runs,
    parse_model_uri,
    resolve_version,
    resolved_uri,
    shown_uri,
    tracking_uri,
    version_uri,
    where,
)
from training.settings import TrackingSettings


@pytest.mark.parametrize(
    ("uri", "named"),
    [
        (version_uri("inmarket", "3"), ModelRef("inmarket", "3", None)),
        (champion_uri("inmarket-hubspot"), ModelRef("inmarket-hubspot", None, CHAMPION)),
        ("runs:/0a1b2c/model", None),
    ],
)
def test_a_model_uri_names_a_version_or_an_alias(uri: str, named: ModelRef | None) -> None:
    assert parse_model_uri(uri) == named


@pytest.mark.parametrize(
    "uri", ["models:/inmarket", "models:/inmarket/Production", "models:/inmarket/3@champion"]
)
def test_a_models_uri_without_one_version_or_alias_is_refused(
    client: MlflowClient, uri: str
) -> None:
    with pytest.raises(RegistryError, match=re.escape("models:/<name>/<version>, models:/")):
        resolve_version(client, uri)


def test_latest_is_pinned_to_the_newest_version(client: MlflowClient) -> None:
    """Found in review: ``models:/inmarket/latest`` was recorded as version "latest", which
    names no version a later reader can load again."""
    # given a registered model with three versions
    run = client.create_run(experiment_id(client)).info
    client.create_registered_model("inmarket")
    for _ in range(3):
        client.create_model_version("inmarket", "file:///nowhere", run.run_id)
    # when its latest URI is resolved, then it names version 3, with or without a final slash
    assert resolve_version(client, "models:/inmarket/latest") == ("inmarket", "3")
    assert resolve_version(client, "models:/inmarket/latest/") == ("inmarket", "3")
    with pytest.raises(RegistryError, match="model 'other' has no version"):
        resolve_version(client, "models:/other/latest")


def test_the_champion_uri_resolves_to_the_version_behind_the_alias(client: MlflowClient) -> None:
    # given a registered model whose second version is the champion
    run = client.create_run(experiment_id(client)).info
    client.create_registered_model("inmarket")
    for _ in range(2):
        client.create_model_version("inmarket", "file:///nowhere", run.run_id)
    client.set_registered_model_alias("inmarket", CHAMPION, "2")
    # when the champion's URI is resolved, then it names version 2, pinned
    assert resolve_version(client, champion_uri("inmarket")) == ("inmarket", "2")
    assert version_uri(*resolve_version(client, champion_uri("inmarket"))) == "models:/inmarket/2"


def test_runs_left_running_by_a_dead_process_of_this_host_are_marked_failed(
    client: MlflowClient,
) -> None:
    # given four RUNNING runs: owned by a dead process of this host, by this living process, by
    # a process of another host, and by no one known (a run from before owners were recorded)
    experiment = experiment_id(client)
    dead = ended_pid()
    owners = {
        "dead": {PID_TAG: str(dead), HOST_TAG: this_host()},
        "living": {PID_TAG: str(os.getpid()), HOST_TAG: this_host()},
        "elsewhere": {PID_TAG: str(dead), HOST_TAG: f"{this_host()}-elsewhere"},
        "unknown": {},
    }
    runs = {name: client.create_run(experiment, tags=tags).info for name, tags in owners.items()}
    # when the runs left behind are looked for
    failed = fail_abandoned_runs(client, "inmarket")
    # then only the dead process's run is marked FAILED
    assert failed == [runs["dead"].run_id]
    assert {name: client.get_run(run.run_id).info.status for name, run in runs.items()} == {
        "dead": "FAILED",
        "living": "RUNNING",
        "elsewhere": "RUNNING",
        "unknown": "RUNNING",
    }


def test_the_tracking_uri_is_the_setting_then_the_environment_then_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a store folder, a URI in the environment and one in the settings (with a password)
    store = tmp_path / "mlruns"
    server = "https://inmarket:s3cret@mlflow.example.com/team"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    alone = TrackingSettings(store=store)
    given = TrackingSettings(store=store, uri=server)
    # then without either it is SQLite under the store, and messages name the folder
    assert resolved_uri(alone) == tracking_uri(store) and where(alone) == str(store)
    # and the environment's comes before the store, the setting's before the environment's
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolved_uri(alone) == where(alone) == "http://127.0.0.1:5000"
    assert resolved_uri(given) == server
    # and a message shows the URI without its password
    assert where(given) == shown_uri(server) == "https://inmarket:***@mlflow.example.com/team"


def test_a_password_or_token_in_the_uri_is_in_no_message_and_no_run_record() -> None:
    """Found in review: a run's config.json logged the whole [tracking] section, the URI's
    password with it, for every reader of the server to see; a lone user (a token) showed."""
    # given tracking URIs with a token as the user, and with a password
    token = "https://s3cret@mlflow.example.com/team"
    job = TrainJob(tracking=TrackingSettings(uri="https://alice:s3cret@mlflow.example.com"))
    # when a message shows them, and a run records its settings
    logged = json.dumps(job._config())
    # then neither secret is there, the host is
    assert shown_uri(token) == "https://***@mlflow.example.com/team"
    assert "s3cret" not in logged and "alice:***@mlflow.example.com" in logged


def test_an_abandoned_runs_versions_without_an_alias_are_deleted(client: MlflowClient) -> None:
    # given a run left RUNNING by a dead process with two versions, one of them the champion
    # (a training cut after registering a version, before making it challenger), and a
    # finished run's version
    experiment = experiment_id(client)
    owner = {PID_TAG: str(ended_pid()), HOST_TAG: this_host()}
    dead = client.create_run(experiment, tags=owner).info.run_id
    done = client.create_run(experiment).info.run_id
    client.set_terminated(done)
    client.create_registered_model("inmarket")
    for run_id in (dead, dead, done):
        client.create_model_version("inmarket", "file:///nowhere", run_id)
    client.set_registered_model_alias("inmarket", CHAMPION, "1")
    # when the runs left behind are looked for
    assert fail_abandoned_runs(client, "inmarket") == [dead]
    # then the dead run's version without an alias is gone; the others stay
    left = client.search_model_versions("name = 'inmarket'")
    assert sorted(str(v.version) for v in left) == ["1", "3"]


@pytest.mark.slow
def test_mlflow_ui_serves_the_store(trained: tuple[Path, TrainResult], tmp_path: Path) -> None:
    """`mlflow ui` pointed at the store shows the experiment, the run and the registered model."""
    # given `mlflow ui` on the store with a trained challenger
    store, result = trained
    api = "/api/2.0/mlflow"
    with Server(
        {},
        tmp_path,
        lambda port: [
            str(Path(sys.executable).with_name("mlflow")),
            "ui",
            "--backend-store-uri",
            tracking_uri(store),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
    ) as server:
        # when its API is asked for the run and for the challenger
        run = server.wait(f"{api}/runs/get?run_id={result.run_id}")
        challenger = httpx.get(
            f"{server.url}{api}/registered-models/alias?name=inmarket&alias={CHALLENGER}",
            timeout=5,
        )
        # then the run has its metrics and the challenger is that run's model
        assert run.status_code == 200, run.text
        metrics = {m["key"] for m in run.json()["run"]["data"]["metrics"]}
        assert {"test_pr_auc", "mql_rule_test_recall_at_10"} <= metrics
        assert challenger.status_code == 200, challenger.text
        assert challenger.json()["model_version"]["run_id"] == result.run_id
