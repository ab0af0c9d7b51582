"""The service's settings, read from the environment when the server starts (never at import):

| variable | meaning | default |
|---|---|---|
| INMARKET_STORE | MLflow store folder | mlruns |
| INMARKET_TRACKING_URI | tracking URI (overrides the store) | MLFLOW_TRACKING_URI, else sqlite |
| INMARKET_MODEL_NAME | registered model served as ``@champion`` | inmarket |
| INMARKET_MODEL | models:/ URI served instead (an alias is watched) | see below |
| INMARKET_RANKED | ranked accounts written by ``inmarket score`` | data/ranked.parquet |
| INMARKET_TOKEN | bearer token guarding every route but health (random: see below) | none |
| INMARKET_ADMIN_TOKEN | bearer token for ``/admin/*`` (random; none: off) | none |
| INMARKET_SESSION_HOURS | how long a browser's sign-in lasts | 12 |
| INMARKET_LOGIN_ATTEMPTS | wrong tokens per client a minute (then 429) | 5 |
| INMARKET_LOGIN_CEILING | wrong tokens a minute from all clients together (then 429) | 60 |
| INMARKET_TRUSTED_PROXIES | proxies whose X-Forwarded-* count (addresses, networks) | none |
| INMARKET_MAX_BODY_MB | largest request body (``/login``: 4 KB) | 16 |
| INMARKET_HEADER_SECONDS | time a connection has to send a request's headers | 10 |
| INMARKET_BODY_SECONDS | time a request has to send its whole body | 30 |
| INMARKET_RELOAD_SECONDS | how often the champion alias is checked | 30 |

``inmarket serve`` sets the store, tracking URI, model name and ranked file from the
configuration file and its flags. MLflow's own MLFLOW_TRACKING_URI counts when
INMARKET_TRACKING_URI is not set (``training.registry.resolved_uri``, as for every command).
Without INMARKET_MODEL a Bento serves the model it was built with (``serving.bento``),
``inmarket serve`` the store's ``models:/<name>@champion``; with it (``models:/<name>@champion``
and ``MLFLOW_TRACKING_URI=http://...``: a team's tracking server) the model is resolved at start.

A token set but empty, shorter than 16 characters, padded with blanks or of fewer than 10
different characters stops the server from starting, in one line that says how to make one (an
empty one used to turn authentication off without a word; "15 spaces and an x" used to start
it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    IPvAnyNetwork,
    ValidationError,
    field_validator,
)

from features.database import REFERENCE, DatabaseUrl
from features.errors import ConfigError
from features.settings import Section
from training.settings import TrackingSettings

DEFAULT_RANKED = Path("data/ranked.parquet")
MIN_TOKEN_LENGTH = 16
MIN_TOKEN_VARIETY = 10  # different characters: a random 16-character token has about 14
MAKE_A_TOKEN = 'make one with `python -c "import secrets; print(secrets.token_urlsafe(32))"`'
# environment variable -> (section, field); the tracking ones go to ServiceSettings.tracking
_VARIABLES = {
    "INMARKET_STORE": ("tracking", "store"),
    "INMARKET_TRACKING_URI": ("tracking", "uri"),
    "INMARKET_MODEL_NAME": ("tracking", "model_name"),
    "INMARKET_MODEL": ("service", "model"),
    "INMARKET_RANKED": ("service", "ranked"),
    "INMARKET_TOKEN": ("service", "token"),
    "INMARKET_ADMIN_TOKEN": ("service", "admin_token"),
    "INMARKET_SESSION_HOURS": ("service", "session_hours"),
    "INMARKET_LOGIN_ATTEMPTS": ("service", "login_attempts"),
    "INMARKET_LOGIN_CEILING": ("service", "login_ceiling"),
    "INMARKET_TRUSTED_PROXIES": ("service", "trusted_proxies"),
    "INMARKET_MAX_BODY_MB": ("service", "max_body_mb"),
    "INMARKET_HEADER_SECONDS": ("service", "header_seconds"),
    "INMARKET_BODY_SECONDS": ("service", "body_seconds"),
    "INMARKET_RELOAD_SECONDS": ("service", "reload_seconds"),
}
_SECRETS = ("INMARKET_TOKEN", "INMARKET_ADMIN_TOKEN")


def _strong(token: str) -> str:
    """A token that cannot be guessed from its shape: long enough, of enough different
    characters, without blanks at its ends (a header cannot carry them)."""
    if len(token) < MIN_TOKEN_LENGTH:
        problem = f"has {len(token)} characters, fewer than {MIN_TOKEN_LENGTH}"
    elif token != token.strip():
        problem = "starts or ends with blank space"
    elif len(set(token)) < MIN_TOKEN_VARIETY:
        problem = f"has {len(set(token))} different characters, fewer than {MIN_TOKEN_VARIETY}"
    else:
        return token
    raise ValueError(f"{problem}: {MAKE_A_TOKEN}")


def _listed(value: object) -> object:
    """``"10.0.0.1, 10.2.0.0/16"`` (as the environment gives it) -> its items."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _registered(uri: str) -> str:
    """A models:/ URI of a registered model's version or alias, checked before any server is
    asked (MLflow is imported here only: ``inmarket --help`` does not wait for it)."""
    from training.registry import LATEST, RegistryError, parse_model_uri

    try:
        ref = parse_model_uri(uri)
    except RegistryError as exc:
        raise ValueError(str(exc)) from exc
    if ref is None or ref.version == LATEST:
        raise ValueError(
            f"{uri}: give models:/<name>@<alias> (watched) or models:/<name>/<version> (pinned)"
        )
    return uri


Token = Annotated[str, AfterValidator(_strong)]
ModelUri = Annotated[str, AfterValidator(_registered)]
Networks = Annotated[tuple[IPvAnyNetwork, ...], BeforeValidator(_listed)]


class SinkSettings(Section):
    """Where ``inmarket score`` and ``inmarket refresh`` write each published scoring run
    besides the files (``serving.sink``; the tables: docs/database-tables.md)."""

    to: str | None = Field(
        None,
        description="database the scores are written to as well, one transaction a run: "
        "postgresql://USER:${PGPASSWORD}@HOST:PORT/DB or duckdb:///path/file.duckdb; none: "
        "files only",
    )
    connect_seconds: int = Field(
        10, ge=1, le=600, description="how long connecting to the database may take"
    )

    @field_validator("to")
    @classmethod
    def _database(cls, url: str | None) -> str | None:
        """A URL the scores can be written to (``features.database``: credentials only as
        ``${NAME}`` references)."""
        if url is not None:
            DatabaseUrl(url)
        return url


class ServiceSettings(Section):
    """What the service serves (the champion of a store, a batch scoring) and how it guards it."""

    tracking: TrackingSettings = TrackingSettings()
    model: ModelUri | None = Field(
        None,
        description="models:/ URI served, resolved at start from the tracking URI; none: a "
        "Bento's snapshot, else the champion of the model name",
    )
    ranked: Path = Field(DEFAULT_RANKED, description="ranked accounts from `inmarket score`")
    token: Token | None = Field(
        None, description="bearer token; none: no authentication (loopback only)"
    )
    admin_token: Token | None = Field(None, description="bearer token for /admin/*; none: off")
    session_hours: float = Field(12.0, gt=0, le=24 * 30, description="how long a sign-in lasts")
    login_attempts: int = Field(5, ge=1, le=1000, description="wrong tokens per client a minute")
    login_ceiling: int = Field(
        60, ge=1, le=100_000, description="wrong tokens a minute from all clients together"
    )
    trusted_proxies: Networks = Field(
        (),
        description="proxies (addresses or networks) whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed; none: the connection's own address counts",
    )
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
                    f"{name} is set but empty: give a random token or unset it; {MAKE_A_TOKEN}"
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
                f"{_named(e['loc'], names)}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            ]
            raise ConfigError(f"service settings: {'; '.join(problems)}") from exc

    def proxies(self) -> list[str]:
        """The trusted proxies as uvicorn's forwarded-header middleware takes them."""
        return [str(network) for network in self.trusted_proxies]

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


def _named(location: tuple[int | str, ...], names: Mapping[str, str]) -> str:
    """The environment variable of a setting's error (``("trusted_proxies", 0)``)."""
    found = [names[str(part)] for part in location if str(part) in names]
    return found[0] if found else ".".join(map(str, location))


def _webhook(url: str) -> str:
    """A webhook URL, or a ``${NAME}`` reference to the environment variable that holds it;
    the message never repeats it (a Slack webhook URL is a secret)."""
    if REFERENCE.fullmatch(url) or urlsplit(url).scheme in ("http", "https"):
        return url
    raise ValueError("give an http(s):// URL, or ${NAME} to read it from the environment")


class AlertSettings(Section):
    """Where ``inmarket score`` and ``inmarket refresh`` send what changed since the previous
    period (``serving.webhook``), and how long they try."""

    webhook_url: Annotated[str, AfterValidator(_webhook)] | None = Field(
        None,
        description="POST the accounts that rose or fell here as JSON, one message per owner "
        "(Slack-compatible text); ${NAME} reads it from the environment variable NAME (a "
        "Slack webhook URL is a secret: keep it out of the file); none: no alerts",
    )
    attempts: int = Field(
        3, ge=1, le=10, description="tries per message (after a 5xx, 429, timeout, no connection)"
    )
    backoff_seconds: float = Field(
        1.0, ge=0, le=60, description="wait before the second try, doubled before each next"
    )
    request_seconds: float = Field(10.0, gt=0, le=120, description="time one request may take")
    time_limit_seconds: float = Field(
        30.0,
        gt=0,
        le=600,
        description="time all messages may take; what is not sent by then is kept for the next run",
    )
