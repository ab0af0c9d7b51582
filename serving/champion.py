"""The served model and where it comes from: a registered model of an MLflow registry (the
champion of the local store, or ``INMARKET_MODEL`` on a team's tracking server), reloaded when
its alias moves, or the snapshot a Bento was built with (``serving.bento``), which never moves.

A check that fails keeps the model loaded before; readiness says why (a tracking server that
does not answer, ``TrackingUnreachable``, is named as such)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from serving.errors import shortened
from serving.report import won_deals_found
from serving.schemas import SERVED_FEATURES, record_model
from training.model import InMarketModel
from training.registry import (
    TrackingUnreachable,
    connect,
    is_server,
    load_model,
    parse_model_uri,
    reaching,
    resolve_version,
    resolved_uri,
    shown_uri,
    version_uri,
)
from training.settings import TrackingSettings

log = logging.getLogger("inmarket.service")


@dataclass(frozen=True)
class Served:
    """A loaded model with its name, version and origin, swapped as one: a request reads them
    all at once."""

    model: InMarketModel
    name: str
    version: str
    loaded_at: datetime
    source: dict[str, Any]


class ModelSource(Protocol):
    """Where the served model comes from."""

    name: str  # the registered model's name
    fixed: bool  # the version never changes: nothing to watch
    server: str | None  # the tracking server asked (for the words when it does not answer)

    def current(self) -> str:
        """The version to serve now."""
        ...

    def load(self, version: str) -> InMarketModel: ...

    def describe(self, version: str) -> dict[str, Any]:
        """Where the model came from, as ``/v1/model`` shows it."""
        ...

    def won_deals(self, version: str) -> dict[str, float] | None:
        """The training run's later-won deals found (``serving.report``)."""
        ...


class RegistrySource:
    """A registered model's ``models:/<name>@<alias>`` (a moved alias is a new model) or
    ``models:/<name>/<version>``, in the store or on the tracking server ``settings`` name
    (``[tracking] uri``, else MLFLOW_TRACKING_URI: ``training.registry.resolved_uri``)."""

    fixed = False

    def __init__(self, settings: TrackingSettings, uri: str) -> None:
        ref = parse_model_uri(uri)
        if ref is None:
            raise ValueError(f"{uri} is not a models:/ URI")
        self.settings, self.uri, self.name, self.alias = settings, uri, ref.name, ref.alias
        tracking = resolved_uri(settings)
        self.server = shown_uri(tracking) if is_server(tracking) else None

    def current(self) -> str:
        return resolve_version(connect(self.settings), self.uri)[1]

    def load(self, version: str) -> InMarketModel:
        return load_model(version_uri(self.name, version))

    def describe(self, version: str) -> dict[str, Any]:
        named = {"model_uri": self.uri, "alias": self.alias}
        if self.server:
            return {"kind": "tracking_server", "tracking_uri": self.server, **named}
        return {"kind": "store", **named}  # its folder is the server's business, not a client's

    def won_deals(self, version: str) -> dict[str, float] | None:
        with reaching(resolved_uri(self.settings)):
            return won_deals_found(connect(self.settings), self.name, version)


class ChampionHolder:
    """The served model; swapped whole when its source names another version, so a request
    that started on the old model finishes on it."""

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        self.served: Served | None = None
        self.error: str | None = None
        self._lock = threading.Lock()

    @property
    def version(self) -> str | None:
        served = self.served
        return served.version if served else None

    def refresh(self) -> bool:
        """Load the source's version if it changed; True when a new model was loaded. Never
        raises: a failed check keeps the model loaded before and says why in ``error``."""
        with self._lock:
            try:
                version = self.source.current()
                if version == self.version:
                    self.error = None
                    return False
                model = self.source.load(version)
                record = record_model(model)  # a model the catalogue cannot describe is not served
            except Exception as exc:  # keep serving the old model; readiness tells the rest
                self.error = self._why(exc)
                kept = f" (still serving version {self.version})" if self.served else ""
                log.error("inmarket: cannot load the champion model: %s%s", exc, kept)
                return False
            SERVED_FEATURES.use(record)
            loaded = datetime.now().astimezone()
            source = self.source.describe(version)
            self.served = Served(model, self.source.name, version, loaded, source)
            self.error = None
            log.info("inmarket: serving %s version %s (%s)", self.source.name, version, source)
            return True

    def _why(self, exc: Exception) -> str:
        if isinstance(exc, TrackingUnreachable):  # connect, resolve_version, load_model
            return f"the tracking server {self.source.server} is unreachable"
        return shortened(" ".join(str(exc).split()), 400)

    def readiness(self) -> tuple[bool, str]:
        """Whether a model is loaded, and in words what is served and what went wrong since."""
        served, error = self.served, self.error
        if served is None:
            return False, f"no model loaded: {error or 'starting'}"
        said = f"serving {served.name} version {served.version} ({served.source['kind']})"
        return True, f"{said}; {error}" if error else said
