"""The feature catalogue: one row defines a feature, and build_features computes nothing else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import families
from features.catalogue import BUYING_GROUP_FAMILIES, FAMILIES, catalogue
from features.contract import empty_table
from features.families import build_features
from features.settings import DataSettings, FeatureSpec
from features.snapshots import as_of_grid, snapshot_grid
from features.validation import load_dataset
from inmarket.synthetic import WorldSpec, generate_world

AS_OF = pd.Timestamp("2025-03-01", tz="UTC")
SPEC = FeatureSpec(windows=(7, 30, 120), new_people_days=21, columns={"lifecycle_stage": "dated"})


def _one_account() -> dict[str, pd.DataFrame]:
    """The tables of one account with one person and one page view."""
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


def test_a_catalogue_row_no_family_computes_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a catalogue with one row more than the families compute
    extra = catalogue(SPEC)[0]._replace(name="weeks_of_rain_56d")
    monkeypatch.setattr(families, "catalogue", lambda spec: [*catalogue(spec), extra])
    snapshots = pd.DataFrame({"account_id": ["A"], "as_of": [AS_OF]})
    # when the features are built, then the row without a column is named
    with pytest.raises(ValueError, match=r"lists \['weeks_of_rain_56d'\] but build_features"):
        build_features(snapshots, **_one_account())


def test_a_row_takes_its_kind_and_source_from_its_family() -> None:
    rows = catalogue(SPEC)
    assert {row.family for row in rows} == set(FAMILIES)
    for row in rows:
        assert row.kind == FAMILIES[row.family].kind and row.source, row.name
        assert row.description and row.words.some, row.name
    assert {row.name for row in rows if row.kind == "fit"} >= {"industry", "is_customer"}
    assert BUYING_GROUP_FAMILIES == ("breadth", "concentration", "momentum")


def test_every_value_build_features_computes_is_within_its_rows_bounds(tmp_path: Path) -> None:
    # given a small world, with a dated account column declared
    generate_world(WorldSpec(accounts=80, seed=5), tmp_path)
    ds = load_dataset(tmp_path, DataSettings())
    history = pd.DataFrame(
        {
            "account_id": ds.accounts["account_id"],
            "field": "lifecycle_stage",
            "value": "prospect",
            "valid_from": pd.Timestamp("2024-01-01", tz="UTC"),
        }
    ).astype({"valid_from": "datetime64[us, UTC]"})
    grid = as_of_grid(ds.report.extracted_at, every_days=30, count=6)
    snapshots = snapshot_grid(ds.accounts, grid)
    names = ("accounts", "people", "events", "intent", "opportunities")
    tables = {name: getattr(ds, name) for name in names}
    # when its features are built under a spec with other windows
    frame = build_features(snapshots, **tables, spec=SPEC, account_history=history)
    # then every value is one its row allows (what the HTTP schema enforces): a category, or a
    # number within the bounds, whole where the row says so
    for row in catalogue(SPEC):
        values = frame[row.name]
        if row.bounds.categorical or row.name in SPEC.columns:
            assert isinstance(values.dtype, pd.CategoricalDtype), row.name
            continue
        given = values.dropna().to_numpy(dtype=float)
        assert ((given >= row.bounds.low) & (given <= row.bounds.high)).all(), row.name
        if row.bounds.integer:
            assert (given == np.round(given)).all(), row.name
