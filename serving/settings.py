"""The service's settings, read from the environment when the server starts (never at import):

| variable | meaning | default |
|---|---|---|
| INMARKET_STORE | MLflow store folder | mlruns |
| INMARKET_TRACKING_URI | tracking URI (overrides the store) | sqlite under the store |
| INMARKET_MODEL_NAME | registered model served as ``@champion`` | inmarket |
| INMARKET_RANKED | ranked accounts written by ``inmarket score`` | data/ranked.parquet |
| INMARKET_TOKEN | bearer token guarding every route but health (16+ characters) | none |
| INMARKET_ADMIN_TOKEN | bearer token for ``/admin/*`` (16+ characters; none: off) | none |
| INMARKET_SESSION_HOURS | how long a browser's sign-in lasts | 12 |
| INMARKET_LOGIN_ATTEMPTS | wrong tokens per client a minute (then 429) | 5 |
| INMARKET_MAX_BODY_MB | largest request body (``/login``: 4 KB) | 16 |
| INMARKET_HEADER_SECONDS | time a connection has to send a request's headers | 10 |
| INMARKET_BODY_SECONDS | time a request has to send its whole body | 30 |
| INMARKET_RELOAD_SECONDS | how often the champion alias is checked | 30 |

``inmarket serve`` sets the first four from the configuration file and its flags. A token set
but empty or shorter than 16 characters stops the server from starting (an empty one used to
turn authentication off without a word).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field, ValidationError

from features.errors import ConfigError
from features.settings import Section
from training.settings import TrackingSettings

DEFAULT_RANKED = Path("data/ranked.parquet")
MIN_TOKEN_LENGTH = 16
# environment variable -> (section, field); the tracking ones go to ServiceSettings.tracking
_VARIABLES = {
    "INMARKET_STORE": ("tracking", "store"),
    "INMARKET_TRACKING_URI": ("tracking", "uri"),
    "INMARKET_MODEL_NAME": ("tracking", "model_name"),
    "INMARKET_RANKED": ("service", "ranked"),
    "INMARKET_TOKEN": ("service", "token"),
    "INMARKET_ADMIN_TOKEN": ("service", "admin_token"),
    "INMARKET_SESSION_HOURS": ("service", "session_hours"),
    "INMARKET_LOGIN_ATTEMPTS": ("service", "login_attempts"),
    "INMARKET_MAX_BODY_MB": ("service", "max_body_mb"),
    "INMARKET_HEADER_SECONDS": ("service", "header_seconds"),
    "INMARKET_BODY_SECONDS": ("service", "body_seconds"),
    "INMARKET_RELOAD_SECONDS": ("service", "reload_seconds"),
}
_SECRETS = ("INMARKET_TOKEN", "INMARKET_ADMIN_TOKEN")


class ServiceSettings(Section):
    """What the service serves (the champion of a store, a batch scoring) and how it guards it."""

    tracking: TrackingSettings = TrackingSettings()
    ranked: Path = Field(DEFAULT_RANKED, description="ranked accounts from `inmarket score`")
    token: str | None = Field(
        None,
        min_length=MIN_TOKEN_LENGTH,
        description="bearer token; none: no authentication (loopback only)",
    )
    admin_token: str | None = Field(
        None, min_length=MIN_TOKEN_LENGTH, description="bearer token for /admin/*; none: off"
    )
    session_hours: float = Field(12.0, gt=0, le=24 * 30, description="how long a sign-in lasts")
    login_attempts: int = Field(5, ge=1, le=1000, description="wrong tokens per client a minute")
    max_body_mb: float = Field(16.0, gt=0, le=1024, description="largest request body")
    header_seconds: float = Field(10.0, gt=0, le=600, description="time to send the headers")
    body_seconds: float = Field(30.0, gt=0, le=3600, description="time to send the body")
    reload_seconds: float = Field(30.0, ge=0, description="how often the alias is checked")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ServiceSettings:
        """The settings the environment gives; the defaults above for the rest. A secret set
        but empty is an error, not "no authentication"."""
        for name in _SECRETS:
            if name in env and not env[name].strip():
                raise ConfigError(
                    f"{name} is set but empty: give a token of {MIN_TOKEN_LENGTH}+ characters "
                    f"(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`) "
                    "or unset it"
                )
        values: dict[str, dict[str, str]] = {"tracking": {}, "service": {}}
        for name, (section, field) in _VARIABLES.items():
            if env.get(name):
                values[section][field] = env[name]
        try:
            return cls.model_validate({"tracking": values["tracking"], **values["service"]})
        except ValidationError as exc:
            names = {field: name for name, (_, field) in _VARIABLES.items()}
            problems = [
                f"{names.get(str(e['loc'][-1]), '.'.join(map(str, e['loc'])))}: {e['msg']}"
                for e in exc.errors()
            ]
            raise ConfigError(f"service settings: {'; '.join(problems)}") from exc

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
