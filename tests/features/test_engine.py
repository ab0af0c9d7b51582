"""The feature table: bucketed local engine, Spark engine, rejects carried along, atomic writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from features.engine import bucket_of, build_feature_table
from features.families import build_features, fit_categories
from features.settings import DataSettings, FeatureSettings
from features.snapshots import as_of_grid, snapshot_grid
from features.validation import load_dataset
from inmarket.crm_example import HUBSPOT_MAPPING_NAME, crm_export, hubspot_export, mapping_file
from inmarket.synthetic import TRUTH_DIR, WorldSpec, generate_world


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["account_id", "as_of"]).reset_index(drop=True)


def test_buckets_are_stable_and_spread() -> None:
    ids = pd.Series([f"A{i:06d}" for i in range(10_000)])
    first, again = bucket_of(ids, 8), bucket_of(ids.copy(), 8)
    assert (first == again).all()
    counts = pd.Series(first).value_counts()
    assert len(counts) == 8 and counts.min() > 1000


def test_bucketed_build_equals_one_whole_build(world_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "features.parquet"
    build = build_feature_table(
        world_dir, out, DataSettings(), FeatureSettings(buckets=4, snapshots=6)
    )
    ds = load_dataset(world_dir, DataSettings())
    grid = as_of_grid(ds.report.extracted_at, every_days=30, count=6)
    whole = build_features(
        snapshot_grid(ds.accounts, grid),
        ds.accounts,
        ds.people,
        ds.events,
        ds.intent,
        ds.opportunities,
        FeatureSettings(),
        fit_categories(ds.accounts),
    )
    written = pd.read_parquet(out)
    assert build.rows == len(whole) == len(written)
    pd.testing.assert_frame_equal(_sorted(written), _sorted(whole), check_exact=True)
    assert build.report.reconciles and build.rejects == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "features.parquet",
        "features.rejects.parquet",
        "features.report.json",
    ]


def test_dirty_world_rejects_are_carried_along(dirty_world_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.parquet"
    build = build_feature_table(
        dirty_world_dir, out, DataSettings(), FeatureSettings(buckets=3, snapshots=2)
    )
    expected = json.loads((dirty_world_dir / TRUTH_DIR / "dirt.json").read_text())
    report = json.loads((tmp_path / "f.report.json").read_text())
    assert report["reconciles"]
    assert {t: r["rejects"] for t, r in report["tables"].items() if r["rejects"]} == expected
    rejects = pd.read_parquet(tmp_path / "f.rejects.parquet")
    assert len(rejects) == build.rejects == sum(sum(r.values()) for r in expected.values())
    assert set(rejects.columns) == {"table", "source_file", "source_row", "reason"}


def test_a_failed_build_leaves_the_previous_table_untouched(
    world_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "f.parquet"
    build_feature_table(world_dir, out, DataSettings(), FeatureSettings(buckets=2, snapshots=1))
    before = out.read_bytes()
    broken = tmp_path / "broken"
    shutil.copytree(world_dir, broken)
    events = pd.read_parquet(broken / "events.parquet")
    events["timestamp"] = "31/12/2025"
    events.to_parquet(broken / "events.parquet")
    with pytest.raises(ValueError, match=r"events\.timestamp"):
        build_feature_table(broken, out, DataSettings(), FeatureSettings(buckets=2, snapshots=1))
    assert out.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.spark
@pytest.mark.slow
def test_spark_engine_equals_local_engine(
    dirty_world_dir: Path, world_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("pyspark")
    crm, hubspot = tmp_path / "crm", tmp_path / "hubspot"
    crm_export(world_dir, crm, seed=2)
    hubspot_export(world_dir, hubspot, seed=2)  # derivation rules, deals keyed by contact
    for name, data, mapping in (
        ("dirty", dirty_world_dir, None),
        ("crm", crm, mapping_file()),
        ("hubspot", hubspot, mapping_file(HUBSPOT_MAPPING_NAME)),
    ):
        grid = FeatureSettings(buckets=3, snapshots=3)
        spark_grid = grid.model_copy(update={"engine": "spark", "spark_master": "local[2]"})
        local = build_feature_table(
            data, tmp_path / f"{name}-local.parquet", DataSettings(mapping=mapping), grid
        )
        spark = build_feature_table(
            data, tmp_path / f"{name}-spark.parquet", DataSettings(mapping=mapping), spark_grid
        )
        pd.testing.assert_frame_equal(
            _sorted(pd.read_parquet(tmp_path / f"{name}-spark.parquet")),
            _sorted(pd.read_parquet(tmp_path / f"{name}-local.parquet")),
            check_exact=True,
        )
        assert spark.report.to_dict() == local.report.to_dict()
        assert spark.rejects == local.rejects


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
