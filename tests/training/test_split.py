"""The time split's embargo: no label window of one part reaches into the next. Short-history
mode's groups of accounts: no account in two, positives in every group, and a refusal below the
minimum that says what is missing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.settings import TrainSettings
from training.split import (
    SHORT_MIN_POSITIVES,
    Split,
    SplitError,
    grouped_folds,
    label_and_split,
    time_split,
)


def _daily_history(horizon_days: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """Daily snapshots of 40 accounts over two years, their won deals, the export time: the
    even accounts win a deal every 30 days, each closed the day it is created (so a positive
    label is decided early, and only the embargo keeps it out of the next part), the odd
    accounts never do."""
    days = pd.date_range("2024-01-01", "2025-12-31", freq="D", tz="UTC")
    accounts = [f"A{i}" for i in range(40)]
    snapshots = pd.DataFrame(
        {
            "account_id": np.repeat(accounts, len(days)),
            "as_of": np.tile(days, len(accounts)),
            "in_pipeline": 0,
            "is_customer": 0,
        }
    )
    created = [
        (account, day)
        for k, account in enumerate(accounts[::2])
        for day in pd.date_range(days[0] + pd.Timedelta(days=k), days[-1], freq="30D")
    ]
    deals = pd.DataFrame(created, columns=["account_id", "created_at"]).assign(
        type="new_business", status="won"
    )
    deals["closed_at"] = deals["created_at"]
    return snapshots, deals, days[-1] + pd.Timedelta(days=horizon_days)


def _snapshots(accounts: int, positives: int) -> pd.DataFrame:
    ids = np.repeat([f"A{i}" for i in range(accounts)], 3)
    as_of = np.tile(pd.to_datetime(["2025-01-01", "2025-01-15", "2025-01-29"], utc=True), accounts)
    label = np.zeros(len(ids), dtype=np.int64)
    label[: positives * 3 : 3] = 1  # one positive snapshot for each of the first accounts
    return pd.DataFrame({"account_id": ids, "as_of": as_of, "label": label})


@pytest.mark.parametrize("horizon_days", [60, 90])
def test_no_label_window_reaches_into_the_next_window(horizon_days: int) -> None:
    # given daily snapshots over two years, positives among them decided the day they are won
    snapshots, deals, exported = _daily_history(horizon_days)
    settings = TrainSettings(horizon_days=horizon_days, test_days=120, validation_days=90)
    # when they are labelled and split in time
    _, _, split = label_and_split(snapshots, deals, exported.to_pydatetime(), settings)
    # then every training snapshot's label window, as_of + horizon, ends before the first
    # validation snapshot, and every validation one's before the first test snapshot: the
    # embargo between them is one whole horizon
    assert isinstance(split, Split)
    horizon = pd.Timedelta(days=horizon_days)
    assert split.train["as_of"].max() + horizon < split.valid["as_of"].min()
    assert split.valid["as_of"].max() + horizon < split.test["as_of"].min()
    # and no longer than that: the last training snapshot is the one a horizon before
    day = pd.Timedelta(days=1)
    assert split.valid["as_of"].min() - split.train["as_of"].max() == horizon + day


def test_no_account_is_in_two_groups_and_each_group_has_positives() -> None:
    folds = grouped_folds(_snapshots(500, 25), folds=5, seed=7, reason="short")
    groups = pd.DataFrame({"account": folds.rows["account_id"], "fold": folds.fold})
    assert (groups.groupby("account")["fold"].nunique() == 1).all()
    for k in range(5):
        train, valid, test = folds.part(k)
        assert test["label"].sum() > 0 and valid["label"].sum() > 0
        assert not set(test["account_id"]) & set(train["account_id"])
        assert not set(valid["account_id"]) & set(train["account_id"])
    assert len(folds.train) + len(folds.valid) == len(folds.rows)


def test_below_the_minimum_it_says_what_is_missing() -> None:
    with pytest.raises(SplitError, match=f"needs at least {SHORT_MIN_POSITIVES} accounts with"):
        grouped_folds(_snapshots(500, SHORT_MIN_POSITIVES - 1), folds=5, seed=7, reason="short")


def test_positive_snapshots_of_few_accounts_are_not_enough() -> None:
    # given twelve positive snapshots, all of two accounts (one won deal labels several)
    rows = _snapshots(500, 0)
    rows.loc[rows["account_id"].isin(["A0", "A1"]), "label"] = 1
    rows = pd.concat([rows] * 2, ignore_index=True)
    assert rows["label"].sum() >= SHORT_MIN_POSITIVES
    # when they are grouped, then the refusal counts accounts, not snapshots
    with pytest.raises(SplitError, match="has 2 "):
        grouped_folds(rows, folds=5, seed=7, reason="short")


def test_too_little_history_is_a_clear_error() -> None:
    frame = pd.DataFrame(
        {"as_of": pd.to_datetime(["2025-01-01"] * 4, utc=True), "label": [0, 1, 0, 1]}
    )
    with pytest.raises(SplitError, match="the train window has 0 labelled rows"):
        time_split(frame, test_days=120, validation_days=90, embargo_days=90)
