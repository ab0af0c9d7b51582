"""The MLflow store (SQLite under ``mlruns/``) and its registry: the tracking URI, ``connect``,
models:/ URIs (built and parsed here only), the versions behind aliases, loading a model, and
the runs a killed process left behind.

``challenger`` is the newest registered model; ``champion`` is the one served (the gate that
moves it is ``training.promotion``). A run is tagged with the pid and host of the process that
trains it: a run left RUNNING by a process that was killed (``kill -9`` skips MLflow's own
clean-up) is marked FAILED by ``fail_abandoned_runs``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

import mlflow
from mlflow.entities import RunStatus
from mlflow.entities.model_registry import ModelVersion
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from features.errors import InMarketError
from features.leftovers import owner_alive, this_host
from training.model import InMarketModel
from training.settings import TrackingSettings

CHALLENGER, CHAMPION = "challenger", "champion"
PID_TAG, HOST_TAG = "pid", "hostname"  # of the process that runs a training run
MODELS = "models:/"
LATEST = "latest"  # models:/<name>/latest: the newest version, pinned when resolved
# models:/<name>/<version>, models:/<name>/latest or models:/<name>@<alias>
_MODEL_URI = re.compile(
    rf"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+|{LATEST})|@(?P<alias>[^/@]+))/?$"
)
_URI_FORMS = (
    "give a registered model as models:/<name>/<version>, models:/<name>/latest or "
    "models:/<name>@<alias> (registry stages are deprecated: use aliases)"
)


class RegistryError(InMarketError, LookupError):
    """A model, version or alias that the registry does not hold."""


class TrackingUnreachable(InMarketError, ConnectionError):
    """The tracking server did not answer (down, or a 5xx): the command stops with exit 4 and
    nothing half-done (no version without its files, no moved alias)."""


def tracking_uri(store: Path) -> str:
    """The SQLite tracking URI of a store folder."""
    return f"sqlite:///{Path(store).resolve()}/mlflow.db"


def connect(settings: TrackingSettings) -> MlflowClient:
    """Point MLflow at the store (creating it) and make sure the experiment exists.

    MLflow's artifact download bars are turned off unless the environment sets
    ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR``: they printed on every train, promote and score."""
    os.environ.setdefault(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name, "false")
    store = Path(settings.store)
    store.mkdir(parents=True, exist_ok=True)
    uri = settings.uri or tracking_uri(store)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    if client.get_experiment_by_name(settings.experiment) is None:
        client.create_experiment(
            settings.experiment, artifact_location=(store.resolve() / "artifacts").as_uri()
        )
    mlflow.set_experiment(settings.experiment)
    return client


def owner_tags() -> dict[str, str]:
    """The tags that name this process as a run's owner."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: this_host()}


def fail_abandoned_runs(client: MlflowClient, experiment: str) -> list[str]:
    """Mark FAILED the runs of ``experiment`` left RUNNING by a process of this host that has
    died; their ids. Runs without an owner, or owned by another host, are left as they are."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    running = client.search_runs(
        [found.experiment_id], filter_string="attributes.status = 'RUNNING'"
    )
    abandoned = [
        run.info.run_id
        for run in running
        if run.data.tags.get(PID_TAG, "").isdigit()
        and not owner_alive(int(run.data.tags[PID_TAG]), run.data.tags.get(HOST_TAG, ""))
    ]
    for run_id in abandoned:
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
    return abandoned


class ModelRef(NamedTuple):
    """What a models:/ URI names: a registered model and either a version or an alias."""

    name: str
    version: str | None
    alias: str | None


def version_uri(name: str, version: str) -> str:
    """``models:/<name>/<version>``: one version, which never changes."""
    return f"{MODELS}{name}/{version}"


def champion_uri(name: str) -> str:
    """``models:/<name>@champion``: whichever version is served now."""
    return f"{MODELS}{name}@{CHAMPION}"


def parse_model_uri(uri: str) -> ModelRef | None:
    """The model and version or alias of ``models:/<name>/<version>`` or
    ``models:/<name>@<alias>``; None for another kind of URI (``runs:/``, a folder)."""
    if not uri.startswith(MODELS):
        return None
    found = _MODEL_URI.match(uri)
    if found is None:
        raise RegistryError(f"{uri}: {_URI_FORMS}")
    return ModelRef(found["name"], found["version"], found["alias"])


def resolve_version(client: MlflowClient, uri: str) -> tuple[str, str]:
    """(name, version) of ``models:/<name>/<version>`` or ``models:/<name>@<alias>``: scores
    record the version that made them, never an alias that may move."""
    ref = parse_model_uri(uri)
    if ref is None:
        raise RegistryError(f"{uri}: {_URI_FORMS}")
    if ref.version == LATEST:
        versions = client.search_model_versions(f"name='{ref.name}'")
        if not versions:
            raise RegistryError(f"model '{ref.name}' has no version; run `inmarket train`")
        return ref.name, str(max(int(v.version) for v in versions))
    if ref.version is not None:
        return ref.name, ref.version
    found = version_by_alias(client, ref.name, str(ref.alias))
    if found is None:
        raise RegistryError(
            f"model '{ref.name}' has no '{ref.alias}' version; run `inmarket train` and "
            "`inmarket promote`"
        )
    return ref.name, str(found.version)


def load_model(uri: str) -> InMarketModel:
    """An ``InMarketModel`` from a models:/ or runs:/ URI."""
    wrapper = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    model: InMarketModel = wrapper.model
    return model


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The model version behind an alias, or None."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
