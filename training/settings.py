"""The training package's settings: labels, the time split and the model (``TrainSettings``,
with LightGBM's parameters in ``LightGBMParams``), and the MLflow store (``TrackingSettings``).
Each is defined here once; ``inmarket.config.Config`` composes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from features.settings import Section


class LightGBMParams(Section):
    """The booster's parameters; the objective and determinism are fixed in ``booster_params``."""

    learning_rate: float = Field(0.03, gt=0, le=1)
    num_leaves: int = Field(15, ge=2)
    min_data_in_leaf: int = Field(50, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    lambda_l2: float = Field(1.0, ge=0)
    max_rounds: int = Field(2000, ge=1)
    early_stopping_rounds: int = Field(100, ge=1)
    num_threads: int = Field(2, ge=1)

    def booster_params(self, seed: int) -> dict[str, Any]:
        return {
            "objective": "binary",
            "metric": "average_precision",
            "verbosity": -1,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1,
            "lambda_l2": self.lambda_l2,
            "seed": seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
        }


class TrainSettings(Section):
    """Labels, the time split and the model."""

    label: Literal["won", "opportunity"] = Field(
        "won", description="what a positive is: a new-business deal won, or only created"
    )
    horizon_days: int = Field(90, ge=7, description="label window after as_of")
    include_customers: bool = False
    every_days: int = Field(14, ge=1, description="days between training snapshots")
    test_days: int = Field(120, ge=1, description="the last days of labelled snapshots: test")
    validation_days: int = Field(90, ge=1, description="validation window before the test")
    seed: int = Field(7, description="random seed of the model and the baselines")
    lightgbm: LightGBMParams = LightGBMParams()
    shuffle_labels: bool = Field(
        False, description="permutation check: train on shuffled labels, test ROC AUC ~0.5"
    )
    short_history: bool = Field(
        True,
        description="when the history cannot hold time windows with embargoes, cross-validate "
        "over groups of accounts instead (recorded on the run); off: refuse",
    )
    folds: int = Field(5, ge=3, le=10, description="groups of accounts in short-history mode")
    ablations: bool = Field(
        True,
        description="also train without third-party intent and on buying-group features only, "
        "scored on the same test rows",
    )
    bootstrap_rounds: int = Field(
        500, ge=0, description="account-bootstrap replicates behind every interval (0: none)"
    )
    confidence: float = Field(0.95, gt=0, lt=1, description="of the intervals, two-sided")


class PromotionSettings(Section):
    """The gate between challenger and champion (``inmarket promote``)."""

    metric: Literal["pr_auc", "roc_auc", "recall_at_10"] = Field(
        "pr_auc", description="what a challenger must gain over the champion"
    )
    rule_metric: Literal["pr_auc", "roc_auc", "recall_at_10"] = Field(
        "recall_at_10",
        description="what the first model must gain over the MQL rule: recall in the top 10% "
        "(lead points tie most accounts at 0, which sinks the rule's PR AUC, not its top 10%)",
    )
    confidence: float = Field(
        0.95,
        gt=0.5,
        lt=1,
        description="a challenger is promoted when its paired-bootstrap gain over the champion "
        "(or, for the first model, the MQL rule) is above zero at this one-sided confidence",
    )
    rounds: int = Field(1000, ge=100, description="paired account-bootstrap replicates")
    seed: int = 7
    min_shared_accounts: float = Field(
        0.5,
        ge=0,
        le=1,
        description="share of the challenger's test accounts the champion's test rows must "
        "hold; below it the two were trained on other datasets and are not compared",
    )


class TrackingSettings(Section):
    """The MLflow store and registry: a SQLite file under ``store``, or a team's tracking server
    (``uri``). ``project`` names one dataset's models: its registered model and experiment are
    ``inmarket-<project>`` unless named here, so two exports never share versions, aliases or
    a gate."""

    store: Path = Field(Path("mlruns"), description="folder of the SQLite store and artifacts")
    uri: str | None = Field(
        None,
        description="MLflow tracking server (http://host:5000) or database URI; unset: "
        "MLFLOW_TRACKING_URI, else SQLite under the store",
    )
    request_retries: int = Field(
        3,
        ge=0,
        le=10,
        description="retries of a request a tracking server failed (no connection, 5xx): the "
        "first at once, then after 2, 4, 8... s; then the command stops with exit 4",
    )
    request_timeout_seconds: int = Field(
        15, ge=1, le=600, description="how long one request waits for a tracking server's answer"
    )
    project: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        description="the dataset's name: its model and experiment are inmarket-<project>",
    )
    experiment: str = "inmarket"
    model_name: str = "inmarket"

    @model_validator(mode="before")
    @classmethod
    def _name_the_project(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("project"):
            named = f"inmarket-{values['project']}"
            values = {"experiment": named, "model_name": named, **values}
        return values
