"""The model as MLflow serves it (probabilities, not classes) and as the service predicts with
it (a NumPy matrix, the same numbers as LightGBM's pandas path)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from tests.stores import client_of
from training.job import TrainResult
from training.registry import load_model

pytestmark = pytest.mark.slow


def test_pyfunc_returns_probabilities_not_classes(
    trained: tuple[Path, TrainResult], world_features: Path
) -> None:
    # given the trained model and 2,000 rows with categories as strings, as JSON has them
    store, result = trained
    client_of(store)
    rows = pd.read_parquet(world_features).sample(2000, random_state=0)
    rows = rows.astype({c: "str" for c in ("industry", "region", "employee_band")})  # as JSON
    # when the model is loaded as an MLflow pyfunc and predicts them
    probabilities = mlflow.pyfunc.load_model(result.model_uri).predict(rows)
    # then the answers are many distinct probabilities, not 0/1 classes
    assert probabilities.min() >= 0 and probabilities.max() <= 1
    assert len(np.unique(probabilities)) > 20 and not set(np.unique(probabilities)) <= {0, 1}


def test_matrix_predictions_equal_the_pandas_path(
    trained: tuple[Path, TrainResult], world_features: Path
) -> None:
    """The serving path predicts from a NumPy matrix; LightGBM's own pandas path is the
    reference: same margins and contributions, unknown categories treated as missing."""
    from training.model import prepare

    # given the trained model and 3,000 feature rows, some with a missing industry and one
    # with an unknown region, and LightGBM's answers on its pandas path
    model = load_model(trained[1].model_uri)
    frame = pd.read_parquet(world_features).head(3000)
    frame.loc[frame.index[:50], "industry"] = pd.NA
    reference = prepare(frame, model.features, model.categories)
    expected = model.booster.predict(reference, raw_score=True)
    rows = frame.astype({c: "object" for c in model.categories}).to_dict(orient="records")
    rows[0]["region"] = "atlantis"  # unknown: missing, as LightGBM does with pandas
    # when the model predicts from the frame, from the records' matrix, and explains
    from_frame = model.predict(frame, raw_score=True)
    from_records = model.predict(model.matrix_from_records(rows), raw_score=True)
    explained = model.contributions(frame.iloc[1:200]).to_numpy()
    # then margins and contributions are LightGBM's own, exactly
    assert np.array_equal(from_frame, expected)
    reference.loc[reference.index[0], "region"] = None
    expected[0] = model.booster.predict(reference.iloc[:1], raw_score=True)[0]
    assert np.array_equal(from_records, expected)
    contributions = np.asarray(model.booster.predict(reference.iloc[1:200], pred_contrib=True))[
        :, :-1
    ]
    assert np.array_equal(explained, contributions)
