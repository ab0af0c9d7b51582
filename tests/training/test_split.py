"""Short-history mode's groups of accounts: no account in two, positives in every group, and a
refusal below the minimum that says what is missing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.split import SHORT_MIN_POSITIVES, SplitError, grouped_folds, time_split


def _snapshots(accounts: int, positives: int) -> pd.DataFrame:
    ids = np.repeat([f"A{i}" for i in range(accounts)], 3)
    as_of = np.tile(pd.to_datetime(["2025-01-01", "2025-01-15", "2025-01-29"], utc=True), accounts)
    label = np.zeros(len(ids), dtype=np.int64)
    label[: positives * 3 : 3] = 1  # one positive snapshot for each of the first accounts
    return pd.DataFrame({"account_id": ids, "as_of": as_of, "label": label})


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
