"""Labels, time split, LightGBM, baselines, evaluation, the MLflow store and the promotion gate.

The public API, by the module that holds each name. A name is imported from its module on first
use, so ``import training.settings`` (the CLI, the service's settings) stays light: MLflow and
LightGBM take seconds to import."""

from features.lazy import public_names

__all__, __getattr__ = public_names(
    __name__,
    {
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
    },
)
