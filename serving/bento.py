"""The model in a Bento: ``bentoml build`` snapshots the model the service would serve (the
champion of the store or tracking server the environment names, as ``ServiceSettings`` reads
it) into BentoML's model store, and the Bento serves that snapshot with no store or tracking
server; its name, version, training run and data fingerprint are the Bento's labels.

BentoML packs the models a service's class attributes name (``ChampionSnapshot``: its
``to_info``) and reads a service's labels (``SnapshotLabels``) only while it builds a Bento
(bentoml 1.4's ``Bento.create``), so that is when the snapshot is taken: importing the service
(``inmarket serve``, the tests) copies nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import bentoml
import mlflow
from _bentoml_sdk.models import Model
from bentoml.exceptions import BentoMLException, NotFound
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from features.errors import InMarketError
from serving.champion import ModelSource, RegistrySource
from serving.errors import shortened
from serving.report import won_deals_found
from serving.settings import ServiceSettings
from training.model import InMarketModel
from training.registry import (
    CHAMPION,
    RegistryError,
    TrackingUnreachable,
    champion_uri,
    connect,
    load_model,
    parse_model_uri,
    reaching,
    resolve_version,
    resolved_uri,
    version_uri,
    where,
)

log = logging.getLogger("inmarket.service")

MLFLOW_MODEL = "mlflow_model"  # the MLflow model's folder inside the BentoML model
FINGERPRINT_TAG = "data_fingerprint"  # the training run's tag (training.tracking)


class SnapshotError(InMarketError, BentoMLException):
    """No model to put in a Bento: ``bentoml build`` stops with this one line."""


@dataclass(frozen=True)
class Snapshot:
    """A model copied into BentoML's model store, and the labels that name it."""

    tag: bentoml.Tag
    labels: dict[str, str]


def take_snapshot(settings: ServiceSettings) -> Snapshot:
    """Copy the model the service would serve (``INMARKET_MODEL``, else the champion) into
    BentoML's model store; a registry without it is a ``SnapshotError`` in one line."""
    tracking = settings.tracking
    uri = settings.model or champion_uri(tracking.model_name)
    kept = where(tracking)
    try:
        with reaching(resolved_uri(tracking)):
            return _copied(connect(tracking), uri, kept)
    except RegistryError as exc:
        raise SnapshotError(f"cannot build the Bento from {kept}: {exc} first") from None
    except TrackingUnreachable as exc:
        raise SnapshotError(f"cannot build the Bento: {exc}") from None
    except MlflowException as exc:
        said = shortened(" ".join(str(exc).split()), 300)
        raise SnapshotError(
            f"cannot build the Bento: cannot read {uri} from {kept}: {said}"
        ) from None


def _copied(client: MlflowClient, uri: str, kept: str) -> Snapshot:
    """The version ``uri`` names, in BentoML's model store under a tag of its version and run:
    copied once, found there by the next build of the same model."""
    name, version = resolve_version(client, uri)
    run_id = client.get_model_version(name, version).run_id or ""
    tags = client.get_run(run_id).data.tags if run_id else {}
    labels = {
        "model_name": name,
        "model_version": version,
        "run_id": run_id,
        "data_fingerprint": tags.get(FINGERPRINT_TAG, ""),
    }
    tag = bentoml.Tag(name.lower(), f"v{version}-{run_id[:12]}" if run_id else f"v{version}")
    try:
        bentoml.models.get(tag)
    except NotFound:
        metadata: dict[str, Any] = {"model_uri": version_uri(name, version), "registry": kept}
        won = won_deals_found(client, name, version)
        if won is not None:
            metadata["won_deals"] = won
        ref = parse_model_uri(uri)
        if ref is not None and ref.alias:
            metadata["alias"] = ref.alias
        with bentoml.models.create(tag, labels=labels, metadata=metadata) as stored:
            folder = Path(stored.path_of(MLFLOW_MODEL))
            folder.mkdir()
            mlflow.artifacts.download_artifacts(version_uri(name, version), dst_path=str(folder))
    log.info("inmarket: %s version %s of %s snapshotted as %s", name, version, kept, tag)
    return Snapshot(tag, labels)


class ChampionSnapshot(Model):  # type: ignore[misc]
    """The service's model in a Bento: taken when BentoML builds one (``to_info``, or the
    labels read), once per build; ``resolve`` gives the Bento's snapshot back."""

    def __init__(self) -> None:
        self._taken: Snapshot | None = None

    def take(self) -> Snapshot:
        if self._taken is None:
            self._taken = take_snapshot(ServiceSettings.from_env())
        return self._taken

    @property
    def labels(self) -> SnapshotLabels:
        return SnapshotLabels(self)

    def to_info(self, alias: str | None = None) -> Any:
        return bentoml.models.BentoModel(self.take().tag).to_info(alias or CHAMPION)

    @classmethod
    def from_info(cls, info: Any) -> Any:
        return bentoml.models.BentoModel.from_info(info)

    def to_create_schema(self) -> Any:
        return bentoml.models.BentoModel(self.take().tag).to_create_schema()

    def resolve(self, base_path: Any = None) -> bentoml.Model | None:
        """The snapshot this build took, else the one the Bento being served names (by its
        alias); None served from the source (``inmarket serve``), where the service takes its
        model from the registry: BentoML resolves a service's models before it starts one."""
        if self._taken is not None:
            tag = self._taken.tag
        else:
            try:
                tag = bentoml.models.get(CHAMPION).tag
            except NotFound:
                return None
        stored: bentoml.Model = bentoml.models.BentoModel(tag).resolve(base_path)
        return stored


class SnapshotLabels(dict[str, str]):
    """The Bento's labels: the snapshot's name, version, run and data fingerprint, taken when
    BentoML first reads them (as it builds a Bento); before, they are read by no one."""

    def __init__(self, snapshot: ChampionSnapshot) -> None:
        super().__init__()
        self._snapshot = snapshot

    def _taken(self) -> None:
        if not super().__len__():
            super().update(self._snapshot.take().labels)

    def __bool__(self) -> bool:  # labels there are, taken or not (`labels or {}` keeps them)
        return True

    def __iter__(self) -> Iterator[str]:  # also takes dict.update() off its shortcut
        self._taken()
        return super().__iter__()

    def __len__(self) -> int:
        self._taken()
        return super().__len__()

    def __getitem__(self, key: str) -> str:
        self._taken()
        return super().__getitem__(key)

    def keys(self) -> Any:
        self._taken()
        return super().keys()

    def items(self) -> Any:
        self._taken()
        return super().items()


class SnapshotSource:
    """The model a Bento was built with, named by the Bento's labels and read from BentoML's
    model store (a missing one is an error readiness tells, not a crash); it never changes."""

    fixed = True
    server: str | None = None

    def __init__(self, snapshot: bentoml.Tag, bento: bentoml.Bento) -> None:
        self.snapshot, self.bento = snapshot, bento
        self.name = str(bento.info.labels["model_name"])

    def current(self) -> str:
        return str(self.bento.info.labels["model_version"])

    def load(self, version: str) -> InMarketModel:
        return load_model(bentoml.models.get(self.snapshot).path_of(MLFLOW_MODEL))

    def describe(self, version: str) -> dict[str, Any]:
        labels, metadata = self.bento.info.labels, bentoml.models.get(self.snapshot).info.metadata
        return {
            "kind": "bento",
            "bento": str(self.bento.tag),
            "snapshot": str(self.snapshot),
            "model_uri": metadata.get("model_uri"),
            "alias": metadata.get("alias"),
            "run_id": labels.get("run_id"),
            "data_fingerprint": labels.get("data_fingerprint"),
        }

    def won_deals(self, version: str) -> dict[str, float] | None:
        metadata = bentoml.models.get(self.snapshot).info.metadata
        # as take_snapshot stored them: serving.report's figures, or nothing
        return cast(dict[str, float] | None, metadata.get("won_deals"))


def model_source(settings: ServiceSettings, bento: bentoml.Bento | None) -> ModelSource:
    """``INMARKET_MODEL`` when set (resolved at start, e.g. from a tracking server); else the
    snapshot of the Bento being served; else the champion of the store (``inmarket serve``)."""
    if settings.model:
        return RegistrySource(settings.tracking, settings.model)
    snapshots = [m.tag for m in bento.info.all_models if m.alias == CHAMPION] if bento else []
    if bento and snapshots:
        return SnapshotSource(snapshots[0], bento)
    return RegistrySource(settings.tracking, champion_uri(settings.tracking.model_name))
