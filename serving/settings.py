"""The service's settings, read from the environment when the server starts (never at import):

| variable | meaning | default |
|---|---|---|
| INMARKET_STORE | MLflow store folder | mlruns |
| INMARKET_TRACKING_URI | tracking URI (overrides the store) | sqlite under the store |
| INMARKET_MODEL_NAME | registered model served as ``@champion`` | inmarket |
| INMARKET_RANKED | ranked accounts written by ``inmarket score`` | data/ranked.parquet |
| INMARKET_TOKEN | bearer token guarding every route but health and metrics | none |
| INMARKET_RELOAD_SECONDS | how often the champion alias is checked | 30 |

``inmarket serve`` sets the first four from the configuration file and its flags.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field

from features.settings import Section
from training.settings import TrackingSettings

DEFAULT_RANKED = Path("data/ranked.parquet")


class ServiceSettings(Section):
    """What the service serves (the champion of a store, a batch scoring) and how it guards it."""

    tracking: TrackingSettings = TrackingSettings()
    ranked: Path = Field(DEFAULT_RANKED, description="ranked accounts from `inmarket score`")
    token: str | None = Field(None, description="bearer token; none: no authentication")
    reload_seconds: float = Field(30.0, ge=0, description="how often the alias is checked")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ServiceSettings:
        """The settings the environment gives; the defaults above for the rest."""

        def given(**names: str) -> dict[str, str]:
            return {field: env[name] for field, name in names.items() if env.get(name)}

        tracking = given(store="INMARKET_STORE", uri="INMARKET_TRACKING_URI")
        tracking |= given(model_name="INMARKET_MODEL_NAME")
        service = given(ranked="INMARKET_RANKED", token="INMARKET_TOKEN")
        service |= given(reload_seconds="INMARKET_RELOAD_SECONDS")
        return cls.model_validate({"tracking": tracking, **service})

    def environment(self) -> dict[str, str]:
        """The variables that make a server started elsewhere read these settings."""
        env = {
            "INMARKET_STORE": str(self.tracking.store.resolve()),
            "INMARKET_MODEL_NAME": self.tracking.model_name,
            "INMARKET_RANKED": str(self.ranked.resolve()),
        }
        if self.tracking.uri:
            env["INMARKET_TRACKING_URI"] = self.tracking.uri
        return env
