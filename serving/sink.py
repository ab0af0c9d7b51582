"""A published scoring run written into a database (``inmarket score --to URL``, ``inmarket
refresh --to URL``): the ranked accounts, every account's score at every snapshot scored, and
one row in ``scoring_runs``, in one transaction. The rows are read back from the run the files
published (``serving.runs``: each file checked against its manifest), after it was published,
so the database holds exactly the files' values.

The tables (``TABLES``; their contract is docs/database-tables.md, schema ``SCHEMA_VERSION``)
are keyed by (account_id, as_of): a run replaces whole the rows of each as_of it holds (an
account missing from it does not linger) and leaves the other as_of values. A write that fails
or is killed leaves every row as it was. An existing table of another layout is refused by
name; nothing here alters or drops a table. Each table's replaced rows are deleted, then the
run's rows go in: on PostgreSQL by ``COPY`` (CSV text, straight into the table, in the same
transaction), on DuckDB from Arrow.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from features.database import DatabaseUrl, Dialect
from features.errors import ConfigError, InMarketError
from features.io import sidecar
from serving.batch import RANKED_COLUMNS
from serving.runs import Published, RunError, published
from serving.settings import SinkSettings
from training.registry import parse_model_uri

SCHEMA_VERSION = 1
APPLICATION = "inmarket"  # PostgreSQL's application_name of the writing session
_WRITERS_LOCK = 0x696E6D61726B  # pg_advisory_xact_lock key: one writer of the tables at a time
_COPY_ROWS = 20_000  # rows per block of COPY text (the run itself is read into memory whole)
_CHECK = {  # what to check when the database cannot be written to
    "postgresql": "check the URL (host, port, database), that the database answers, and the "
    "environment variable of its password",
    "duckdb": "check the file's path (its folder must exist) and that no other process has it "
    "open for writing",
}

# a column's kind: its values' Arrow type, then its type as PostgreSQL's and DuckDB's catalogues
# name it (what an existing table's columns are compared with)
KINDS: dict[str, tuple[pa.DataType, str, str]] = {
    "text": (pa.large_string(), "text", "VARCHAR"),
    "integer": (pa.int32(), "integer", "INTEGER"),
    "number": (pa.float64(), "double precision", "DOUBLE"),
    "flag": (pa.bool_(), "boolean", "BOOLEAN"),
    "time": (pa.timestamp("us", "UTC"), "timestamp with time zone", "TIMESTAMP WITH TIME ZONE"),
    "texts": (pa.list_(pa.string()), "text[]", "VARCHAR[]"),
    "json": (pa.large_string(), "json", "JSON"),
}
_RANKED_KINDS = {
    **dict.fromkeys(("account_id", "name", "domain", "owner", "industry", "region"), "text"),
    **dict.fromkeys(("employee_band", "stage", "top_reasons", "buying_group_gap"), "text"),
    **dict.fromkeys(("status", "model_version"), "text"),
    **dict.fromkeys(("rank", "score", "trend", "people_engaged_90d"), "integer"),
    **dict.fromkeys(("departments_engaged_90d", "high_intent_people_30d"), "integer"),
    **dict.fromkeys(("mql_points_max_90d", "score_before"), "integer"),
    **dict.fromkeys(("stage_before", "change"), "text"),
    "as_of": "time",
    "probability": "number",
    "reasons": "json",
    "roles_engaged": "texts",
    "roles_missing": "texts",
    "in_pipeline": "flag",
    "is_customer": "flag",
}


class DatabaseBehind(InMarketError, RuntimeError):
    """The run is published as files but was not written to the database: it keeps its
    previous rows, and the next run writes the published one."""


@dataclass(frozen=True)
class Table:
    """A table of the contract: its columns (name, kind) in order, its key, and the column
    whose values a run replaces whole."""

    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    replaces: str

    def layout(self, dialect: Dialect) -> dict[str, str]:
        """Each column's type as the database's catalogue names it."""
        at = 1 if dialect == "postgresql" else 2
        return {name: str(KINDS[kind][at]) for name, kind in self.columns}

    def schema(self) -> pa.Schema:
        return pa.schema([(name, KINDS[kind][0]) for name, kind in self.columns])

    def listed(self) -> str:
        """The columns, quoted, for a statement."""
        return ", ".join(f'"{name}"' for name, _ in self.columns)

    def create(self, dialect: Dialect) -> str:
        typed = ", ".join(f'"{name}" {kind}' for name, kind in self.layout(dialect).items())
        key = ", ".join(f'"{name}"' for name in self.key)
        return f"CREATE TABLE {self.name} ({typed}, PRIMARY KEY ({key}))"


_RUN = (("model_name", "text"), ("model_version", "text"), ("run_id", "text"))
RANKED = Table(
    "ranked_accounts",
    (*((c, _RANKED_KINDS[c]) for c in RANKED_COLUMNS), _RUN[0], _RUN[2]),
    ("as_of", "account_id"),
    "as_of",
)
HISTORY = Table(
    "score_history",
    (
        *(("account_id", "text"), ("as_of", "time"), ("probability", "number")),
        *(("score", "integer"), ("stage", "text"), *_RUN),
    ),
    ("as_of", "account_id"),
    "as_of",
)
RUNS = Table(
    "scoring_runs",
    (
        *(("run_id", "text"), ("as_of", "time"), ("model_name", "text")),
        *(("model_version", "text"), ("model_uri", "text"), ("prospects", "integer")),
        *(("stages", "json"), ("statuses", "json"), ("ranked_rows", "integer")),
        *(("history_rows", "integer"), ("data_uri", "text"), ("started_at", "time")),
        *(("finished_at", "time"), ("written_at", "time"), ("schema_version", "integer")),
    ),
    ("run_id",),
    "run_id",
)
TABLES = (RANKED, HISTORY, RUNS)


@dataclass(frozen=True)
class RunFacts:
    """What the run's files do not say: where its data came from (a URI without credentials)
    and when its scoring started (None: not known to the writer, e.g. a later catch-up)."""

    data_uri: str
    started_at: datetime | None = None


@dataclass(frozen=True)
class Written:
    """A run written (or found written before) to the database, for the command's summary."""

    run_id: str
    as_of: str
    ranked: int
    history: int
    seconds: float
    where: str
    before: bool = False

    def summary(self) -> str:
        if self.before:
            return f"{self.where} holds run {self.run_id} already"
        return (
            f"wrote {self.ranked:,} ranked accounts and {self.history:,} score history rows of "
            f"run {self.run_id} (as_of {self.as_of}) to {self.where} in {self.seconds:.1f}s"
        )


class _Database(Protocol):
    """One connection of a dialect, in one transaction until ``commit``."""

    def layout(self, table: Table) -> dict[str, str] | None: ...
    def execute(self, statement: str) -> list[tuple[Any, ...]]: ...
    def lock(self) -> None: ...
    def replace(self, table: Table, rows: pa.Table) -> None: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...


class Sink:
    """The database of ``[sink] to``: ``check`` it before scoring, ``write`` a published run."""

    def __init__(self, settings: SinkSettings) -> None:
        if settings.to is None:
            raise ConfigError("[sink] to: give the database URL the scores are written to")
        self.settings = settings
        self.url = DatabaseUrl(settings.to)

    def check(self) -> None:
        """Connect and compare the tables already there with the contract: a wrong URL or
        password, or a table of another layout, is a ``ConfigError`` before any scoring."""
        failures = _errors(self.url)
        try:
            with self._session() as db:
                for table in TABLES:
                    _same_layout(db, table, self.url)
        except failures as exc:
            raise ConfigError(
                f"cannot write scores to {self.url.shown}: {self.url.hide(exc)}; "
                f"{_CHECK[self.url.dialect]}"
            ) from None

    def write(self, out: Path, facts: RunFacts) -> Written:
        """Write the run published at ``out`` in one transaction, unless the database holds
        it already; ``DatabaseBehind`` if the database fails (its rows stay as they were)."""
        began = time.perf_counter()
        failures: tuple[type[Exception], ...] = (ConfigError, RunError, *_errors(self.url))
        try:
            run = published(out)
            if run is None:
                raise ConfigError("no scoring run is published there")
            rows = run_rows(run, Path(out), facts)
            run_id = _run_id(run)
            with self._session() as db:
                db.lock()  # before the layouts: another writer may be creating the tables
                held = _prepare(db, self.url, run_id)
                if not held:
                    for table in TABLES:
                        db.replace(table, rows[table])
                    db.commit()
        except failures as exc:
            raise DatabaseBehind(
                f"scores published to {out} but not written to {self.url.shown}: "
                f"{self.url.hide(exc)}; the database keeps its previous rows, and the next "
                "`inmarket score --to` or `inmarket refresh --to` writes the published run"
            ) from None
        counts = (rows[RANKED].num_rows, rows[HISTORY].num_rows)
        seconds = time.perf_counter() - began
        as_of = str(run.manifest.get("as_of"))
        return Written(run_id, as_of, *counts, seconds, self.url.shown, before=held)

    @contextmanager
    def _session(self) -> Iterator[_Database]:
        """A connection in a transaction, closed on the way out (uncommitted: rolled back)."""
        db: _Database
        if self.url.dialect == "postgresql":
            db = _Postgres(self.url, self.settings.connect_seconds)
        else:
            db = _DuckDB(self.url)
        try:
            yield db
        finally:
            db.close()


def run_rows(run: Published, out: Path, facts: RunFacts) -> dict[Table, pa.Table]:
    """Each table's rows for the published ``run``: its list and history as the files hold
    them, in the contract's types, with the model and run on every row; its ``scoring_runs``
    row."""
    ranked = _read(run, out.name)
    history = _read(run, sidecar(Path(out.name), "history.parquet").name)
    manifest = run.manifest
    ref = parse_model_uri(manifest["model"]) if manifest.get("model") else None
    run_id, model_name = _run_id(run), ref.name if ref else None
    ranked = ranked.append_column("model_name", _same(model_name, ranked.num_rows))
    ranked = ranked.append_column("run_id", _same(run_id, ranked.num_rows))
    for name, value in (("model_name", model_name), ("model_version", manifest["model_version"])):
        history = history.append_column(name, _same(value, history.num_rows))
    history = history.append_column("run_id", _same(run_id, history.num_rows))
    status = ranked.column("status")
    stages = pc.filter(ranked.column("stage"), pc.equal(status, "prospect"))
    facts_row = {
        "run_id": run_id,
        "as_of": ranked.column("as_of")[0].as_py() if ranked.num_rows else None,
        "model_name": model_name,
        "model_version": manifest["model_version"],
        "model_uri": manifest.get("model"),
        "prospects": len(stages),
        "stages": _counts(stages),
        "statuses": _counts(status),
        "ranked_rows": ranked.num_rows,
        "history_rows": history.num_rows,
        "data_uri": facts.data_uri,
        "started_at": facts.started_at,
        "finished_at": datetime.fromisoformat(manifest["written_at"]),
        "written_at": datetime.now(UTC),
        "schema_version": SCHEMA_VERSION,
    }
    runs = pa.Table.from_pylist([facts_row])
    return {
        table: _typed(rows, table)
        for table, rows in zip(TABLES, (ranked, history, runs), strict=True)
    }


def _read(run: Published, name: str) -> pa.Table:
    return pq.read_table(io.BytesIO(run.read(name)))


def _run_id(run: Published) -> str:
    return Path(run.manifest["run"]).name


def _same(value: str | None, rows: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, pa.string()), rows)


def _counts(values: pa.ChunkedArray) -> str:
    """``{"ready": 12, ...}``: how many rows hold each value, as JSON, most first."""
    counted = pc.value_counts(values).to_pylist()
    ordered = sorted(counted, key=lambda c: (-c["counts"], str(c["values"])))
    return json.dumps({str(c["values"]): c["counts"] for c in ordered})


def _typed(rows: pa.Table, table: Table) -> pa.Table:
    """``rows`` as ``table``'s columns and types: a whole number a float holds becomes an
    integer, a 0/1 a flag, a category its text, NaN a null; a value that does not fit raises. A
    column added since an older version published the run is null (as ``serving.published``
    reads it)."""
    arrays = []
    for field in table.schema():
        if field.name not in rows.column_names:
            arrays.append(pa.nulls(rows.num_rows, field.type))
            continue
        column = rows.column(field.name)
        if pa.types.is_floating(column.type):
            column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
        arrays.append(column.cast(field.type))
    return pa.Table.from_arrays(arrays, schema=table.schema())


def _errors(url: DatabaseUrl) -> tuple[type[Exception], ...]:
    """The driver's errors: a database that refuses, fails or drops. PostgreSQL's driver comes
    with the ``team`` extra: without it, a ``ConfigError`` saying how to install it."""
    if url.dialect == "duckdb":
        import duckdb

        return (duckdb.Error,)
    try:
        import psycopg
    except ImportError:
        raise ConfigError(
            f"{url.shown}: writing to PostgreSQL needs psycopg; install it with "
            "`pip install 'inmarket[team]' -c constraints.txt`"
        ) from None
    return (psycopg.Error,)


def _same_layout(db: _Database, table: Table, url: DatabaseUrl) -> bool:
    """Whether ``table`` is there; raises naming it when it is, with another layout."""
    found = db.layout(table)
    if found is None:
        return False
    expected = table.layout(url.dialect)
    if found == expected:
        return True
    missing = [name for name in expected if name not in found]
    extra = [name for name in found if name not in expected]
    other = [
        f"{name} is {found[name]}, not {kind}"
        for name, kind in expected.items()
        if name in found and found[name] != kind
    ]
    problems = "; ".join(
        [
            *([f"missing {', '.join(missing)}"] if missing else []),
            *([f"not in the contract {', '.join(extra)}"] if extra else []),
            *other,
        ]
    )
    raise ConfigError(
        f"table {table.name} in {url.shown} is not the layout inmarket writes (schema "
        f"{SCHEMA_VERSION}): {problems}. Nothing was written; inmarket never alters or drops "
        "a table: write to another database (--to), or rename that table after saving what "
        "it holds (docs/database-tables.md)"
    )


def _prepare(db: _Database, url: DatabaseUrl, run_id: str) -> bool:
    """Check the tables there, make those missing; whether the database holds ``run_id``."""
    present = {table: _same_layout(db, table, url) for table in TABLES}
    for table, there in present.items():
        if not there:
            db.execute(table.create(url.dialect))
            db.execute(
                f"COMMENT ON TABLE {table.name} IS 'In-market scores, schema "
                f"{SCHEMA_VERSION}: docs/database-tables.md'"
            )
    if not present[RUNS]:
        return False
    quoted = run_id.replace("'", "''")
    return bool(db.execute(f"SELECT 1 FROM {RUNS.name} WHERE run_id = '{quoted}'"))


class _Postgres:
    """PostgreSQL through psycopg 3: the rows by ``COPY`` of CSV text, straight into the tables
    after the run's rows are deleted, in the one transaction."""

    def __init__(self, url: DatabaseUrl, connect_seconds: int) -> None:
        import psycopg

        self.connection = psycopg.connect(
            url.resolve(), connect_timeout=connect_seconds, application_name=APPLICATION
        )

    def layout(self, table: Table) -> dict[str, str] | None:
        found = self.connection.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped "
            "ORDER BY attnum",
            (table.name,),
        ).fetchall()
        return {str(name): str(kind) for name, kind in found} or None

    def execute(self, statement: str) -> list[tuple[Any, ...]]:
        cursor = self.connection.execute(statement.encode())
        return cursor.fetchall() if cursor.description else []

    def lock(self) -> None:
        """Take the writers' lock; and have this transaction compress long values (reasons)
        with lz4 where the server can, several times faster than its default pglz."""
        self.connection.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITERS_LOCK,))
        lz4 = self.connection.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        ).fetchone()
        if lz4 and lz4[0]:
            self.connection.execute("SET LOCAL default_toast_compression = 'lz4'")

    def replace(self, table: Table, rows: pa.Table) -> None:
        """Delete the rows of the values of ``table.replaces`` that ``rows`` hold, then ``COPY``
        ``rows`` in: both in the transaction, so no reader sees the gap."""
        values = pc.unique(rows.column(table.replaces)).to_pylist()
        self.connection.execute(
            f'DELETE FROM {table.name} WHERE "{table.replaces}" = ANY(%s)'.encode(), (values,)
        )
        options = pa_csv.WriteOptions(include_header=False, quoting_style="all_valid")
        statement = f"COPY {table.name} ({table.listed()}) FROM STDIN (FORMAT csv)"
        with self.connection.cursor().copy(statement.encode()) as copy:
            for batch in _as_text_arrays(rows).to_batches(max_chunksize=_COPY_ROWS):
                block = io.BytesIO()
                pa_csv.write_csv(batch, block, options)  # nulls unquoted: NULL; text quoted
                copy.write(block.getbuffer())

    def commit(self) -> None:
        self.connection.commit()

    def close(self) -> None:
        self.connection.close()


def _as_text_arrays(rows: pa.Table) -> pa.Table:
    """Each list of texts as a PostgreSQL array literal, ``{"a","b"}``: COPY's CSV text."""
    for index, field in enumerate(rows.schema):
        if not pa.types.is_list(field.type):
            continue
        lists = rows.column(index).combine_chunks()
        escaped = pc.replace_substring(pc.replace_substring(lists.values, "\\", "\\\\"), '"', '\\"')
        quoted = pc.binary_join_element_wise('"', escaped, '"', "")
        joined = pc.binary_join(pa.ListArray.from_arrays(lists.offsets, quoted), ",")
        literal = pc.binary_join_element_wise("{", joined, "}", "")
        literal = pc.if_else(lists.is_null(), pa.scalar(None, pa.string()), literal)
        rows = rows.set_column(index, field.name, literal)
    return rows


class _DuckDB:
    """A DuckDB file: the rows from Arrow tables registered as views."""

    def __init__(self, url: DatabaseUrl) -> None:
        import duckdb

        self.connection = duckdb.connect(str(url.path))
        self.connection.begin()

    def layout(self, table: Table) -> dict[str, str] | None:
        found = self.connection.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
            "AND table_schema = current_schema() ORDER BY ordinal_position",
            [table.name],
        ).fetchall()
        return {str(name): str(kind) for name, kind in found} or None

    def execute(self, statement: str) -> list[tuple[Any, ...]]:
        return self.connection.execute(statement).fetchall()

    def lock(self) -> None:
        """Nothing to do: a DuckDB file has one writing process at a time."""

    def replace(self, table: Table, rows: pa.Table) -> None:
        """Delete the rows of the values of ``table.replaces`` that ``rows`` hold, then insert
        ``rows`` from Arrow."""
        by, name = f'"{table.replaces}"', f"new_{table.name}"
        self.connection.register(name, rows)
        self.execute(f"DELETE FROM {table.name} WHERE {by} IN (SELECT DISTINCT {by} FROM {name})")
        self.execute(
            f"INSERT INTO {table.name} ({table.listed()}) SELECT {table.listed()} FROM {name}"
        )
        self.connection.unregister(name)

    def commit(self) -> None:
        self.connection.commit()

    def close(self) -> None:
        self.connection.close()
