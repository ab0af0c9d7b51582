"""One configuration object: defaults, then an optional TOML/YAML file, then CLI flags.

``Config`` composes the sections each package defines for itself (``[refresh]``, read by this
package's ``inmarket refresh`` alone, is defined here); the jobs receive the sections they
need, never the whole object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from features.errors import ConfigError
from features.io import read_structured_file
from features.settings import DataSettings, FeatureSettings, Section, describe_errors
from inmarket.synthetic import WorldSpec
from serving.settings import AlertSettings, SinkSettings
from training.settings import PromotionSettings, TrackingSettings, TrainSettings


class RefreshSettings(Section):
    """When ``inmarket refresh`` retrains (``inmarket.refresh``): besides a new labelled window
    in the data, when the project's newest model is this old."""

    retrain_after_days: int = Field(
        30,
        ge=0,
        description="retrain when the newest model of the project (the champion, or a "
        "challenger the gate refused since) was registered more than this many days ago, by "
        "the clock, unless it was trained on this very data",
    )


class Config(Section):
    """Every section: ``[data]``, ``[generate]``, ``[features]``, ``[train]``, ``[tracking]``,
    ``[promotion]``, ``[refresh]``, ``[sink]``, ``[alerts]``."""

    data: DataSettings = DataSettings()
    generate: WorldSpec = WorldSpec()
    features: FeatureSettings = FeatureSettings()
    train: TrainSettings = TrainSettings()
    tracking: TrackingSettings = TrackingSettings()
    promotion: PromotionSettings = PromotionSettings()
    refresh: RefreshSettings = RefreshSettings()
    sink: SinkSettings = SinkSettings()
    alerts: AlertSettings = AlertSettings()


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into ``base``; a None in ``update`` means "not given"."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict):
            merged[key] = _deep_merge(merged.get(key) or {}, value)
        elif value is not None:
            merged[key] = value
    return merged


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
        raise ConfigError(f"invalid configuration{where}: {describe_errors(exc)}") from exc
