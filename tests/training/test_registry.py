"""Runs left RUNNING by a dead process are marked FAILED, and a version whose training run did
not finish is never promoted; on an empty store, no training needed."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from pydantic import ValidationError

from features.leftovers import this_host
from tests.processes import ended_pid
from tests.stores import client_of, copy_store
from training.registry import (
    CHALLENGER,
    CHAMPION,
    HOST_TAG,
    PID_TAG,
    RegistryError,
    attempt_level,
    fail_abandoned_runs,
    promote,
    version_by_alias,
)
from training.settings import TrackingSettings


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the experiment and nothing else, made once (creating its tables is slow)."""
    store = tmp_path_factory.mktemp("empty") / "mlruns"
    client_of(store)
    return store


@pytest.fixture
def client(empty_store: Path, tmp_path: Path) -> MlflowClient:
    return client_of(copy_store(empty_store, tmp_path / "mlruns"))


def _experiment(client: MlflowClient) -> str:
    found = client.get_experiment_by_name("inmarket")
    assert found is not None
    return str(found.experiment_id)


def test_runs_left_running_by_a_dead_process_of_this_host_are_marked_failed(
    client: MlflowClient,
) -> None:
    # given four RUNNING runs: owned by a dead process of this host, by this living process, by
    # a process of another host, and by no one known (a run from before owners were recorded)
    experiment = _experiment(client)
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


@pytest.mark.parametrize("status", ["RUNNING", "FAILED", "KILLED"])
def test_a_version_whose_run_did_not_finish_is_never_promoted(
    client: MlflowClient, status: str
) -> None:
    # given a challenger registered by a run that is still RUNNING, or FAILED, or KILLED
    experiment = _experiment(client)
    run = client.create_run(experiment).info
    if status != "RUNNING":
        client.set_terminated(run.run_id, status)
    client.create_registered_model("inmarket")
    version = client.create_model_version("inmarket", "file:///nowhere", run.run_id)
    client.set_registered_model_alias("inmarket", CHALLENGER, version.version)
    # when it is promoted, even with force, then it is refused with the version and the status
    with pytest.raises(
        RegistryError,
        match=rf"version {version.version} is not promoted: its training run {run.run_id} is "
        rf"{status}, not FINISHED",
    ):
        promote(client, "inmarket", force=True)
    assert version_by_alias(client, "inmarket", CHAMPION) is None


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_the_gate_spends_its_error_budget_over_attempts(confidence: float) -> None:
    # given the levels of the first 1,000 attempts against one champion
    levels = [attempt_level(k, confidence) for k in range(1, 1_001)]
    # then each attempt is stricter than the one before and than the configured level, and
    # the chances that noise passes, summed over every attempt, stay under 1 - confidence
    assert all(a < b for a, b in itertools.pairwise(levels))
    assert confidence < levels[0] < 1
    assert sum(1 - level for level in levels) < 1 - confidence


def test_a_project_names_its_own_model_and_experiment() -> None:
    # given settings with a project, with a project and a model name, and with neither
    hub = TrackingSettings.model_validate({"project": "hubspot"})
    named = TrackingSettings.model_validate({"project": "hubspot", "model_name": "crm"})
    # then the project's model and experiment are its own unless named, and the default stays
    assert (hub.model_name, hub.experiment) == ("inmarket-hubspot", "inmarket-hubspot")
    assert (named.model_name, named.experiment) == ("crm", "inmarket-hubspot")
    assert TrackingSettings().model_name == "inmarket"
    with pytest.raises(ValidationError, match="project"):
        TrackingSettings.model_validate({"project": "../other store"})
