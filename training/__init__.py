"""Labels, time split, LightGBM, baselines, evaluation, the MLflow store and the promotion gate.

The public API, by the module that holds each name. A name is imported from its module on first
use, so ``import training.settings`` (the CLI, the service's settings) stays light: MLflow and
LightGBM take seconds to import."""

from __future__ import annotations

from importlib import import_module
from typing import Any

_PUBLIC = {
    "job": ("TrainJob", "EvaluateJob", "TrainResult"),
    "forecast": ("ForecastJob",),
    "evaluation": ("Evaluation",),
    "promotion": ("promote", "roll_back", "Promotion"),
    "registry": (
        "connect",
        "load_model",
        "resolve_version",
        "parse_model_uri",
        "champion_uri",
        "version_uri",
        "ModelRef",
        "fail_abandoned_runs",
        "CHALLENGER",
        "CHAMPION",
        "RegistryError",
    ),
    "settings": ("TrainSettings", "LightGBMParams", "PromotionSettings", "TrackingSettings"),
    "model": ("InMarketModel",),
    "labels": ("label_words",),
    "split": ("SplitError",),
    "drift": ("drift_report", "PSI_WARNING"),
}
_MODULE_OF = {name: module for module, names in _PUBLIC.items() for name in names}
__all__ = list(_MODULE_OF)


def __getattr__(name: str) -> Any:
    """A public name, imported from its module the first time it is asked for."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'training' has no attribute {name!r}")
    return getattr(import_module(f"training.{_MODULE_OF[name]}"), name)
