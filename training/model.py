"""The in-market model: LightGBM with early stopping, calibrated on the validation window.

Calibration is Platt scaling of the booster's margin, fitted on validation rows only (what
``CalibratedClassifierCV(FrozenEstimator(model), method="sigmoid")`` does): it is monotone,
so rankings are the booster's, and two parameters stay stable with few positives. The model is
saved as plain files (the booster's text model and a JSON of features, categories and
calibration), and wrapped as an MLflow pyfunc that returns probabilities.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel
from sklearn.linear_model import LogisticRegression

from features.catalogue import META_COLUMNS
from features.encode import take_codes
from features.settings import FeatureSpec
from training.settings import LightGBMParams

LABEL = "label"
BOOSTER_FILE, META_FILE = "booster.txt", "model.json"
# logged as the pyfunc's code (MLflow's models from code): loading a model runs this file
# instead of unpickling an object
PYFUNC_CODE = Path(__file__).with_name("pyfunc_code.py")


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The model's input columns of a feature table: all but the meta columns and the label."""
    return [c for c in frame.columns if c not in (*META_COLUMNS, LABEL)]


def prepare(
    frame: pd.DataFrame, features: list[str], categories: dict[str, list[str]]
) -> pd.DataFrame:
    """The model's columns in the model's order and dtypes; unknown categories become missing."""
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise ValueError(f"features missing from the input: {missing[:5]}")
    numeric = [c for c in features if c not in categories]
    as_float = frame[numeric]
    if not all(pd.api.types.is_float_dtype(t) for t in as_float.dtypes):
        as_float = as_float.apply(pd.to_numeric, errors="coerce")
    columns: dict[str, Any] = dict(zip(numeric, as_float.to_numpy(dtype="float64").T, strict=True))
    for name in categories:
        values = frame[name]
        columns[name] = pd.Categorical(
            values.astype("str").where(values.notna()), categories=categories[name]
        )
    return pd.DataFrame(columns, index=frame.index)[features]


def _category_codes(values: pd.Series | np.ndarray, categories: list[str]) -> np.ndarray:
    """Category values -> LightGBM's codes (position in ``categories``); unknown or missing
    values -> NaN, exactly what LightGBM does with a pandas categorical column. Looked up once
    per distinct value, as text."""
    codes, uniques = pd.factorize(values)
    position = {c: float(i) for i, c in enumerate(categories)}
    found = np.array([position.get(str(u), np.nan) for u in uniques], dtype="float64")
    return take_codes(found, codes, np.nan)


@dataclass
class InMarketModel:
    """A trained booster with its features, categories, calibration and training facts, and
    the specification its features were built with (every scoring builds them alike)."""

    booster: lgb.Booster
    features: list[str]
    categories: dict[str, list[str]]
    calibration: tuple[float, float] = (1.0, 0.0)  # probability = sigmoid(a * margin + b)
    info: dict[str, Any] = field(default_factory=dict)
    spec: FeatureSpec = FeatureSpec()

    @property
    def category_levels(self) -> dict[str, tuple[str, ...]]:
        """The categories' levels as ``build_features`` takes them."""
        return {name: tuple(levels) for name, levels in self.categories.items()}

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The model's input matrix: its features in its order, categories as codes.

        Predicting from this matrix gives the same numbers as from ``prepare``'s pandas frame
        (a test checks) without LightGBM's pandas conversion, which costs ~1.5 ms a call."""
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise ValueError(f"features missing from the input: {missing[:5]}")
        numeric = [c for c in self.features if c not in self.categories]
        as_float = frame[numeric]
        if not all(pd.api.types.is_float_dtype(t) for t in as_float.dtypes):
            as_float = as_float.apply(pd.to_numeric, errors="coerce")
        x = np.empty((len(frame), len(self.features)), dtype="float64")
        positions = {name: i for i, name in enumerate(self.features)}
        x[:, [positions[c] for c in numeric]] = as_float.to_numpy(dtype="float64", na_value=np.nan)
        for name, categories in self.categories.items():
            x[:, positions[name]] = _category_codes(frame[name], categories)
        return x

    def matrix_from_records(self, records: list[dict[str, Any]]) -> np.ndarray:
        """The same matrix from records (dicts of feature -> value; None is missing)."""
        x = np.array(
            [
                [row.get(f) if f not in self.categories else None for f in self.features]
                for row in records
            ],
            dtype="float64",
        ).reshape(len(records), len(self.features))
        for name, categories in self.categories.items():
            values = np.array([row.get(name) for row in records], dtype=object)
            x[:, self.features.index(name)] = _category_codes(values, categories)
        return x

    def predict(self, data: pd.DataFrame | np.ndarray, *, raw_score: bool = False) -> np.ndarray:
        """Calibrated probabilities (or, with ``raw_score``, the booster's margin) of a feature
        frame or of a matrix made by ``matrix``/``matrix_from_records``."""
        x = self.matrix(data) if isinstance(data, pd.DataFrame) else data
        # one thread for small requests: thread start-up dominates (docs/architecture.md)
        margin = np.asarray(
            self.booster.predict(x, raw_score=True, num_threads=1 if len(x) < 64 else 0),
            dtype=float,
        )
        if raw_score:
            return margin
        a, b = self.calibration
        probability: np.ndarray = 1.0 / (1.0 + np.exp(-(a * margin + b)))
        return probability

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-feature contributions to the margin (SHAP values from ``pred_contrib``)."""
        x = self.matrix(frame)
        values = self.booster.predict(x, pred_contrib=True, num_threads=1 if len(x) < 64 else 0)
        return pd.DataFrame(np.asarray(values)[:, :-1], columns=self.features, index=frame.index)

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / BOOSTER_FILE))
        meta = {
            "features": self.features,
            "categories": self.categories,
            "calibration": list(self.calibration),
            "info": self.info,
            "spec": self.spec.model_dump(mode="json"),
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: Path) -> InMarketModel:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        booster = lgb.Booster(model_file=str(folder / BOOSTER_FILE))
        a, b = meta["calibration"]
        spec = FeatureSpec.model_validate(meta.get("spec", {}))
        return cls(booster, meta["features"], meta["categories"], (a, b), meta["info"], spec)


def fit_model(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    *,
    seed: int,
    params: LightGBMParams,
    spec: FeatureSpec,
) -> InMarketModel:
    """Train on ``train``, stop early and calibrate on ``valid``; deterministic for a seed."""
    features = feature_columns(train)
    categories = {
        c: [str(v) for v in train[c].cat.categories]
        for c in features
        if isinstance(train[c].dtype, pd.CategoricalDtype)
    }
    x_train = prepare(train, features, categories)
    x_valid = prepare(valid, features, categories)
    dtrain = lgb.Dataset(x_train, train[LABEL].to_numpy(), free_raw_data=False)
    dvalid = lgb.Dataset(x_valid, valid[LABEL].to_numpy(), reference=dtrain)
    booster = lgb.train(
        params.booster_params(seed),
        dtrain,
        num_boost_round=params.max_rounds,
        valid_sets=[dvalid],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
    )
    booster.best_iteration = booster.best_iteration or booster.current_iteration()
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
    model = InMarketModel(
        booster,
        features,
        categories,
        info={"best_iteration": booster.current_iteration()},
        spec=spec,
    )
    model.calibration = platt(model.predict(valid, raw_score=True), valid[LABEL].to_numpy())
    return model


def platt(margin: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Fit probability = sigmoid(a * margin + b) on held-out rows."""
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(margin.reshape(-1, 1), labels)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


class InMarketPyfunc(PythonModel):  # type: ignore[misc]
    """MLflow wrapper: feature records in, calibrated probabilities out; ``PYFUNC_CODE``
    makes one, and the model's files are its artifact ``model``."""

    def load_context(self, context: Any) -> None:
        self.model = InMarketModel.load(Path(context.artifacts["model"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        return self.model.predict(model_input)
