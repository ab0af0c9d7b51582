"""What a score means: percentile score, stages, reasons in words, buying-group gaps."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import pandas as pd
import pytest

from serving.scoring import STAGES, buying_group, explain_rows, score_and_stage, score_rows
from tests.stores import client_of
from training.job import TrainResult
from training.registry import load_model


@pytest.fixture(scope="module")
def model(trained: tuple[Path, TrainResult]):  # type: ignore[no-untyped-def]
    store, result = trained
    client_of(store)
    return load_model(result.model_uri)


@pytest.fixture(scope="module")
def rows(world_features: Path) -> pd.DataFrame:
    return pd.read_parquet(world_features).sample(3000, random_state=1).reset_index(drop=True)


@pytest.mark.slow
def test_scores_are_percentiles_and_stages_follow_them(model, rows: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    scored = score_rows(model, rows)
    assert scored["score"].between(0, 100).all()
    order = np.argsort(scored["probability"].to_numpy())
    assert (np.diff(scored["score"].to_numpy()[order]) >= 0).all()  # monotone in probability
    assert set(scored["stage"]) <= {s for s, _ in STAGES}
    ready = scored.loc[scored["stage"] == "ready", "score"]
    assert ready.empty or ready.min() >= 97
    assert len(model.info["score_quantiles"]) == 101


def test_stage_thresholds() -> None:
    model = SimpleNamespace(info={"score_quantiles": list(np.linspace(0, 1, 101))})
    probabilities = np.array([0.0, 0.395, 0.405, 0.695, 0.705, 0.905, 0.975, 1.0])
    score, stage = score_and_stage(model, probabilities)  # type: ignore[arg-type]
    assert score.tolist() == [0, 39, 40, 69, 70, 90, 97, 100]
    assert stage.tolist() == [
        "cold",
        "cold",
        "aware",
        "aware",
        "engaged",
        "in-market",
        "ready",
        "ready",
    ]


def _contribution(reason: dict[str, object]) -> float:
    return cast(float, reason["contribution"])


@pytest.mark.slow
def test_reasons_are_sentences_signed_by_contribution(model, rows: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    hot = rows.sort_values("high_intent_events_30d", ascending=False).head(5)
    explained = explain_rows(model, hot)
    assert len(explained) == 5
    for reasons in explained:
        assert reasons["positive"] and all(_contribution(r) > 0 for r in reasons["positive"])
        assert all(_contribution(r) < 0 for r in reasons["negative"])
        assert all(
            isinstance(r["text"], str) and r["text"]
            for r in reasons["positive"] + reasons["negative"]
        )
        contributions = [_contribution(r) for r in reasons["positive"]]
        assert contributions == sorted(contributions, reverse=True)


def test_buying_group_names_the_missing_roles() -> None:
    frame = pd.DataFrame(
        {
            "role_decision_maker_engaged_90d": [0, 1],
            "role_champion_engaged_90d": [1, 1],
            "role_technical_evaluator_engaged_90d": [0, 1],
            "role_finance_engaged_90d": [1, 1],
            "role_user_engaged_90d": [1, 0],
            "role_influencer_engaged_90d": [0, 0],
        }
    )
    group = buying_group(frame)
    assert group.loc[0, "roles_missing"] == ["decision_maker", "influencer", "technical_evaluator"]
    assert (
        group.loc[0, "buying_group_gap"] == "no decision maker or technical evaluator engaged yet"
    )
    assert group.loc[1, "buying_group_gap"].endswith("all engaged")
    assert "champion" in group.loc[1, "roles_engaged"]


@pytest.mark.parametrize(
    ("feature", "value", "sentence"),
    [
        ("role_champion_engaged_90d", 0.0, "no champion engaged in the last 90 days"),
        ("role_decision_maker_engaged_90d", 1.0, "a decision maker engaged in the last 90 days"),
    ],
    ids=["role-not-engaged", "role-engaged"],
)
def test_role_flags_read_as_sentences(feature: str, value: float, sentence: str) -> None:
    from serving.scoring import _sentence

    assert _sentence(feature, value, {}) == sentence
