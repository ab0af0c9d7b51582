"""The features package's settings: where the tables are and how strictly they are read
(``DataSettings``), and the snapshot grid, windows and engine (``FeatureSettings``).

Each setting is defined here once; ``inmarket.config.Config`` composes these sections with
those of training and serving, and functions take the section they need.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from features.database import DatabaseUrl


class Section(BaseModel):
    """A settings section: unknown keys are an error, not silently ignored; values are frozen
    (a changed copy is made with ``model_copy(update=...)``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def describe_errors(exc: ValidationError) -> str:
    """pydantic's errors as one line: ``section.field: problem; ...``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
    )


class DataSettings(Section):
    """Where the tables are and how strictly they are read."""

    kind: Literal["folder", "sql"] = Field(
        "folder",
        description="what holds the tables: a folder of Parquet or CSV files, or a database "
        "(sql: [data] url; a database URL given as DATA implies it)",
    )
    url: str | None = Field(
        None,
        description="the database of kind sql: postgresql://USER:${PGPASSWORD}@HOST:PORT/DB or "
        "duckdb:///path/to/file.duckdb; ${NAME} is the environment variable NAME, read when "
        "connecting (a password must be one)",
    )
    tables: dict[str, str] = Field(
        default_factory=dict,
        description="kind sql: the database table (schema.table) or the query holding each "
        'canonical table, e.g. events = "analytics.web_events"; default: the table of the '
        "canonical name",
    )
    mapping: Path | None = Field(
        None,
        description="column-mapping file (TOML/YAML) for exports of another shape; for a "
        "database, each entry's file names its table or query",
    )
    extracted_at: datetime | None = Field(
        None,
        description="when the export was taken (UTC); rows dated later are rejected as late. "
        "Default: the time the source records (a folder's _extract.json), else now",
    )
    max_bad_share: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="above this share of unparsable values a column is a wrong file, not dirt",
    )

    @field_validator("url")
    @classmethod
    def _database_url(cls, url: str | None) -> str | None:
        return None if url is None else DatabaseUrl(url).text  # a ConfigError says what is wrong

    @field_validator("tables")
    @classmethod
    def _canonical_tables(cls, tables: dict[str, str]) -> dict[str, str]:
        # imported here: settings load before any table is read, without pandas or Arrow
        from features.contract import TABLE_ORDER
        from features.sql import check_relation

        unknown = sorted(set(tables) - set(TABLE_ORDER))
        if unknown:
            raise ValueError(f"unknown table(s) {unknown}; tables are {list(TABLE_ORDER)}")
        return {t: check_relation(r, f"[data.tables] {t}") for t, r in tables.items()}


BASE_WINDOW_DAYS = 90  # breadth, depth, lead points and recency are counted over 90 days
ColumnKind = Literal["static", "dated"]


class FeatureSpec(Section):
    """What defines the features, apart from the data: saved with every model, so that every
    path that builds features for that model (batch, Spark, HTTP) builds the same ones."""

    windows: tuple[int, ...] = Field(
        (7, 30, BASE_WINDOW_DAYS),
        description=f"windows of the windowed counts, in days (1-365); {BASE_WINDOW_DAYS} is "
        "always among them",
    )
    intent_delay_days: int = Field(
        7, ge=0, description="days before a weekly intent record is known"
    )
    new_people_days: int = Field(
        14, ge=1, description="a person is new when all their recent events fall in these days"
    )
    columns: dict[str, ColumnKind] = Field(
        default_factory=dict,
        description="account columns beyond the contract used as features: static (true at "
        "every snapshot) or dated (from the account_history table, as of each snapshot); "
        "any other column is ignored",
    )

    @field_validator("windows")
    @classmethod
    def _with_base_window(cls, windows: tuple[int, ...]) -> tuple[int, ...]:
        bad = [w for w in windows if not 1 <= w <= 365]
        if bad:
            raise ValueError(f"windows must be whole days from 1 to 365; got {bad}")
        return tuple(sorted({*windows, BASE_WINDOW_DAYS}))

    @property
    def lookback_days(self) -> int:
        """How far back from as_of event features look."""
        return max(self.windows)

    def spec(self) -> FeatureSpec:
        """Only the definition (a ``FeatureSettings`` also carries the grid and the engine)."""
        return FeatureSpec(**{name: getattr(self, name) for name in FeatureSpec.model_fields})


class FeatureSettings(FeatureSpec):
    """The snapshot grid and the engine that build the feature table, plus the definition of
    the features (``FeatureSpec``)."""

    every_days: int = Field(30, ge=1, description="days between snapshots")
    snapshots: int | None = Field(
        12, ge=1, description="how many snapshots back from the extract (--all-history: all)"
    )
    start: datetime | None = Field(
        None,
        description="the first snapshot of all history (snapshots = none); default: the first "
        "day the events fill the longest window",
    )
    engine: Literal["local", "spark"] = Field(
        "local", description="where the features are built: local processes, or Spark"
    )
    buckets: int | None = Field(None, ge=1, description="hash buckets of accounts")
    workers: int | None = Field(
        None, ge=1, description="worker processes of the local engine; default 2 (1 on one CPU)"
    )
    spark_master: str = Field(
        "local[*]", description="Spark master URL (local[*], spark://host:7077, yarn, k8s://...)"
    )

    def with_spec(self, spec: FeatureSpec) -> FeatureSettings:
        """This grid and engine, building the features ``spec`` defines (a model's)."""
        return self.model_copy(update=spec.spec().model_dump())
