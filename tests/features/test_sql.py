"""Tables read from a database (``[data] kind = "sql"``): the demo world in PostgreSQL and in a
DuckDB file validates and builds exactly as from Parquet; each fault says what to do in one
line without the password."""

from __future__ import annotations

import json
import pickle
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from pydantic import ValidationError

from features.engine import build_feature_table
from features.errors import ConfigError, ContractError
from features.io import EXTRACT_MANIFEST
from features.settings import DataSettings, FeatureSettings
from features.sources import SqlSource, TableSource, open_source
from features.sql import _session_uri, check_relation, contract_typed, is_query, plain
from features.validation import load_dataset
from inmarket.crm_example import mapping_file
from inmarket.refresh import data_identity
from tests.commands import run_cli
from tests.databases import to_duckdb, to_postgres
from tests.features.test_validation import EXTRACT, _base, _write
from tests.serving.server import _free_port as free_port
from tests.tracking_server import Postgres
from tests.worlds import WORLD_SPEC

TABLES = ("accounts", "people", "events", "intent", "opportunities", "account_history")
SECRET = "wh-Secret-7f3a"  # the password of Postgres.password_user


def _export_time(folder: Path) -> datetime:
    stamp = json.loads((folder / EXTRACT_MANIFEST).read_text())["extracted_at"]
    return datetime.fromisoformat(stamp)


def _as_named(report: dict[str, Any], source: TableSource) -> dict[str, Any]:
    """A folder's report with each file named as ``source`` names the part (its examples say
    "events.parquet row 12" where the database's say "events row 12")."""
    text = json.dumps(report)
    for table in TABLES:
        for part in source.parts(table):
            text = text.replace(f'"{table}.parquet row ', f'"{part.name} row ')
    return dict(json.loads(text))


def _same_as_parquet(folder: Path, source: TableSource) -> None:
    """``source`` validates to the folder's report, row for row the same tables, and every
    table's rows in are its rows used plus rejected."""
    settings = DataSettings(extracted_at=_export_time(folder))
    ours, theirs = load_dataset(source, settings), load_dataset(folder, settings)
    assert ours.report.to_dict() == _as_named(theirs.report.to_dict(), source)
    for table in TABLES:
        pd.testing.assert_frame_equal(ours.table(table), theirs.table(table), check_exact=True)
    for table in ours.report.tables.values():
        assert table.rows_in == table.rows_used + table.rows_rejected, table.table
    assert ours.report.tables["events"].rows_in > 0


def _same_features(world: Path, features: Path, source: TableSource, out: Path) -> None:
    """``source``'s feature table, built as the session's (``world_features``), is the same
    table bit for bit, with the same report."""
    grid = FeatureSettings(every_days=14, snapshots=None).with_spec(WORLD_SPEC)
    data = DataSettings(extracted_at=_export_time(world))
    build = build_feature_table(source, out, data, grid)
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(features), check_exact=True)
    saved = json.loads(features.with_name(f"{features.stem}.report.json").read_text())
    saved["extracted_from"] = build.report.extracted_from  # given here, _extract.json there
    assert build.report.to_dict() == _as_named(saved, source)


# --- what a database source is, without a database ---------------------------------------


@pytest.mark.parametrize(
    ("text", "query"),
    [
        ("events", False),
        ("analytics.web_events", False),
        ('crm."Web Events"', False),
        ("select * from analytics.web_events where channel = 'web'", True),
        ("  WITH t AS (SELECT 1) SELECT * FROM t;", True),
    ],
)
def test_a_table_is_a_table_name_or_a_query(text: str, query: bool) -> None:
    assert is_query(check_relation(text, "[data.tables] events")) is query


def test_what_is_neither_a_name_nor_a_query_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValidationError, match=r"\[data.tables\] events = 'web events; drop"):
        DataSettings(tables={"events": "web events; drop table accounts"})
    with pytest.raises(ValidationError, match=r"unknown table\(s\) \['event'\]"):
        DataSettings(tables={"event": "analytics.web_events"})


def test_a_database_url_opens_a_database_source_that_holds_no_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a URL whose password comes from the environment
    monkeypatch.setenv("WH_PASSWORD", SECRET)
    url = "postgresql://warehouse:${WH_PASSWORD}@db.internal:5432/crm"
    # when it is given as DATA, or as [data] url of kind sql
    given = open_source(url, DataSettings())
    configured = open_source(None, DataSettings(kind="sql", url=url))
    # then each is a database source, whose URI and pickle (what Spark and a run's lineage
    # get) hold no password
    for source in (given, configured):
        assert isinstance(source, SqlSource)
        assert source.uri == "postgresql://warehouse:***@db.internal:5432/crm"
        assert SECRET.encode() not in pickle.dumps(source)
    with pytest.raises(ValidationError) as refused:
        DataSettings(url="postgresql://warehouse:hunter2@db/crm")
    assert "hunter2" not in str(refused.value.errors()[0]["msg"])
    with pytest.raises(ConfigError, match=r"kind = 'sql' reads a database; data/world is not"):
        open_source("data/world", DataSettings(kind="sql"))


def test_a_password_written_into_data_stops_the_command_in_one_line() -> None:
    done = run_cli("validate", "postgresql://warehouse:hunter2@db.internal/crm")
    assert done.returncode == 2
    assert re.fullmatch(
        r"error: postgresql://warehouse:\*\*\*@db.internal/crm: the URL holds a "
        r"password; write \$\{PGPASSWORD\} in its place[^\n]+\n",
        done.stderr,
    )
    assert "hunter2" not in done.stdout + done.stderr


def test_each_session_has_a_timeout_and_reads_in_utc_without_writing() -> None:
    uri = _session_uri("postgresql://u:p@h:5/db?options=-c%20work_mem%3D64MB&sslmode=require")
    assert "connect_timeout=10" in uri and "sslmode=require" in uri
    assert (
        "options=-c%20work_mem%3D64MB%20-c%20TimeZone%3DUTC%20-c%20default_transaction_read_only%3Don"
        in uri
    )


def test_columns_take_the_contract_type_where_the_database_types_them_otherwise() -> None:
    # given accounts as a warehouse may type them: integer ids and counts, a decimal, a naive
    # timestamp, dates as text
    table = pa.table(
        {
            "account_id": pa.array([7, 8], pa.int64()),
            "name": pa.array(["Acme", "Globex"], pa.string_view()),
            "employee_count": pa.array([120, 5000], pa.int32()),
            "created_at": pa.array([datetime(2024, 1, 1, 9), None], pa.timestamp("ms")),
            "revenue": pa.array([1, 2], pa.decimal128(10, 2)),
            "region": pa.array([None, None], pa.null()),
        }
    )
    # when it is typed as the pipeline reads Parquet, then by the contract
    typed = contract_typed("accounts", plain(table))
    # then ids and text are text, numbers float64, times UTC microseconds, extras made plain
    assert typed.column("account_id").to_pylist() == ["7", "8"]
    assert typed.schema.field("name").type == pa.string()
    assert typed.schema.field("employee_count").type == pa.float64()
    assert typed.schema.field("created_at").type == pa.timestamp("us", "UTC")
    assert typed.column("created_at")[0].as_py().hour == 9
    assert typed.schema.field("revenue").type == pa.float64()
    assert typed.schema.field("region").type == pa.string()


# --- DuckDB: the embedded default ---------------------------------------------------------


@pytest.fixture
def tiny_duckdb(tmp_path: Path) -> tuple[Path, str]:
    """A tiny clean export as Parquet files, and the same tables in a DuckDB file."""
    folder = _write(tmp_path / "files", _base(), "parquet")
    return folder, to_duckdb(folder, tmp_path / "tiny.duckdb")


def test_a_duckdb_file_reads_as_its_parquet_files(tiny_duckdb: tuple[Path, str]) -> None:
    # given a small export in Parquet files and the same tables in a DuckDB file
    folder, url = tiny_duckdb
    source = open_source(url, DataSettings())
    (events,) = source.parts("events")
    # when its events are read in batches, counted and read by column
    batches = list(source.batches(events, chunk_rows=3))
    # then the batches hold the rows asked for, numbered, typed by the contract
    assert [b.num_rows for b in batches] == [3, 1]
    assert batches[1].column("_row").to_pylist() == [3]
    assert str(batches[0].schema.field("timestamp").type) == "timestamp[us, tz=UTC]"
    assert source.count_rows(events) == 4
    assert source.read_column(events, "no_such_column") is None
    assert source.parts("account_history") == []
    assert source.export_time(None) == (None, "the clock")
    assert source.lineage() == {
        "kind": "sql",
        "uri": url,
        "parts": {t: [t] for t in ("accounts", "people", "events", "intent", "opportunities")},
    }
    # and it validates to the same tables and report as the files
    report = load_dataset(source, DataSettings(extracted_at=EXTRACT)).report
    files = load_dataset(folder, DataSettings(extracted_at=EXTRACT)).report
    assert report.to_dict() == _as_named(files.to_dict(), source)


def test_the_tables_may_be_named_tables_of_a_schema_or_queries(tmp_path: Path) -> None:
    # given the export in schema crm of a DuckDB file, the events behind a query
    folder = _write(tmp_path / "files", _base(), "parquet")
    url = to_duckdb(folder, tmp_path / "warehouse.duckdb", schema="crm")
    tables = {t: f"crm.{t}" for t in ("accounts", "people", "intent", "opportunities")}
    tables["events"] = "select * from crm.events where event_type <> 'nothing' -- all of them"
    source = open_source(url, DataSettings(tables=tables))
    # when it is read, then each part is named by its table or as a query, logged as such
    assert [p.name for p in source.parts("accounts")] == ["crm.accounts"]
    assert [p.name for p in source.parts("events")] == ["events query"]
    assert source.lineage()["queries"] == {"events query": tables["events"]}
    same = load_dataset(folder, DataSettings(extracted_at=EXTRACT)).report
    report = load_dataset(source, DataSettings(extracted_at=EXTRACT)).report
    assert report.to_dict() == _as_named(same.to_dict(), source)


def test_the_mapping_file_maps_database_tables_as_it_maps_files(
    crm_dir: Path, tmp_path: Path
) -> None:
    # given a CRM-shaped export, its files loaded as text tables of a DuckDB file, and the
    # shipped mapping file with each entry's file naming its table
    import duckdb

    database = tmp_path / "crm.duckdb"
    with duckdb.connect(str(database)) as connection:
        for path in sorted(crm_dir.glob("*.csv")):
            connection.execute(
                f"CREATE TABLE {path.stem} AS SELECT * FROM read_csv('{path}', all_varchar=true)"
            )
    text = re.sub(r'file = "(\w+)\.csv"', r'file = "\1"', mapping_file().read_text())
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(text)
    # when it is validated through the mapping, from the files and from the database
    stamp = _export_time(crm_dir) if (crm_dir / EXTRACT_MANIFEST).exists() else EXTRACT
    files = load_dataset(crm_dir, DataSettings(mapping=mapping_file(), extracted_at=stamp))
    source = open_source(f"duckdb://{database}", DataSettings(mapping=mapping))
    ours = load_dataset(source, DataSettings(mapping=mapping, extracted_at=stamp))
    # then the canonical tables, values derived and report are the same
    assert [p.name for p in source.parts("events")] == ["touches", "web_sessions"]
    for table in TABLES:
        pd.testing.assert_frame_equal(ours.table(table), files.table(table), check_exact=True)
    renamed = json.dumps(files.report.to_dict())
    for path in crm_dir.glob("*.csv"):
        renamed = renamed.replace(f'"{path.name} row ', f'"{path.stem} row ')
    assert ours.report.to_dict() == json.loads(renamed)


@pytest.mark.slow
def test_the_world_in_a_duckdb_file_gives_the_same_report_and_features(
    world_dir: Path, world_features: Path, tmp_path: Path
) -> None:
    # given the session's world, written into a DuckDB file
    source = open_source(to_duckdb(world_dir, tmp_path / "world.duckdb"), DataSettings())
    # then it validates to the same report and tables, and builds the same features
    _same_as_parquet(world_dir, source)
    _same_features(world_dir, world_features, source, tmp_path / "features.parquet")


def test_duckdb_faults_name_the_table_and_what_to_do(
    tiny_duckdb: tuple[Path, str], tmp_path: Path
) -> None:
    _, url = tiny_duckdb
    settings = DataSettings(extracted_at=EXTRACT)
    with pytest.raises(ConfigError, match=r"no DuckDB file at .*nowhere.duckdb; check the path"):
        load_dataset(open_source(f"duckdb://{tmp_path}/nowhere.duckdb", settings), settings)
    missing = settings.model_copy(update={"tables": {"intent": "crm.intent"}})
    with pytest.raises(ContractError, match=r"^intent: no table crm.intent in duckdb://.*"):
        load_dataset(open_source(url, missing), missing)
    failing = settings.model_copy(update={"tables": {"events": "select nope from events"}})
    with pytest.raises(ContractError, match=r"^events \(events query\): the database could not"):
        load_dataset(open_source(url, failing), failing)


def test_the_configured_url_stands_in_for_data_and_a_folder_is_not_a_database(
    tiny_duckdb: tuple[Path, str], tmp_path: Path
) -> None:
    # given [data] kind = "sql" with its url in the configuration file
    folder, url = tiny_duckdb
    config = tmp_path / "sql.toml"
    config.write_text(
        f'[data]\nkind = "sql"\nurl = "{url}"\nextracted_at = "{EXTRACT.isoformat()}"\n'
    )
    # when validate runs without DATA, then it reads the database the file names
    done = run_cli("--config", config, "validate", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tables"]["events"]["rows_in"] == 4
    # and a folder given as DATA to a sql configuration is one line, exit 2, no traceback
    done = run_cli("--config", config, "validate", folder)
    assert done.returncode == 2
    assert "is not its URL: give DATA as postgresql://" in done.stderr
    assert "Traceback" not in done.stderr
    # and with no DATA and no url, one line says what to give
    done = run_cli("validate")
    assert done.returncode == 2 and "give DATA: the folder (or database URL)" in done.stderr


def test_spark_is_refused_for_a_database(tiny_duckdb: tuple[Path, str], tmp_path: Path) -> None:
    spark = FeatureSettings(snapshots=1, engine="spark")
    with pytest.raises(ConfigError, match=r"\[data\] kind 'sql'.*features.engine = 'local'"):
        build_feature_table(tiny_duckdb[1], tmp_path / "f.parquet", DataSettings(), spark)


def test_the_data_identity_of_a_database_changes_with_a_row(
    tiny_duckdb: tuple[Path, str],
) -> None:
    # given a database source and its identity as a refresh records it
    import duckdb

    _, url = tiny_duckdb
    settings = DataSettings(extracted_at=EXTRACT)
    first = data_identity(open_source(url, settings), settings)
    # when nothing changes, it is the same; when one value of one row changes, it is not
    assert data_identity(open_source(url, settings), settings) == first
    with duckdb.connect(url.removeprefix("duckdb://")) as connection:
        connection.execute("UPDATE events SET event_type = 'webinar' WHERE event_id = 'E2'")
    assert data_identity(open_source(url, settings), settings) != first


# --- PostgreSQL ---------------------------------------------------------------------------


def _warehouse(postgres: Postgres, name: str, folder: Path) -> str:
    """``folder``'s tables in a new database ``name``; its URL for the password role, the
    password a reference to ``$WH_PASSWORD``."""
    to_postgres(folder, postgres.create_database(name))
    role, _ = postgres.password_user
    return f"postgresql://{role}:${{WH_PASSWORD}}@{postgres.host}:{postgres.port}/{name}"


@pytest.mark.slow
def test_the_world_in_postgresql_gives_the_same_report_and_features(
    postgres: Postgres,
    world_dir: Path,
    world_features: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given the session's world written into PostgreSQL, read by a role with a password, the
    # accounts through a query and the events by their schema-qualified name
    monkeypatch.setenv("WH_PASSWORD", SECRET)
    url = _warehouse(postgres, "world_sql", world_dir)
    tables = {"accounts": "select * from accounts", "events": "public.events"}
    source = open_source(url, DataSettings(tables=tables))
    # then it validates to the same report and tables, and builds the same features
    _same_as_parquet(world_dir, source)
    _same_features(world_dir, world_features, source, tmp_path / "features.parquet")


@pytest.mark.slow
def test_a_dirty_world_in_postgresql_rejects_the_same_rows(
    postgres: Postgres, dirty_world_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WH_PASSWORD", SECRET)
    source = open_source(_warehouse(postgres, "dirty_sql", dirty_world_dir), DataSettings())
    settings = DataSettings(extracted_at=_export_time(dirty_world_dir))
    ours, theirs = load_dataset(source, settings), load_dataset(dirty_world_dir, settings)
    assert ours.report.total_rejected > 0
    files = theirs.rejects.assign(source_file=theirs.rejects["source_file"].str[: -len(".parquet")])
    pd.testing.assert_frame_equal(ours.rejects, files)
    assert ours.report.to_dict() == _as_named(theirs.report.to_dict(), source)


@pytest.fixture(scope="module")
def small_warehouse(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny export in PostgreSQL, with a ``pause`` table: while it holds a row, a query that
    reads it stalls for a minute after streaming the events (for the dropped connection)."""
    folder = _write(tmp_path_factory.mktemp("small"), _base(), "parquet")
    url = _warehouse(postgres, "small_sql", folder)
    import psycopg

    with psycopg.connect(postgres.url("small_sql", driver="postgresql"), autocommit=True) as db:
        db.execute("CREATE TABLE pause (n int)")
    return url


def _config(tmp_path: Path, **tables: str) -> Path:
    lines = ["[data]", f'extracted_at = "{EXTRACT.isoformat()}"', "[data.tables]"]
    path = tmp_path / "inmarket.toml"
    path.write_text("\n".join([*lines, *(f"{t} = {json.dumps(r)}" for t, r in tables.items())]))
    return path


@pytest.mark.parametrize(
    ("fault", "tables", "said"),
    [
        ("no server at the port", {}, r"cannot connect \(.*\); check the host, port"),
        ("wrong password", {}, r"refused the sign-in \(.*\); check the user and the password"),
        ("missing table", {"events": "crm.web_events"}, r"events: no table crm.web_events in "),
        (
            "missing column",
            {"events": "select event_id, account_id from events"},
            r"events \(events query\): missing required column\(s\) timestamp, event_type",
        ),
        (
            "failing query",
            {"events": "select * from events where nope > 1"},
            r"events \(events query\): the database could not read it \(.*nope.*\); fix",
        ),
    ],
)
def test_a_database_fault_is_one_line_without_the_password(
    fault: str,
    tables: dict[str, str],
    said: str,
    small_warehouse: str,
    postgres: Postgres,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given the warehouse, its password in the environment, and one fault
    monkeypatch.setenv("WH_PASSWORD", "not-" + SECRET if fault == "wrong password" else SECRET)
    url = small_warehouse
    if fault == "no server at the port":
        url = url.replace(f":{postgres.port}/", f":{free_port()}/")
    # when it is validated
    done = run_cli("--config", _config(tmp_path, **tables), "validate", url)
    # then it stops with exit 2 and one line that says what to do, the password nowhere
    assert done.returncode == 2, done.stderr
    assert re.fullmatch(r"error: [^\n]+\n", done.stderr) and re.search(said, done.stderr)
    assert SECRET not in done.stdout + done.stderr
    if not tables:  # the database named as a URL, its password hidden
        assert "postgresql://warehouse:***@127.0.0.1:" in done.stderr


@pytest.mark.slow
def test_a_connection_dropped_mid_read_writes_nothing_and_the_next_run_succeeds(
    small_warehouse: str, postgres: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    import psycopg

    # given events read through a query that stalls after streaming them while pause has a row
    monkeypatch.setenv("WH_PASSWORD", SECRET)
    stalling = "select * from events union all select * from events where exists " + (
        "(select from pause where pg_sleep(60) is null)"
    )
    config = _config(tmp_path, events=stalling)
    rejects = tmp_path / "out" / "rejects.parquet"
    command = ["--config", str(config), "validate", small_warehouse, "--rejects-out", str(rejects)]
    admin = postgres.url("small_sql", driver="postgresql")
    with psycopg.connect(admin, autocommit=True) as db:
        db.execute("INSERT INTO pause VALUES (1)")
        reading = subprocess.Popen(
            [sys.executable, "-m", "inmarket.cli", *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # when the database ends the reading session while it streams
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            row = db.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND pid <> "
                "pg_backend_pid()"
            ).fetchone()
            if row:
                db.execute("SELECT pg_terminate_backend(%s)", row)
                break
            time.sleep(0.1)
        out, err = reading.communicate(timeout=120)
        db.execute("DELETE FROM pause")
    # then the run stops in one line, writes nothing, and the next run succeeds
    assert row, "the reading session never stalled"
    assert reading.returncode == 2, err
    assert re.fullmatch(r"error: events \(events query\): the connection to .* was lost .*\n", err)
    assert SECRET not in out + err
    assert not rejects.exists() and not list(rejects.parent.glob("*"))
    again = run_cli(*command)
    assert again.returncode == 0, again.stderr
    assert rejects.exists()
