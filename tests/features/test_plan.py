"""Planning a feature build (``features.plan``): stable hash buckets, and where the snapshots of
all history begin."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.engine import build_feature_table
from features.plan import bucket_of, plan_build
from features.settings import DataSettings, FeatureSettings
from inmarket.synthetic import WorldSpec, generate_world
from tests.features.test_validation import EXTRACT, _base, _write


def test_buckets_are_stable_and_spread() -> None:
    ids = pd.Series([f"A{i:06d}" for i in range(10_000)])
    first, again = bucket_of(ids, 8), bucket_of(ids.copy(), 8)
    assert (first == again).all()
    counts = pd.Series(first).value_counts()
    assert len(counts) == 8 and counts.min() > 1000


def test_a_placeholder_date_does_not_start_the_snapshot_grid(tmp_path: Path) -> None:
    # given events of May 2024 and one dated 0001-01-01
    tables = _base()
    tables["events"].loc[0, "timestamp"] = "0001-01-01T00:00:00Z"
    folder = _write(tmp_path / "data", tables)
    # when the snapshots of all history are planned
    plan = plan_build(folder, DataSettings(extracted_at=EXTRACT), FeatureSettings(snapshots=None))
    # then they begin where the plausible events do, not two thousand years before
    assert plan.as_ofs.min() > pd.Timestamp("2024-05-01", tz="UTC")


def test_all_history_starts_where_events_fill_the_window(tmp_path: Path) -> None:
    # given a world whose deals reach three years further back than its events
    world = tmp_path / "world"
    generate_world(WorldSpec(accounts=300, seed=3), world)
    deals = pd.read_parquet(world / "opportunities.parquet")
    old = deals.head(20).assign(
        opportunity_id=lambda f: f["opportunity_id"] + "-old",
        created_at=lambda f: f["created_at"] - pd.Timedelta(days=3 * 365),
        closed_at=lambda f: f["created_at"] + pd.Timedelta(days=30),
        status="lost",
    )
    pd.concat([deals, old]).to_parquet(world / "opportunities.parquet", index=False)
    events = pd.read_parquet(world / "events.parquet")
    first_event = events["timestamp"].min()
    # and three events with a placeholder date, as exports carry
    placeholders = events.head(3).assign(
        event_id=lambda f: f["event_id"] + "-1970", timestamp=pd.Timestamp("1970-01-01", tz="UTC")
    )
    pd.concat([events, placeholders]).to_parquet(world / "events.parquet", index=False)
    # when all its history is built, by default and from an explicit start
    default = build_feature_table(
        world, tmp_path / "a.parquet", DataSettings(), FeatureSettings(snapshots=None)
    )
    start = first_event + pd.Timedelta(days=300)
    chosen = build_feature_table(
        world,
        tmp_path / "b.parquet",
        DataSettings(),
        FeatureSettings(snapshots=None, start=start.to_pydatetime()),
    )
    # then the grid begins once events fill the 90-day window, not at the first deal, and says
    # why; an explicit start is taken as it is, without a warning
    first = pd.read_parquet(tmp_path / "a.parquet")["as_of"].min()
    assert first_event + pd.Timedelta(days=90) <= first < first_event + pd.Timedelta(days=120)
    # the old deals are in; the placeholders are rejected (before 1990) and counted
    assert default.report.tables["opportunities"].rejects == {}
    assert default.report.tables["events"].rejects == {"date_before_1990": 3}
    assert len(default.warnings) == 1 and "before the first event" in default.warnings[0]
    assert pd.read_parquet(tmp_path / "b.parquet")["as_of"].min() >= start
    assert chosen.warnings == []
