"""Database URLs, read (``features.sql``) and written (``serving``) alike: which database, with
credentials that come from the environment, never from a file, a log or an error message.

A URL is ``postgresql://USER:${PGPASSWORD}@HOST:PORT/DB`` (a ``${NAME}`` anywhere in it is the
environment variable NAME, resolved only when connecting) or ``duckdb:///path/to/file.duckdb``
(the embedded default where a team has no server). A password written into the URL itself is
refused: config files are committed and logged, and so would it be.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from features.errors import ConfigError

Dialect = Literal["postgresql", "duckdb"]
_SCHEMES: dict[str, Dialect] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "postgresql+psycopg": "postgresql",
    "duckdb": "duckdb",
}
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # ${NAME}: the environment variable NAME
_HIDDEN = "***"
_SECRET_PARAMETERS = ("password", "sslpassword")  # libpq's, in a URL's query


def is_database_url(text: str | os.PathLike[str]) -> bool:
    """Whether ``text`` names a database (a URL of a known scheme) rather than a path."""
    return isinstance(text, str) and urlsplit(text).scheme.lower() in _SCHEMES


@dataclass(frozen=True)
class DatabaseUrl:
    """A database URL as written (``text``, with its ``${NAME}`` references unresolved): safe to
    keep in settings, pickle to Spark executors and log as ``shown``."""

    text: str

    def __post_init__(self) -> None:
        parts = urlsplit(self.text)
        if parts.scheme.lower() not in _SCHEMES:
            known = ", ".join(f"{s}://" for s in ("postgresql", "duckdb"))
            raise ConfigError(f"{self.shown}: not a database URL; use one of {known}")
        written = [parts.password, *(v for k, v in _secret_parameters(parts.query))]
        if any(p is not None and not REFERENCE.fullmatch(p) for p in written):
            raise ConfigError(
                f"{self.shown}: the URL holds a password; write ${{PGPASSWORD}} in its place "
                "and set that environment variable (or leave it out: libpq reads PGPASSWORD "
                "and ~/.pgpass itself)"
            )
        if self.dialect == "duckdb" and not self.path.name:
            raise ConfigError(f"{self.shown}: name the file, e.g. duckdb:///data/inmarket.duckdb")

    @property
    def dialect(self) -> Dialect:
        return _SCHEMES[urlsplit(self.text).scheme.lower()]

    @property
    def shown(self) -> str:
        """The URL for messages and logs: any password (or reference to one) hidden."""
        parts = urlsplit(self.text)
        if parts.password is not None:
            user = f"{parts.username}:" if parts.username else ":"
            host = parts.netloc.rsplit("@", 1)[-1]
            parts = parts._replace(netloc=f"{user}{_HIDDEN}@{host}")
        if any(True for _ in _secret_parameters(parts.query)):
            query = parse_qsl(parts.query, keep_blank_values=True)
            hidden = [(k, _HIDDEN if k.lower() in _SECRET_PARAMETERS else v) for k, v in query]
            parts = parts._replace(query=urlencode(hidden, safe="*"))
        return parts.geturl()

    @property
    def path(self) -> Path:
        """A DuckDB URL's file: ``duckdb:///abs/file`` is absolute, ``duckdb://rel/file`` not."""
        parts = urlsplit(self.text)
        return Path(unquote(parts.netloc + parts.path))

    def resolve(self) -> str:
        """The URL with every ``${NAME}`` replaced from the environment, percent-encoded so that
        a password may hold any character (for the driver only: never print it); the scheme is
        plain ``postgresql://`` for libpq."""
        missing = sorted({m for m in REFERENCE.findall(self.text) if m not in os.environ})
        if missing:
            raise ConfigError(
                f"{self.shown}: set the environment variable {', '.join(missing)} "
                "(the URL refers to it)"
            )
        resolved = REFERENCE.sub(lambda m: quote(os.environ[m.group(1)], safe=""), self.text)
        _, rest = resolved.split("://", 1)
        return f"{self.dialect}://{rest}" if self.dialect == "postgresql" else resolved

    def hide(self, message: object) -> str:
        """``message`` (a driver's error) in one line, with every password it could hold
        taken out (those the URL refers to, and libpq's own ``PGPASSWORD``): what an error may
        print."""
        text = " ".join(str(message).split())
        for name in {*REFERENCE.findall(self.text), "PGPASSWORD"}:
            if secret := os.environ.get(name):
                text = text.replace(quote(secret, safe=""), _HIDDEN).replace(secret, _HIDDEN)
        return text


def _secret_parameters(query: str) -> list[tuple[str, str]]:
    """The password parameters of a URL's query (libpq takes ``?password=`` too)."""
    return [
        (k, v)
        for k, v in parse_qsl(query, keep_blank_values=True)
        if k.lower() in _SECRET_PARAMETERS
    ]
