"""The MLflow store (SQLite under ``mlruns/``, or a team's tracking server) and its registry: the
tracking URI, ``connect``, a server that does not answer (``TrackingUnreachable``), models:/
URIs (built and parsed here only), the versions behind aliases, loading a model, and the runs a
killed process left behind.

``challenger`` is the newest registered model; ``champion`` is the one served (the gate that
moves it is ``training.promotion``). A run is tagged with the pid and host of the process that
trains it: a run left RUNNING by a process that was killed (``kill -9`` skips MLflow's own
clean-up) is marked FAILED by ``fail_abandoned_runs``, which also deletes the versions it
registered and never made challenger.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

import mlflow
import requests
from mlflow.entities import RunStatus
from mlflow.entities.model_registry import ModelVersion
from mlflow.environment_variables import (
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR,
    MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
    MLFLOW_HTTP_REQUEST_MAX_RETRIES,
    MLFLOW_HTTP_REQUEST_TIMEOUT,
    MLFLOW_REGISTRY_URI,
    MLFLOW_TRACKING_URI,
)
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from features.errors import ConfigError, InMarketError
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
SERVERS = ("http://", "https://")  # a tracking server's URI, as against a database's
# what MLflow's HTTP client says of a request that got no usable answer, in the errors it gathers
# from several requests (an artifact download) without keeping their causes
_NO_ANSWER = re.compile(
    r"API request to \S+ failed with (?:timeout )?exception|Max retries exceeded|"
    r"failed with error code 5\d\d"
)


class RegistryError(InMarketError, LookupError):
    """A model, version or alias that the registry does not hold."""


class TrackingUnreachable(InMarketError, ConnectionError):
    """The tracking server did not answer (down, or a 5xx): the command stops with exit 4 and
    nothing half-done (no version without its files, no moved alias)."""


def tracking_uri(store: Path) -> str:
    """The SQLite tracking URI of a store folder."""
    return f"sqlite:///{Path(store).resolve()}/mlflow.db"


def resolved_uri(settings: TrackingSettings) -> str:
    """The tracking URI in use: ``[tracking] uri`` (the flag, else the file), else the
    ``MLFLOW_TRACKING_URI`` environment variable, else SQLite under the store. Every command
    and the service resolve it here, so they agree."""
    return settings.uri or os.environ.get(MLFLOW_TRACKING_URI.name) or tracking_uri(settings.store)


def is_server(uri: str) -> bool:
    """Whether ``uri`` names a tracking server (HTTP), not a database."""
    return uri.startswith(SERVERS)


def shown_uri(uri: str) -> str:
    """``uri`` as a message or a run's record shows it: a password in it replaced by ``***``,
    and a user without a password too (``https://<token>@host`` carries a token there)."""
    parts = urlsplit(uri)
    if parts.username is None:
        return uri
    user, _, host = parts.netloc.rpartition("@")
    hidden = f"{user.split(':', 1)[0]}:***" if parts.password is not None else "***"
    return urlunsplit(parts._replace(netloc=f"{hidden}@{host}"))


def where(settings: TrackingSettings) -> str:
    """Where runs and models are kept, for messages: the store folder, or the tracking URI
    when one is used."""
    uri = resolved_uri(settings)
    return str(settings.store) if uri == tracking_uri(settings.store) else shown_uri(uri)


def connect(settings: TrackingSettings) -> MlflowClient:
    """Point MLflow at the store or server (creating a local store) and make sure the experiment
    exists.

    Against a server the experiment is created without an artifact location, so the server's
    own applies (``mlflow server --artifacts-destination``: ``mlflow-artifacts:/``, proxied):
    a model is never written to a folder only this machine can read. MLflow's artifact download
    bars are turned off unless the environment sets ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR``:
    they printed on every train, promote and score."""
    os.environ.setdefault(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name, "false")
    _bound_requests(settings)
    uri = resolved_uri(settings)
    artifacts = None
    if not is_server(uri):
        store = Path(settings.store)
        store.mkdir(parents=True, exist_ok=True)
        artifacts = (store.resolve() / "artifacts").as_uri()
    _point_mlflow_at(uri)
    client = MlflowClient(uri, uri)
    with reaching(uri):
        experiment = client.get_experiment_by_name(settings.experiment)
        if experiment is None:
            client.create_experiment(settings.experiment, artifact_location=artifacts)
        elif is_server(uri) and _local(experiment.artifact_location):
            raise ConfigError(
                f"experiment '{settings.experiment}' on {shown_uri(uri)} keeps its files at "
                f"{experiment.artifact_location}, a folder of one machine: name another "
                "experiment ([tracking] project) so the server's proxied store is used"
            )
        mlflow.set_experiment(settings.experiment)
    return client


def _local(location: str) -> bool:
    """Whether an artifact location is a local folder (``file:`` or a plain path)."""
    return location.startswith(("file:", "/"))


def _point_mlflow_at(uri: str) -> None:
    """Make ``uri`` MLflow's tracking and registry URI in this process. MLflow also exports it
    to the environment, for child processes; that is undone, so MLFLOW_TRACKING_URI keeps the
    value the user gave (``resolved_uri`` reads it) and a child command finds its own store."""
    exported = (MLFLOW_TRACKING_URI.name, MLFLOW_REGISTRY_URI.name)
    saved = {name: os.environ.get(name) for name in exported}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _bound_requests(settings: TrackingSettings) -> None:
    """MLflow retries a failed HTTP request 7 times over about 4 minutes by default (made for
    rate-limited hosted servers): bounded by the settings, so a server that is down stops a
    command in seconds. urllib3's warning on each retry is silenced: the command says it once."""
    os.environ[MLFLOW_HTTP_REQUEST_MAX_RETRIES.name] = str(settings.request_retries)
    os.environ[MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.name] = "1"  # then waits 2, 4, 8... s
    os.environ[MLFLOW_HTTP_REQUEST_TIMEOUT.name] = str(settings.request_timeout_seconds)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


@contextmanager
def reaching(uri: str) -> Iterator[None]:
    """Inside it, a tracking server at ``uri`` that gave no usable answer (no connection, no
    answer in time, 5xx after the retries) raises ``TrackingUnreachable``; any other error
    passes unchanged."""
    try:
        yield
    except (MlflowException, requests.RequestException) as exc:
        raise_if_unreachable(exc, uri)
        raise


def raise_if_unreachable(exc: BaseException, uri: str) -> None:
    """Raise ``TrackingUnreachable`` from ``exc`` when it, or an error behind it, says the
    tracking server at ``uri`` gave no usable answer."""
    why = _no_answer(exc)
    if why is not None:
        raise TrackingUnreachable(
            f"tracking server {shown_uri(uri)} is unreachable ({why}): check that it runs and "
            "that the URI is right, then run the command again"
        ) from exc


def _no_answer(exc: BaseException) -> str | None:
    """Why a tracking server gave no usable answer, read from ``exc`` and the errors behind it
    (MLflow re-raises requests' errors as its own); None when something else failed."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for error in chain:
        if isinstance(error, requests.exceptions.RetryError):
            status = re.search(r"too many (\d{3}) error", str(error))
            return f"it answered {status[1] if status else 'errors'}, retries included"
        if isinstance(error, requests.Timeout):
            return f"no answer within {MLFLOW_HTTP_REQUEST_TIMEOUT.get()} s"
        if isinstance(error, requests.ConnectionError):
            return "connection refused" if "refused" in str(error) else "no connection"
        answer = error.response if isinstance(error, requests.HTTPError) else None
        if answer is not None and answer.status_code >= 500:
            return f"it answered {answer.status_code}"
    if any(_NO_ANSWER.search(str(error)) for error in chain):
        return "no usable answer"
    return None


def owner_tags() -> dict[str, str]:
    """The tags that name this process as a run's owner."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: this_host()}


def fail_abandoned_runs(client: MlflowClient, experiment: str) -> list[str]:
    """Mark FAILED the runs of ``experiment`` left RUNNING by a process of this host that has
    died, and delete the model versions they registered without an alias; the runs' ids. Runs
    without an owner, or owned by another host, are left as they are."""
    with reaching(client.tracking_uri):
        return _fail_abandoned_runs(client, experiment)


def _fail_abandoned_runs(client: MlflowClient, experiment: str) -> list[str]:
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
        for version in client.search_model_versions(f"run_id = '{run_id}'"):
            # (a search does not fill in a version's aliases: its model's list does)
            aliased = client.get_registered_model(version.name).aliases.values()
            if str(version.version) not in map(str, aliased):  # never made challenger
                client.delete_model_version(version.name, str(version.version))
    return abandoned


def discard_version(client: MlflowClient, name: str, version: str) -> None:
    """Delete a version a training that failed had registered, if the server still answers.
    One it cannot delete has no alias, so no promotion takes it; if its run was left RUNNING,
    the next train or promote deletes it (``fail_abandoned_runs``)."""
    with contextlib.suppress(MlflowException, requests.RequestException):
        client.delete_model_version(name, version)


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
        with reaching(client.tracking_uri):
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
    """An ``InMarketModel`` from a models:/ or runs:/ URI (of the tracking URI in use)."""
    with reaching(mlflow.get_tracking_uri()):
        wrapper = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    model: InMarketModel = wrapper.model
    return model


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The model version behind an alias, or None (``TrackingUnreachable`` when the server
    did not answer: that is no answer, not "no such alias")."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise_if_unreachable(exc, client.tracking_uri)
        return None
