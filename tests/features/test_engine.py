"""The feature table (``features.engine``): the bucketed local engine (``features.local``) and the
Spark engine (``features.spark``) against one whole build, rejects carried along, atomic writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from features.engine import build_feature_table
from features.families import build_features
from features.fit import fit_categories
from features.io import ROW_COLUMN
from features.settings import DataSettings, FeatureSettings
from features.snapshots import as_of_grid, snapshot_grid
from features.validation import load_dataset
from inmarket.crm_example import HUBSPOT_MAPPING_NAME, crm_export, hubspot_export, mapping_file
from inmarket.synthetic import TRUTH_DIR
from tests.commands import write_csvs
from tests.features.test_validation import EXTRACT, _base


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["account_id", "as_of"]).reset_index(drop=True)


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


@pytest.mark.spark
@pytest.mark.slow
def test_spark_takes_rows_in_from_the_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pyspark")
    from pyspark.sql import functions as sf

    from features import spark

    # given a small CSV export whose events hold a line break and quotes inside quoted values
    tables = _base()
    tables["events"]["topic"] = ["two\nlines", 'said "hi"', "plain", "a, b"]
    folder = write_csvs(tmp_path / "data", tables)
    grid = FeatureSettings(buckets=3, snapshots=1, workers=1)
    spark_grid = grid.model_copy(update={"engine": "spark", "spark_master": "local[2]"})
    settings = DataSettings(extracted_at=EXTRACT)
    # when its features are built locally and on Spark
    local = build_feature_table(folder, tmp_path / "local.parquet", settings, grid)
    on_spark = build_feature_table(folder, tmp_path / "spark.parquet", settings, spark_grid)
    # then both read the 4 records the file holds, and reconcile
    assert local.report.tables["events"].rows_in == 4 and local.report.reconciles
    assert on_spark.report.to_dict() == local.report.to_dict()
    # and when Spark loses the first event between reading and validation, the events do not
    events = spark._events
    monkeypatch.setattr(spark, "_events", lambda *a: events(*a).where(sf.col(ROW_COLUMN) != 0))
    lossy = build_feature_table(folder, tmp_path / "lossy.parquet", settings, spark_grid).report
    assert (lossy.tables["events"].rows_in, lossy.tables["events"].rows_used) == (4, 3)
    assert [t for t, r in lossy.tables.items() if not r.reconciles] == ["events"]
