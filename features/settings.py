"""The features package's settings: where the tables are and how strictly they are read
(``DataSettings``), and the snapshot grid, windows and engine (``FeatureSettings``).

Each setting is defined here once; ``inmarket.config.Config`` composes these sections with
those of training and serving, and functions take the section they need.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


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

    path: Path | None = None
    mapping: Path | None = Field(None, description="column-mapping file (TOML/YAML) for exports")
    extracted_at: datetime | None = Field(
        None,
        description="when the export was taken; rows dated later are rejected as late/clock-skewed."
        " Default: the folder's _extract.json, else now.",
    )
    max_bad_share: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="above this share of unparsable values a column is a wrong file, not dirt",
    )


class FeatureSettings(Section):
    """The snapshot grid, the feature windows and the engine that builds the feature table."""

    every_days: int = Field(30, ge=1, description="days between snapshots")
    snapshots: int | None = Field(
        12, ge=1, description="how many snapshots back from the extract; none = all history"
    )
    windows: tuple[int, ...] = (7, 30, 90)
    intent_delay_days: int = Field(
        7, ge=0, description="days before a weekly intent record is known"
    )
    new_people_days: int = Field(
        14, ge=1, description="a person is new when all their recent events fall in these days"
    )
    engine: Literal["local", "spark"] = "local"
    buckets: int | None = Field(None, ge=1, description="hash buckets; default ~1M events each")
    spark_master: str = "local[*]"
