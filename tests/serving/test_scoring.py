"""What a score means: percentile score, stages, reasons in words, buying-group gaps."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import pandas as pd
import pytest

from features.catalogue import catalogue
from features.settings import FeatureSpec
from serving.scoring import (
    STAGES,
    _sentence,
    buying_group,
    explain_rows,
    score_and_stage,
    score_rows,
    why_now,
)
from tests.stores import client_of
from tests.worlds import WORLD_SPEC
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
    ("feature", "value", "contribution", "sentence", "usual"),
    [
        ("role_champion_engaged_90d", 0.0, -0.2, "no champion engaged in the last 90 days", True),
        (
            "role_decision_maker_engaged_90d",
            1.0,
            0.3,
            "a decision maker engaged in the last 90 days",
            True,
        ),
        # a role engaged that holds the score back is no reason a marketer can read
        ("role_champion_engaged_90d", 1.0, -0.1, "a champion engaged in the last 90 days", False),
        ("role_champion_engaged_90d", 0.0, 0.1, "no champion engaged in the last 90 days", False),
        ("people_engaged_90d", 5.0, 0.2, "5 people engaged in the last 90 days", True),
        ("people_engaged_90d", 5.0, -0.2, "only 5 people engaged in the last 90 days", True),
        ("people_engaged_90d", 0.0, -0.2, "nobody engaged in the last 90 days", True),
        ("people_engaged_90d", 1.0, 0.2, "1 person engaged in the last 90 days", True),
        (
            "anonymous_events_30d",
            1.0,
            0.2,
            "1 anonymous visit from the account in the last 30 days",
            True,
        ),
        ("events_email_click_90d", 5.0, 0.1, "5 email clicks in the last 90 days", True),
        # an absence raising the score is said as it is: the model learned it
        ("events_content_download_90d", 0.0, 0.1, "no content downloads in the last 90 days", True),
        (
            "events_channel_web_90d",
            12.0,
            0.1,
            "12 interactions on the website in the last 90 days",
            True,
        ),
        ("days_since_last_event", float("nan"), -0.3, "no interaction in the last 90 days", True),
        ("days_since_last_event", 3.0, 0.3, "last interaction 3 days ago", True),
        (
            "seniority_max_30d",
            3.0,
            0.1,
            "the most senior person engaged in the last 30 days is a VP",
            True,
        ),
        (
            "top_person_share_90d",
            0.8,
            -0.1,
            "80% of known people's activity in the last 90 days came from one person",
            True,
        ),
        ("industry", "financial_services", 0.1, "industry: financial services", True),
        ("employee_count", 197.0, -0.1, "197 employees", True),
        (
            "contacts_added_90d",
            float("nan"),
            0.1,
            "not known yet: people who entered the CRM at the account in the last 90 days "
            "(missing: people.created_at not given)",
            True,
        ),
    ],
    ids=[
        "role-absent-holding-back",
        "role-engaged-raising",
        "role-engaged-holding-back",
        "role-absent-raising",
        "count-raising",
        "count-holding-back",
        "count-none",
        "one-person",
        "one-anonymous-visit",
        "event-type",
        "absence-raising",
        "channel",
        "recency-missing-is-none",
        "recency",
        "seniority-level",
        "share",
        "fit-category",
        "fit-number",
        "missing",
    ],
)
def test_reasons_read_the_right_way_round(
    feature: str, value: object, contribution: float, sentence: str, usual: bool
) -> None:
    # given a feature of the catalogue, its value and its contribution's sign
    words = {f.name: f for f in catalogue()}
    # when it is put in words, then the sentence reads right for that direction
    assert _sentence(words[feature], value, contribution) == (sentence, usual)


def test_a_declared_column_holding_numbers_is_said_as_it_is() -> None:
    # given a declared account column whose values are numbers (its words name no number)
    words = {f.name: f for f in catalogue(FeatureSpec(columns={"seats": "static"}))}
    # when a value of it is a reason, then it is said, not a KeyError
    assert _sentence(words["seats"], 1200.0, 0.3) == ("seats: 1,200", True)
    # in full, not in exponent notation (found in review: 1,234,567 read "1.23457e+06")
    assert _sentence(words["seats"], 1234567.0, 0.3) == ("seats: 1,234,567", True)
    assert _sentence(words["seats"], 0.125, 0.3) == ("seats: 0.125", True)


def test_every_feature_has_words_a_marketer_reads() -> None:
    # no reason falls back to a feature's description ("email click events, last 90 days: 5")
    assert [f.name for f in catalogue(WORLD_SPEC) if f.words is None] == []


class _Contributions:
    """A model of our own making for the reasons' assembly: given contributions, one row."""

    def __init__(self, contributions: dict[str, float]) -> None:
        self.features = list(contributions)
        self.spec = FeatureSpec()
        self._values = contributions

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame([self._values], index=frame.index)


def test_fit_is_kept_apart_from_why_now_and_unusual_directions_are_not_reasons() -> None:
    # given an account whose largest contributions are fit (size, industry), an engaged
    # champion holding the score back, then engagement raising it and thin breadth holding it back
    model = _Contributions(
        {
            "role_champion_engaged_90d": -0.6,
            "employee_count": 0.5,
            "industry": 0.4,
            "region": 0.35,
            "opportunities_lost_before": -0.3,
            "high_intent_events_30d": 0.2,
            "people_engaged_90d": 0.1,
            "departments_engaged_90d": -0.05,
        }
    )
    frame = pd.DataFrame(
        {
            "role_champion_engaged_90d": [1.0],
            "employee_count": [197.0],
            "industry": pd.Categorical(["software"]),
            "region": pd.Categorical(["emea"]),
            "opportunities_lost_before": [1.0],
            "high_intent_events_30d": [4.0],
            "people_engaged_90d": [6.0],
            "departments_engaged_90d": [1.0],
        }
    )
    # when its reasons are assembled
    reasons = explain_rows(model, frame)[0]  # type: ignore[arg-type]
    # then why now holds the timing reasons only, fit and history are labelled as fit (two a
    # side), the champion is not told as holding the score back, and each says its direction
    assert why_now(reasons) == (
        "4 pricing, demo, comparison or trial visits in the last 30 days; "
        "6 people engaged in the last 90 days"
    )
    assert [(r["feature"], r["kind"]) for r in reasons["positive"]] == [
        ("high_intent_events_30d", "now"),
        ("people_engaged_90d", "now"),
        ("employee_count", "fit"),
        ("industry", "fit"),
    ]
    assert [r["text"] for r in reasons["negative"]] == [
        "people from only 1 department engaged in the last 90 days",
        "1 deal lost before",
    ]
    assert {r["direction"] for r in reasons["negative"]} == {"holding it back"}
    assert {r["direction"] for r in reasons["positive"]} == {"raising the score"}
    assert [r["feature"] for r in reasons["unusual"]] == ["role_champion_engaged_90d"]
