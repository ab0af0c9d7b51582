"""The served model: the champion of the registry, reloaded when its alias moves."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from serving.schemas import SERVED_FEATURES, record_model
from training.model import InMarketModel
from training.registry import champion_uri, connect, load_model, resolve_version, version_uri
from training.settings import TrackingSettings

log = logging.getLogger("inmarket.service")


@dataclass(frozen=True)
class Served:
    """A loaded model with its version, swapped as one: a request reads both at once."""

    model: InMarketModel
    version: str
    loaded_at: datetime


class ChampionHolder:
    """The served model; swapped whole when the champion alias moves, so a request that
    started on the old model finishes on it."""

    def __init__(self, settings: TrackingSettings) -> None:
        self.settings = settings
        self.served: Served | None = None
        self.error: str | None = None
        self._lock = threading.Lock()

    @property
    def version(self) -> str | None:
        served = self.served
        return served.version if served else None

    def refresh(self) -> bool:
        """Load the champion if its version changed; True when a new model was loaded."""
        name = self.settings.model_name
        with self._lock:
            try:
                _, version = resolve_version(connect(self.settings), champion_uri(name))
                if version == self.version:
                    return False
                model = load_model(version_uri(name, version))
                record = record_model(model)  # a model the catalogue cannot describe is not served
            except Exception as exc:  # keep serving the old model; readiness tells the rest
                self.error = str(exc)
                log.error("inmarket: cannot load the champion model: %s", exc)
                return False
            SERVED_FEATURES.use(record)
            self.served, self.error = Served(model, version, datetime.now().astimezone()), None
            log.info("inmarket: serving %s version %s", name, version)
            return True
