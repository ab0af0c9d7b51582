"""Where the tables come from: a folder of files (``FolderSource``), and any other source behind
the same interface driving validation and the feature engine end to end."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from features.contract import OPTIONAL_TABLES
from features.engine import build_feature_table
from features.errors import ConfigError, ContractError
from features.io import EXTRACT_MANIFEST, ROW_COLUMN, as_utc
from features.report import CLOCK, GIVEN
from features.settings import DataSettings, FeatureSettings
from features.sources import FolderSource, TablePart, TableSource, open_source
from features.validation import load_dataset
from inmarket.crm_example import mapping_file
from tests.features.test_validation import EXTRACT, _base, _write


class FramesSource(TableSource):
    """Tables held in memory, one part each: a source that is not a folder."""

    KIND = "frames"

    def __init__(self, tables: dict[str, pd.DataFrame], extracted_at: datetime) -> None:
        self.tables, self.stamp = tables, extracted_at

    @property
    def uri(self) -> str:
        return "memory://frames"

    def parts(self, table: str) -> list[TablePart]:
        if table in self.tables:
            return [TablePart(table, f"{table}.parquet")]
        if table not in OPTIONAL_TABLES:
            raise ContractError(f"table '{table}' is missing")
        return []

    def batches(self, part: TablePart, chunk_rows: int) -> Iterator[pa.Table]:
        frame = self.tables[part.table]
        for start in range(0, len(frame), chunk_rows):
            chunk = pa.Table.from_pandas(
                frame.iloc[start : start + chunk_rows], preserve_index=False
            )
            rows = np.arange(start, start + chunk.num_rows)
            yield chunk.append_column(ROW_COLUMN, pa.array(rows))

    def extracted_at(self) -> tuple[datetime, str]:
        return self.stamp, EXTRACT_MANIFEST


def _frames(folder: Path) -> FramesSource:
    """The tables of a world folder, held in memory."""
    tables = {
        path.name.removesuffix(".parquet"): pd.read_parquet(path)
        for path in folder.glob("*.parquet")
    }
    stamp = json.loads((folder / EXTRACT_MANIFEST).read_text())["extracted_at"]
    return FramesSource(tables, as_utc(datetime.fromisoformat(stamp)))


def test_another_source_builds_the_same_features_as_the_folder(
    world_dir: Path, tmp_path: Path
) -> None:
    # given a world's tables in a folder, and the same tables held in memory
    frames = _frames(world_dir)
    grid = FeatureSettings(buckets=2, snapshots=2, workers=1)
    # when the features are built from each
    folder = build_feature_table(world_dir, tmp_path / "folder.parquet", DataSettings(), grid)
    memory = build_feature_table(frames, tmp_path / "memory.parquet", DataSettings(), grid)
    # then the tables, their reports and the validated data are the same
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "memory.parquet"),
        pd.read_parquet(tmp_path / "folder.parquet"),
        check_exact=True,
    )
    assert memory.report.to_dict() == folder.report.to_dict()
    assert (memory.rows, memory.buckets) == (folder.rows, folder.buckets)
    ours, theirs = load_dataset(frames, DataSettings()), load_dataset(world_dir, DataSettings())
    for table in ("accounts", "people", "events", "opportunities"):
        pd.testing.assert_frame_equal(ours.table(table), theirs.table(table))


def test_spark_is_refused_for_a_source_it_cannot_read(world_dir: Path, tmp_path: Path) -> None:
    # given tables held in memory, which Spark's executors cannot read
    spark = FeatureSettings(snapshots=1, engine="spark")
    # when the Spark engine is asked to build their features, then it says what to do
    with pytest.raises(ConfigError, match=r"\[data\] kind 'frames'.*features.engine = 'local'"):
        build_feature_table(_frames(world_dir), tmp_path / "f.parquet", DataSettings(), spark)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_a_folder_of_csv_or_parquet_files(kind: str, tmp_path: Path) -> None:
    # given the tables as CSV text or typed Parquet files
    source = FolderSource(_write(tmp_path / kind, _base(), kind))
    # when their parts are asked for and read
    events = source.parts("events")
    raw = source.read(["accounts", "events"])
    # then each table is one part named by its file, read whole or in batches with row numbers
    assert [p.name for p in events] == [f"events.{kind}"]
    assert sorted(raw) == ["accounts", "events"] and len(raw["events"][0].frame) == 4
    batches = list(source.batches(events[0], chunk_rows=3))
    assert [b.num_rows for b in batches] == [3, 1]
    assert batches[1].column(ROW_COLUMN).to_pylist() == [3]
    assert source.count_rows(events[0]) == 4
    stamps = source.read_column(events[0], "timestamp")
    assert stamps is not None and len(stamps) == 4
    assert source.read_column(events[0], "no_such_column") is None
    assert source.parts("account_history") == []


def test_a_folder_of_parquet_parts_is_one_table(tmp_path: Path) -> None:
    # given events split into two Parquet parts in events/, and no other events file
    tables = _base()
    events = tables.pop("events")
    folder = _write(tmp_path / "data", tables)
    (folder / "events").mkdir()
    events.iloc[:2].to_parquet(folder / "events" / "part-0.parquet", index=False)
    events.iloc[2:].to_parquet(folder / "events" / "part-1.parquet", index=False)
    # when it is read, then the parts are one table
    source = FolderSource(folder)
    (part,) = source.parts("events")
    assert part.name == "events" and source.count_rows(part) == 4
    assert source.spark_input(part).format == "parquet"
    ds = load_dataset(folder, DataSettings(extracted_at=EXTRACT))
    assert ds.report.tables["events"].rows_used == 4


def test_a_missing_required_table_names_what_was_found(tmp_path: Path) -> None:
    tables = _base()
    del tables["people"]
    source = FolderSource(_write(tmp_path / "data", tables))
    with pytest.raises(ContractError, match=r"table 'people' is missing: expected people.parquet"):
        source.parts("events")


def test_a_mapped_export_is_read_in_canonical_columns(crm_dir: Path) -> None:
    # given a CRM-shaped export and its mapping file (the shipped example)
    source = open_source(crm_dir, DataSettings(mapping=mapping_file()))
    # when its events are read, whole, in batches and by column
    parts = source.parts("events")
    whole = source.read(["events"])["events"]
    batch = next(source.batches(parts[0], chunk_rows=100))
    stamps = source.read_column(parts[0], "timestamp")
    # then each mapped file is a part, in canonical columns and values, with its date formats
    assert [p.name for p in parts] == ["touches.csv", "web_sessions.csv"]
    assert [raw.file for raw in whole] == ["touches.csv", "web_sessions.csv"]
    assert parts[0].formats == {"timestamp": "%m/%d/%Y %H:%M:%S"}
    assert {"event_id", "timestamp", "event_type", ROW_COLUMN} <= set(batch.column_names)
    assert batch.num_rows == 100 and batch.column(ROW_COLUMN).to_pylist() == list(range(100))
    touches = pd.read_csv(crm_dir / "touches.csv", dtype=str)
    assert stamps is not None and stamps.tolist() == touches["Touch Date"].tolist()
    assert source.lineage() == {
        "kind": "folder",
        "uri": crm_dir.resolve().as_uri(),
        "parts": {
            "accounts": ["companies.csv"],
            "people": ["contacts.csv", "leads.csv"],
            "events": ["touches.csv", "web_sessions.csv"],
            "intent": ["intent_weekly.csv"],
            "opportunities": ["deals.csv"],
        },
        "mapping": mapping_file().resolve().as_uri(),
    }
    assert source.name == crm_dir.name


def test_a_mapped_file_that_is_not_there_is_named(tmp_path: Path) -> None:
    source = FolderSource(tmp_path, mapping_file())
    with pytest.raises(ContractError, match=r"accounts: mapped file companies.csv not found in"):
        source.read()


def test_the_export_time_given_recorded_or_unknown(tmp_path: Path) -> None:
    # given a folder without _extract.json, and then with one
    source = FolderSource(_write(tmp_path / "data", _base()))
    given = datetime(2025, 3, 1)
    assert source.export_time(None) == (None, CLOCK)
    (tmp_path / "data" / EXTRACT_MANIFEST).write_text('{"extracted_at": "2025-01-01T00:00:00Z"}')
    # then a given time wins, else the recorded one, each with where it came from
    assert source.export_time(given) == (as_utc(given), GIVEN)
    assert source.export_time(None) == (EXTRACT, EXTRACT_MANIFEST)


def test_a_folder_source_is_named_as_the_folder_is_spelled(tmp_path: Path) -> None:
    """Found in review: the name came from the URI, so runs of 'wörld export' were named
    'w%C3%B6rld%20export'."""
    folder = tmp_path / "wörld export"
    assert FolderSource(folder, None).name == "wörld export"
    assert FolderSource(folder, None).uri == folder.resolve().as_uri()


def lose_first_event(monkeypatch: pytest.MonkeyPatch, part: str) -> None:
    """Make a folder source drop the first row of events part ``part`` between reading it and
    validation, whole or in batches, as a bug in reading would; its count is left alone."""
    read_part, batches = FolderSource.read_part, FolderSource.batches

    def read_losing(self: FolderSource, p: TablePart) -> pd.DataFrame:
        frame = read_part(self, p)
        return frame.iloc[1:] if (p.table, p.name) == ("events", part) else frame

    def batches_losing(self: FolderSource, p: TablePart, chunk_rows: int) -> Iterator[pa.Table]:
        for index, batch in enumerate(batches(self, p, chunk_rows)):
            lose = index == 0 and (p.table, p.name) == ("events", part)
            yield batch.slice(1) if lose else batch

    monkeypatch.setattr(FolderSource, "read_part", read_losing)
    monkeypatch.setattr(FolderSource, "batches", batches_losing)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_a_row_lost_between_reading_and_validation_does_not_reconcile(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a small export, whose events lose a row when read (a bug of the reading path)
    folder = _write(tmp_path / kind, _base(), kind)
    lose_first_event(monkeypatch, f"events.{kind}")
    # when it is validated, and its features built
    report = load_dataset(folder, DataSettings(extracted_at=EXTRACT)).report
    build = build_feature_table(
        folder,
        tmp_path / "f.parquet",
        DataSettings(extracted_at=EXTRACT),
        FeatureSettings(buckets=2, snapshots=1, workers=1),
    )
    # then the events' rows in are the source's 4 rows, the 3 that reached validation do not
    # add up to them, the report says NO for the events and names them; other tables reconcile
    for said in (report, build.report):
        events = said.tables["events"]
        assert (events.rows_in, events.rows_used + events.rows_rejected) == (4, 3)
        assert not said.reconciles and said.to_dict()["tables"]["events"]["reconciles"] is False
        assert [t for t, r in said.tables.items() if not r.reconciles] == ["events"]
        assert re.search(r"^events\s+4\s+\d\s+\d\s+NO$", said.render(), re.MULTILINE)
        unreconciled = said.unreconciled()
        assert unreconciled is not None
        assert "events: 4 rows in the source, 3 used + 0 rejected" in unreconciled
    saved = json.loads((tmp_path / "f.report.json").read_text())
    assert saved["reconciles"] is False and saved["tables"]["events"]["rows_in"] == 4


def test_a_mapped_export_counts_each_part_once(
    crm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a CRM-shaped export whose events are two mapped files
    settings = DataSettings(mapping=mapping_file())
    records = sum(len(pd.read_csv(crm_dir / f)) for f in ("touches.csv", "web_sessions.csv"))
    # when it is validated as it is, then the events' rows in are the records of both files
    whole = load_dataset(crm_dir, settings).report
    assert whole.tables["events"].rows_in == records and whole.reconciles
    # and when the second file loses a row between reading and validation, validated whole or
    # built in three buckets, the events' rows in are still the records, counted once, and the
    # events do not reconcile
    lose_first_event(monkeypatch, "web_sessions.csv")
    grid = FeatureSettings(buckets=3, snapshots=1, workers=1)
    for lossy in (
        load_dataset(crm_dir, settings).report,
        build_feature_table(crm_dir, tmp_path / "f.parquet", settings, grid).report,
    ):
        events = lossy.tables["events"]
        assert (events.rows_in, events.rows_used + events.rows_rejected) == (records, records - 1)
        assert [t for t, r in lossy.tables.items() if not r.reconciles] == ["events"]
