"""The feature catalogue: one row defines a feature, and build_features computes nothing else."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import families
from features.families import build_features
from features.validation import Dataset

AS_OF = pd.Timestamp("2025-03-01", tz="UTC")


def _one_account() -> dict[str, pd.DataFrame]:
    """The tables of one account with one person and one page view."""
    from features.contract import empty_table

    accounts = empty_table("accounts")
    accounts.loc[0, ["account_id", "name"]] = ["A", "A Inc"]
    people = empty_table("people")
    people.loc[0, ["person_id", "account_id"]] = ["P", "A"]
    events = empty_table("events")
    events.loc[0, ["account_id", "person_id", "event_type"]] = ["A", "P", "page_view"]
    events["timestamp"] = pd.Series([AS_OF - pd.Timedelta(days=3)], dtype=events["timestamp"].dtype)
    events["weight"] = 1.0
    return {
        "accounts": accounts,
        "people": people,
        "events": events,
        "intent": empty_table("intent"),
        "opportunities": empty_table("opportunities"),
    }


def test_a_computed_column_missing_from_the_catalogue_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a family that computes one column more than the catalogue lists
    converging = families._converging

    def with_an_extra_column(pairs):  # type: ignore[no-untyped-def]
        return {**converging(pairs), "weeks_of_rain_56d": np.zeros(pairs.n)}

    monkeypatch.setattr(families, "_converging", with_an_extra_column)
    snapshots = pd.DataFrame({"account_id": ["A"], "as_of": [AS_OF]})
    # when the features are built, then the column is named, with what to do
    with pytest.raises(ValueError, match=r"weeks_of_rain_56d.*catalogue"):
        build_features(snapshots, **_one_account())
