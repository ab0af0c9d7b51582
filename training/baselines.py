"""The baselines the model is measured against, on the same rows.

- ``mql_rule``: the honest, typical practice. Each known person earns lead points over the last
  90 days by the points table ``features.catalogue.MQL_POINTS`` (demo request 30, trial 30,
  form fill 15, webinar 15, pricing 10, comparison 10, content download 10, case study 5, email
  click 3, page view 1, email open 1; review sites and ads are invisible to a MAP), a person at
  100 points is an MQL, and accounts are ranked by their best person's points
  (``mql_points_max_90d``), as a sales team works its MQL queue.
- ``logistic``: logistic regression on the same features (standardised numbers, one-hot
  categories, missing values imputed).
- ``engagement``: total engagement count (``events_90d``).

Each baseline's score is turned into a probability on the validation window (Platt scaling),
so its Brier score is comparable; its rankings are its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from training.model import LABEL, feature_columns, platt

# baselines that are fixed functions of the features (no fitting but their calibration)
RULES = ("mql_rule", "engagement")


@dataclass
class Baseline:
    name: str
    score: Callable[[pd.DataFrame], np.ndarray]
    heavy_tailed: bool = True  # counts and points: calibrate on log1p of the score
    calibration: tuple[float, float] = (1.0, 0.0)

    def _x(self, frame: pd.DataFrame) -> np.ndarray:
        score = np.asarray(self.score(frame), dtype=float)
        return np.log1p(np.maximum(score, 0)) if self.heavy_tailed else score

    def calibrate(self, valid: pd.DataFrame) -> None:
        self.calibration = platt(self._x(valid), valid[LABEL].to_numpy())

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        a, b = self.calibration
        result: np.ndarray = 1.0 / (1.0 + np.exp(-(a * self._x(frame) + b)))
        return result


def _column(name: str) -> Callable[[pd.DataFrame], np.ndarray]:
    def score(frame: pd.DataFrame) -> np.ndarray:
        values: np.ndarray = frame[name].fillna(0).to_numpy(dtype=float)
        return values

    return score


def fit_baselines(train: pd.DataFrame, valid: pd.DataFrame, seed: int) -> list[Baseline]:
    features = feature_columns(train)
    categorical = [c for c in features if isinstance(train[c].dtype, pd.CategoricalDtype)]
    numeric = [c for c in features if c not in categorical]
    pipeline = make_pipeline(
        ColumnTransformer(
            [
                (
                    "num",
                    make_pipeline(
                        SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()
                    ),
                    numeric,
                ),
                (
                    "cat",
                    make_pipeline(
                        SimpleImputer(strategy="constant", fill_value="missing"),
                        OneHotEncoder(handle_unknown="ignore"),
                    ),
                    categorical,
                ),
            ]
        ),
        LogisticRegression(C=0.1, max_iter=2000, random_state=seed),
    )

    def as_text(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[features].astype({c: "object" for c in categorical})

    pipeline.fit(as_text(train), train[LABEL].to_numpy())

    def logistic(frame: pd.DataFrame) -> np.ndarray:
        logit: np.ndarray = pipeline.decision_function(as_text(frame))
        return logit

    baselines = [
        Baseline("mql_rule", _column("mql_points_max_90d")),
        Baseline("logistic", logistic, heavy_tailed=False),
        Baseline("engagement", _column("events_90d")),
    ]
    for baseline in baselines:
        baseline.calibrate(valid)
    return baselines
