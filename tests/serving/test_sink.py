"""Scores written into a database (serving/sink.py, issue 26): read back they equal the ranked
file; a re-run of an as_of replaces its rows, others stay; a wrong URL, a wrong password or a
table of another layout stops `inmarket score --to` in one line, exit 2, before any scoring; a
write killed or cut by the database leaves the previous run's rows, and the next run writes.
A real PostgreSQL (the session's) and real DuckDB files."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest

from features.settings import DataSettings, FeatureSettings
from inmarket.cli_refresh import RefreshExit
from serving.batch import RANKED_COLUMNS, score_batch, write_ranked
from serving.runs import new_run, published
from serving.settings import SinkSettings
from serving.sink import APPLICATION, TABLES, RunFacts, Sink
from tests.commands import run_cli
from tests.serving.server import _free_port as free_port
from tests.stores import client_of, copy_store
from tests.tracking_server import Postgres
from training.job import TrainResult
from training.promotion import promote
from training.registry import load_model

DOCS = Path(__file__).resolve().parents[2] / "docs" / "database-tables.md"
HISTORY_COLUMNS = ("account_id", "as_of", "probability", "score", "stage")
_DATABASES = itertools.count(1)


@pytest.fixture(scope="module")
def scored(
    trained: tuple[Path, TrainResult], world_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """A store whose model is the champion, and a run it scored on the world: (store, out)."""
    root = tmp_path_factory.mktemp("sink")
    store = copy_store(trained[0], root / "mlruns")
    assert promote(client_of(store), "inmarket").promoted
    out = root / "scored" / "ranked.parquet"
    uri = f"models:/inmarket/{trained[1].version}"
    score_batch(load_model(uri), world_dir, out, DataSettings(), FeatureSettings(), model_uri=uri)
    return store, out


@pytest.fixture
def run_a(scored: tuple[Path, Path], tmp_path: Path) -> Path:
    """This test's copy of the scored run's folder: its ``ranked.parquet``."""
    return shutil.copytree(scored[1].parent, tmp_path / "scored") / "ranked.parquet"


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _database(postgres: Postgres, request: pytest.FixtureRequest) -> str:
    """A new database of the test's own (its name's start, and a number); its libpq URL."""
    name = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40]
    return _libpq(postgres.create_database(f"{name}_{next(_DATABASES)}"))


def _sink(url: str) -> Sink:
    return Sink(SinkSettings(to=url))


def _publish(out: Path, ranked: pd.DataFrame, history: pd.DataFrame) -> None:
    """Publish ``ranked`` and ``history`` as a new run at ``out`` (the files the sink reads)."""
    with new_run(out) as run:
        history.to_parquet(run.path("history.parquet"), index=False)
        write_ranked(ranked, run)
        run.publish(
            {
                "model": "models:/inmarket/1",
                "model_version": "1",
                "as_of": str(ranked["as_of"].max()),
                "written_at": pd.Timestamp.now("UTC").isoformat(),
            }
        )


def _normal(value: Any) -> Any:
    """A cell as both sides can hold it: numbers as floats (flags 0/1), lists as lists, JSON
    text parsed, times as UTC timestamps, every kind of missing value None."""
    if isinstance(value, dict):
        return value
    if isinstance(value, (list, tuple, np.ndarray)):
        return list(value)
    if value is None or pd.isna(value):
        return None
    if isinstance(value, str):
        return json.loads(value) if value.startswith("{") else value
    if isinstance(value, datetime):
        return pd.Timestamp(value).tz_convert("UTC")
    return float(value)


def _rows(frame: pd.DataFrame, columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """``frame``'s ``columns``, normalised, in the order of account and as_of."""
    ordered = frame.sort_values(["account_id", "as_of"])
    return [tuple(_normal(v) for v in row) for row in ordered[list(columns)].itertuples(False)]


def _pg(url: str, query: str) -> pd.DataFrame:
    with psycopg.connect(url) as connection:
        cursor = connection.execute(query.encode())
        names = [c.name for c in cursor.description or []]
        return pd.DataFrame(cursor.fetchall(), columns=names, dtype=object)


def _files(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The published run's list, history and id, read through its manifest."""
    run = published(out)
    assert run is not None
    history = pd.read_parquet(run.folder / "ranked.history.parquet")
    return pd.read_parquet(run.folder / out.name), history, Path(run.manifest["run"]).name


def _equal_to_files(read: Any, out: Path) -> None:
    """The database's rows of the published run's as_of values equal its files, with its run
    id on every row."""
    ranked, history, run_id = _files(out)
    in_ranked = read(f"SELECT * FROM ranked_accounts WHERE run_id = '{run_id}'")
    in_history = read(f"SELECT * FROM score_history WHERE run_id = '{run_id}'")
    assert len(in_ranked) == len(ranked) and len(in_history) == len(history)
    assert _rows(in_ranked, RANKED_COLUMNS) == _rows(ranked, RANKED_COLUMNS)
    assert _rows(in_history, HISTORY_COLUMNS) == _rows(history, HISTORY_COLUMNS)


def test_a_run_read_back_equals_its_files_and_is_written_once(
    postgres: Postgres, run_a: Path, request: pytest.FixtureRequest
) -> None:
    # given a database and a published run
    url = _database(postgres, request)
    ranked, history, run_id = _files(run_a)
    # when the run is written, then written again
    started = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    first = _sink(url).write(run_a, RunFacts("file:///world", started))
    again = _sink(url).write(run_a, RunFacts("file:///world"))
    # then its list and history read back equal the files (values, ranks, lists, reasons),
    # each row once, and the second write found it there and changed nothing
    _equal_to_files(lambda q: _pg(url, q), run_a)
    assert (first.ranked, first.history, first.before) == (len(ranked), len(history), False)
    assert again.before and again.summary().endswith(f"holds run {run_id} already")
    runs = _pg(url, "SELECT * FROM scoring_runs")
    assert len(runs) == 1 and runs.loc[0, "run_id"] == run_id
    row = runs.iloc[0]
    prospects = ranked[ranked["status"] == "prospect"]
    assert row["statuses"] == ranked["status"].value_counts().to_dict()
    assert row["stages"] == prospects["stage"].value_counts().to_dict()
    assert (row["prospects"], row["ranked_rows"], row["history_rows"]) == (
        len(prospects),
        len(ranked),
        len(history),
    )
    assert (row["model_name"], row["data_uri"], row["schema_version"]) == (
        "inmarket",
        "file:///world",
        1,
    )
    assert row["started_at"] == started and row["finished_at"] < row["written_at"]


def _changed(out: Path, dropped: int, days: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The published run's list without its first ``dropped`` accounts, every score one lower,
    and, with ``days``, every as_of that many days earlier."""
    ranked, history, _ = _files(out)
    gone = set(ranked["account_id"].iloc[:dropped])
    ranked = ranked[~ranked["account_id"].isin(gone)].reset_index(drop=True)
    history = history[~history["account_id"].isin(gone)].reset_index(drop=True)
    ranked["score"] -= 1
    history["score"] -= 1
    ranked["as_of"] -= pd.Timedelta(days=days)
    history["as_of"] -= pd.Timedelta(days=days)
    return ranked, history


def test_a_rerun_of_an_as_of_replaces_its_rows_and_leaves_the_others(
    postgres: Postgres, run_a: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # given a database holding a run of an earlier as_of, then run A
    url = _database(postgres, request)
    earlier = tmp_path / "earlier" / "ranked.parquet"
    _publish(earlier, *_changed(run_a, dropped=0, days=7))
    _sink(url).write(earlier, RunFacts("file:///world"))
    _sink(url).write(run_a, RunFacts("file:///world"))
    # when a run of A's as_of without 25 of its accounts, all scores changed, is written
    _publish(run_a, *_changed(run_a, dropped=25))
    _sink(url).write(run_a, RunFacts("file:///world"))
    # then A's as_of holds the new run's rows only, one per account (the 25 are gone), and
    # the earlier as_of's rows are all still there
    ranked, _, run_id = _files(run_a)
    _equal_to_files(lambda q: _pg(url, q), run_a)
    _equal_to_files(lambda q: _pg(url, q), earlier)
    at_a = _pg(url, f"SELECT * FROM ranked_accounts WHERE as_of = '{ranked['as_of'][0]}'")
    assert len(at_a) == at_a["account_id"].nunique() == len(ranked)
    assert set(at_a["run_id"]) == {run_id}
    counts = _pg(
        url, "SELECT count(*) AS n, count(DISTINCT (account_id, as_of)) AS k FROM score_history"
    )
    assert counts.loc[0, "n"] == counts.loc[0, "k"]
    assert len(_pg(url, "SELECT * FROM scoring_runs")) == 3


def test_text_of_any_shape_reads_back_as_written(
    postgres: Postgres, run_a: Path, request: pytest.FixtureRequest
) -> None:
    # given a run whose texts hold quotes, commas, backslashes, braces, line breaks, an empty
    # text beside a missing one, and lists of such words
    url = _database(postgres, request)
    ranked, history, _ = _files(run_a)
    odd = ['say "hi", then\nleave', "", None, "back\\slash {braced}", '=HYPERLINK("x","y")']
    ranked.loc[: len(odd) - 1, "name"] = pd.Series(odd, dtype=object)
    roles = [['a"b', "c\\d"], ["e,f", "{g}", ""], [], ["NULL"], [" h "]]
    ranked["roles_missing"] = ranked["roles_missing"].astype(object)
    for row, words in enumerate(roles):
        ranked.at[row, "roles_missing"] = words
    _publish(run_a, ranked, history)
    # when it is written
    _sink(url).write(run_a, RunFacts("file:///world"))
    # then every value reads back as the files hold it
    _equal_to_files(lambda q: _pg(url, q), run_a)
    names = _pg(url, "SELECT name FROM ranked_accounts")["name"].tolist()
    assert "" in names and None in names and odd[0] in names


def test_duckdb_holds_one_row_per_account_equal_to_the_rerun(run_a: Path, tmp_path: Path) -> None:
    # given a DuckDB file holding run A
    url = f"duckdb://{tmp_path / 'scores.duckdb'}"
    _sink(url).write(run_a, RunFacts("file:///world"))
    # when a run of the same as_of without 10 accounts is written
    _publish(run_a, *_changed(run_a, dropped=10))
    written = _sink(url).write(run_a, RunFacts("file:///world"))
    # then the file holds that run's list and history, equal to its files, one row an account
    import duckdb

    with duckdb.connect(str(tmp_path / "scores.duckdb")) as connection:

        def read(query: str) -> pd.DataFrame:
            table = connection.execute(query).to_arrow_table()
            return pd.DataFrame(table.to_pylist(), columns=table.column_names, dtype=object)

        _equal_to_files(read, run_a)
        assert len(read("SELECT * FROM ranked_accounts")) == written.ranked
        assert len(read("SELECT * FROM scoring_runs")) == 2


def test_a_run_an_older_version_published_is_written_with_the_new_columns_null(
    run_a: Path, tmp_path: Path
) -> None:
    # given a published run without the columns added since (the changes' three)
    ranked, history, _ = _files(run_a)
    _publish(run_a, ranked.drop(columns=["stage_before", "score_before", "change"]), history)
    # when it is written, then its rows are there with those columns empty
    url = f"duckdb://{tmp_path / 'old.duckdb'}"
    written = _sink(url).write(run_a, RunFacts("file:///world"))
    import duckdb

    with duckdb.connect(str(tmp_path / "old.duckdb")) as connection:
        query = "SELECT count(*), count(stage_before), count(change) FROM ranked_accounts"
        assert connection.execute(query).fetchone() == (written.ranked, 0, 0)


def test_the_documented_tables_are_the_ones_written() -> None:
    # given the contract's document
    text = DOCS.read_text(encoding="utf-8")
    # then it lists every column of every table with its PostgreSQL and DuckDB types, and
    # nothing else as a column
    for table in TABLES:
        section = text.split(f"### `{table.name}`", 1)[1].split("\n### ", 1)[0]
        documented = re.findall(r"^\| `(\w+)` \| `([^`]+)` \| `([^`]+)` \|", section, re.M)
        postgres, duck = table.layout("postgresql"), table.layout("duckdb")
        assert documented == [(n, postgres[n], duck[n]) for n in postgres], table.name


# ---- `inmarket score --to`: bad input, before any scoring


@pytest.fixture
def wrong(
    postgres: Postgres, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str, str]:
    """The URL of each kind of bad input, and what the message names."""
    secret = "not-the-Secret-42"
    monkeypatch.setenv("SINK_TEST_PASSWORD", secret)
    role = postgres.password_user[0]
    url = _database(postgres, request)
    if request.param == "no server":
        return f"postgresql://postgres@127.0.0.1:{free_port()}/x", "Connection refused", secret
    if request.param == "wrong password":
        where = f"{postgres.host}:{postgres.port}/postgres"
        return f"postgresql://{role}:${{SINK_TEST_PASSWORD}}@{where}", "password", secret
    with psycopg.connect(url) as connection:
        connection.execute("CREATE TABLE score_history (account_id text, score text)")
        connection.execute("INSERT INTO score_history VALUES ('A1', 'kept')")
    return url, "table score_history in", secret


@pytest.mark.parametrize("wrong", ["no server", "wrong password", "other layout"], indirect=True)
def test_bad_input_stops_score_in_one_line_exit_2_before_scoring(
    wrong: tuple[str, str, str], scored: tuple[Path, Path], world_dir: Path, tmp_path: Path
) -> None:
    # given a database URL that cannot be written to
    url, named, secret = wrong
    out = tmp_path / "out" / "ranked.parquet"
    # when `inmarket score --to` runs
    done = run_cli("score", world_dir, "--out", out, "--store", scored[0], "--to", url)
    # then it exits 2 in one line naming what is wrong, never prints the password, scored
    # nothing, and a table of another layout keeps what it held
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("error: ") and named in done.stderr
    assert secret not in done.stdout + done.stderr
    assert not out.parent.exists()
    if "table" in named:
        assert "nothing was written" in done.stderr.lower()
        assert _pg(url, "SELECT * FROM score_history").values.tolist() == [["A1", "kept"]]


# ---- a write killed, or cut by the database, leaves the previous rows


@contextmanager
def _runs_locked(url: str) -> Iterator[psycopg.Connection[Any]]:
    """``scoring_runs`` locked against writes by another session until the block ends (reads
    pass): a write reaches its first write there after replacing its list and history, and
    waits, in the middle of its transaction."""
    with psycopg.connect(url) as holder:
        holder.execute("LOCK TABLE scoring_runs IN EXCLUSIVE MODE")
        try:
            yield holder
        finally:
            holder.rollback()


def _waiting_writer(url: str, process: subprocess.Popen[str]) -> int:
    """The backend pid of the writer once it waits on the lock, having replaced the list and
    history in its transaction (it holds their row locks)."""
    deadline = time.monotonic() + 300
    with psycopg.connect(url, autocommit=True) as watcher:
        while time.monotonic() < deadline and process.poll() is None:
            found = watcher.execute(
                "SELECT a.pid FROM pg_stat_activity a WHERE a.application_name = %s "
                "AND a.wait_event_type = 'Lock' AND EXISTS (SELECT 1 FROM pg_locks l WHERE "
                "l.pid = a.pid AND l.relation = 'score_history'::regclass "
                "AND l.mode = 'RowExclusiveLock' AND l.granted)",
                (APPLICATION,),
            ).fetchone()
            if found:
                return int(found[0])
            time.sleep(0.2)
    _, err = process.communicate(timeout=60)
    raise AssertionError(f"the write never waited on the lock: {err[-2000:]}")


def _started(command: str, store: Path, data: Path, out: Path, url: str) -> subprocess.Popen[str]:
    """``inmarket score`` or ``refresh`` DATA --to URL, started."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "inmarket.cli",
            command,
            str(data),
            "--out",
            str(out),
            "--store",
            str(store),
            "--to",
            url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def holding_a(postgres: Postgres, run_a: Path, request: pytest.FixtureRequest) -> str:
    """A database of the test's own that holds run A; its URL."""
    url = _database(postgres, request)
    _sink(url).write(run_a, RunFacts("file:///world"))
    return url


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "cut"), [("score", "killed"), ("refresh", "ended by the database")]
)
def test_a_write_cut_midway_leaves_the_previous_rows_and_the_next_run_writes(
    command: str, cut: str, holding_a: str, scored: tuple[Path, Path], run_a: Path, world_dir: Path
) -> None:
    # given a database holding run A
    url = holding_a
    before = _pg(url, "SELECT * FROM ranked_accounts ORDER BY account_id")
    # when `inmarket score|refresh --to` publishes a new run and, in the middle of writing it
    # (its list and history replaced in its transaction, not committed), is killed with
    # SIGKILL or has its session ended by the database (pg_terminate_backend)
    with _runs_locked(url) as holder:
        process = _started(command, scored[0], world_dir, run_a, url)
        writer = _waiting_writer(url, process)
        if cut == "killed":
            process.send_signal(signal.SIGKILL)
        else:
            holder.execute("SELECT pg_terminate_backend(%s)", (writer,))
        _, err = process.communicate(timeout=120)
    # then the database holds run A's rows as they were, and no other run; a command whose
    # database dropped exits 6 in one line: the files are published, the database is behind
    after = _pg(url, "SELECT * FROM ranked_accounts ORDER BY account_id")
    assert _rows(after, (*RANKED_COLUMNS, "run_id")) == _rows(before, (*RANKED_COLUMNS, "run_id"))
    assert len(_pg(url, "SELECT * FROM scoring_runs")) == 1
    if cut == "killed":
        assert process.returncode == -signal.SIGKILL
    else:
        assert process.returncode == RefreshExit.DATABASE_BEHIND, err
        (error,) = [line for line in err.splitlines() if line.startswith("error: ")]
        assert error.startswith("error: scores published to") and "next" in error, err
        assert "Traceback" not in err
    # and the next run writes the published run, equal to its files (a refresh of the same
    # data: nothing else to do), once
    done = run_cli(command, world_dir, "--out", run_a, "--store", scored[0], "--to", url)
    assert done.returncode == 0, done.stderr
    assert "wrote " in done.stdout and "***" not in done.stdout
    assert ("nothing to do" in done.stdout) == (command == "refresh")
    _equal_to_files(lambda q: _pg(url, q), run_a)
    assert len(_pg(url, "SELECT * FROM scoring_runs")) == 2
    if command == "refresh":
        again = run_cli(command, world_dir, "--out", run_a, "--store", scored[0], "--to", url)
        assert again.returncode == 0 and "wrote " not in again.stdout, again.stderr
