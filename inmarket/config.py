"""One configuration object: defaults, then an optional TOML/YAML file, then CLI flags."""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Section):
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


class GenerateConfig(_Section):
    """The synthetic world."""

    accounts: int = Field(5000, ge=1)
    seed: int = 7
    start: datetime = datetime(2024, 7, 1)
    days: int = Field(730, ge=120, description="length of history")
    dirty: bool = False
    in_market_quarterly: float = Field(
        0.05, gt=0, lt=0.5, description="share of non-customers in-market in a given quarter"
    )


class FeaturesConfig(_Section):
    """The snapshot grid and the engine that builds the feature table."""

    every_days: int = Field(30, ge=1, description="days between snapshots")
    snapshots: int | None = Field(
        12, ge=1, description="how many snapshots back from the extract; none = all history"
    )
    windows: tuple[int, ...] = (7, 30, 90)
    intent_delay_days: int = Field(
        7, ge=0, description="days before a weekly intent record is known"
    )
    engine: Literal["local", "spark"] = "local"
    buckets: int | None = Field(None, ge=1, description="hash buckets; default ~2M events each")
    spark_master: str = "local[*]"


class TrainConfig(_Section):
    """Labels, the time split and the model."""

    label: Literal["won", "opportunity"] = "won"
    horizon_days: int = Field(90, ge=7, description="label window after as_of")
    include_customers: bool = False
    every_days: int = Field(14, ge=1, description="days between training snapshots")
    test_days: int = Field(120, ge=1, description="the last days of labelled snapshots: test")
    validation_days: int = Field(90, ge=1, description="validation window before the test")
    seed: int = 7
    learning_rate: float = Field(0.03, gt=0, le=1)
    num_leaves: int = Field(15, ge=2)
    min_data_in_leaf: int = Field(50, ge=1)
    max_rounds: int = Field(2000, ge=1)
    early_stopping_rounds: int = Field(100, ge=1)
    shuffle_labels: bool = Field(
        False, description="permutation check: train on shuffled labels, test ROC AUC ~0.5"
    )


class TrackingConfig(_Section):
    """The MLflow store and registry."""

    store: Path = Field(Path("mlruns"), description="folder of the SQLite store and artifacts")
    uri: str | None = Field(None, description="tracking URI; default sqlite under store")
    experiment: str = "inmarket"
    model_name: str = "inmarket"


class Config(_Section):
    data: DataConfig = DataConfig()
    generate: GenerateConfig = GenerateConfig()
    features: FeaturesConfig = FeaturesConfig()
    train: TrainConfig = TrainConfig()
    tracking: TrackingConfig = TrackingConfig()


class ConfigError(ValueError):
    """A configuration file or flag that cannot be used."""


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into ``base``; a None in ``update`` means "not given"."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict):
            merged[key] = _deep_merge(merged.get(key) or {}, value)
        elif value is not None:
            merged[key] = value
    return merged


def read_structured_file(path: Path) -> dict[str, Any]:
    """Read a TOML or YAML file into a dict, naming the file on any error."""
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() in {".yaml", ".yml"}:
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"{path}: use a .toml, .yaml or .yml file")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot be parsed: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a table of sections")
    return data


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Build the config: defaults, then the file at ``path``, then ``overrides`` (CLI flags)."""
    values: dict[str, Any] = {}
    if path is not None:
        values = read_structured_file(path)
    if overrides:
        values = _deep_merge(values, overrides)
    try:
        return Config.model_validate(values)
    except ValidationError as exc:
        where = f" in {path}" if path else ""
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration{where}: {problems}") from exc
