"""Metrics: fair ties at the top-10% cut, lift, recall, lead time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.metrics import deal_warnings, evaluate_scores, lead_times, top_share_weights


def test_ties_at_the_cut_share_the_places_left() -> None:
    scores = np.array([5.0, 3, 3, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    weights = top_share_weights(scores, 0.10)  # 2 places: one for 5, one shared by four 3s
    assert weights.sum() == pytest.approx(2)
    assert weights[0] == 1 and weights[1:5] == pytest.approx([0.25] * 4)
    assert top_share_weights(np.zeros(10), 0.1).sum() == pytest.approx(1)


def test_lift_and_recall_in_the_top_decile_per_snapshot() -> None:
    rng = np.random.default_rng(0)
    labels = np.zeros(200)
    labels[[0, 1, 100, 150]] = 1
    as_of = np.repeat(["a", "b"], 100)
    perfect = labels + rng.random(200) * 0.1
    m = evaluate_scores(perfect, np.full(200, 0.02), labels, as_of)
    assert m["recall_at_10"] == 1.0
    assert m["lift_at_10"] == pytest.approx((4 / 20) / (4 / 200))
    assert m["roc_auc"] == 1.0
    flat = evaluate_scores(np.zeros(200), np.full(200, 0.02), labels, as_of)
    assert flat["recall_at_10"] == pytest.approx(0.1)
    assert flat["lift_at_10"] == pytest.approx(1.0)


def test_lead_time_counts_from_the_first_flagged_snapshot() -> None:
    as_of = pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01"], utc=True)
    frame = pd.DataFrame(
        {"account_id": np.repeat([f"A{i}" for i in range(10)], 3), "as_of": np.tile(as_of, 10)}
    )
    scores = np.where(frame["account_id"] == "A0", 1.0, 0.0)
    scores[0] = 0.0  # A0 is not flagged in January, then is from February on
    opps = pd.DataFrame(
        {
            "account_id": ["A0"],
            "type": ["new_business"],
            "status": ["won"],
            "created_at": pd.to_datetime(["2025-03-15"], utc=True),
        }
    )
    deals, warnings = deal_warnings(frame, {"m": scores}, opps, horizon_days=90)
    leads = lead_times(warnings)
    assert len(deals) == 1 and leads["m"][1] == 1
    assert leads["m"][0] == pytest.approx(
        (pd.Timestamp("2025-03-15") - pd.Timestamp("2025-02-01")).days
    )


def test_lead_time_is_measured_on_the_same_deals_for_every_method() -> None:
    # given two later-won deals: method "early" flags both a month ahead, "one" flags only A0,
    # two months ahead (its own flagged deals alone would make it look earlier)
    as_of = pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01"], utc=True)
    frame = pd.DataFrame(
        {"account_id": np.repeat([f"A{i}" for i in range(10)], 3), "as_of": np.tile(as_of, 10)}
    )
    account, month = frame["account_id"].to_numpy(), frame["as_of"].dt.month.to_numpy()
    early = np.where(np.isin(account, ["A0", "A1"]) & (month >= 3), 1.0, 0.0)
    one = np.where((account == "A0") & (month >= 2), 1.0, 0.0)
    opps = pd.DataFrame(
        {
            "account_id": ["A0", "A1"],
            "type": ["new_business"] * 2,
            "status": ["won"] * 2,
            "created_at": pd.to_datetime(["2025-03-31", "2025-03-31"], utc=True),
        }
    )
    # when lead times are measured
    deals, warnings = deal_warnings(frame, {"early": early, "one": one}, opps, horizon_days=90)
    leads = lead_times(warnings)
    # then both are averaged over the same two deals, the unflagged one counting 0 days
    assert len(deals) == 2
    assert leads["early"] == (pytest.approx(30.0), 2)
    assert leads["one"] == (pytest.approx(58 / 2), 1)
