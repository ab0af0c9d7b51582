"""The served model: the champion of the registry, reloaded when its alias moves."""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from training.model import InMarketModel
from training.registry import CHAMPION, connect, load_model, resolve_version
from training.settings import TrackingSettings

log = logging.getLogger("inmarket.service")


class ChampionHolder:
    """The served model; swapped whole when the champion alias moves, so a request that
    started on the old model finishes on it."""

    def __init__(self, settings: TrackingSettings) -> None:
        self.settings = settings
        self.model: InMarketModel | None = None
        self.version: str | None = None
        self.loaded_at: datetime | None = None
        self.error: str | None = None
        self._lock = threading.Lock()

    def refresh(self) -> bool:
        """Load the champion if its version changed; True when a new model was loaded."""
        name = self.settings.model_name
        with self._lock:
            try:
                _, version = resolve_version(connect(self.settings), f"models:/{name}@{CHAMPION}")
                if version == self.version:
                    return False
                model = load_model(f"models:/{name}/{version}")
            except Exception as exc:  # keep serving the old model; readiness tells the rest
                self.error = str(exc)
                log.error("inmarket: cannot load the champion model: %s", exc)
                return False
            self.model, self.version = model, version
            self.loaded_at, self.error = datetime.now().astimezone(), None
            log.info("inmarket: serving %s version %s", self.settings.model_name, self.version)
            return True
