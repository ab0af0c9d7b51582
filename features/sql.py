"""Reading a database: PostgreSQL, or a DuckDB file (the embedded default where a team has no
server), streamed in Arrow batches typed as the contract reads them, with every driver error
turned into one line that names the table and hides any password (``Database``).

``features.sources.SqlSource`` reads the canonical tables through it, as ``FolderSource`` reads
files through ``features.io``. A relation is a table name (``analytics.web_events``) or a query
(``select ... from ...``). PostgreSQL is read through ADBC, whose COPY reader hands out Arrow
batches (chosen by measurement over psycopg: BENCHMARKS.md, "Reading from a database").
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pyarrow as pa

from features.contract import column_kinds
from features.database import DatabaseUrl
from features.errors import ConfigError, ContractError, InMarketError

_QUERY = re.compile(r"\s*\(*\s*(select|with|values|table)\b", re.IGNORECASE)
_IDENTIFIER = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'
_NAME = re.compile(rf"{_IDENTIFIER}(?:\.{_IDENTIFIER}){{0,2}}")
_BATCH_BYTES = 32 << 20  # ADBC's batch size hint; batches are re-cut to the rows asked for
_CONNECT_SECONDS = 10  # libpq waits this long for a server before saying it is not there
# every session: timestamps rendered in UTC (the fingerprint's row text), and nothing written
_SESSION = "-c TimeZone=UTC -c default_transaction_read_only=on"
_LOST = ("08", "57P")  # SQLSTATE classes: connection exception, the server ended the session
_NO_TABLE = "42P01"


def is_query(relation: str) -> bool:
    """Whether ``relation`` is a query (``select``/``with``/``values``/``table`` ...) rather
    than a table name."""
    return _QUERY.match(relation) is not None


def check_relation(relation: str, where: str) -> str:
    """``relation`` if it is a query or a table name (``schema.table``, quoted parts allowed);
    else a ``ConfigError`` naming ``where`` it was written."""
    text = relation.strip().rstrip(";").strip()
    if is_query(text) or _NAME.fullmatch(text):
        return text
    raise ConfigError(
        f"{where} = {relation!r}: neither a table name (schema.table) nor a query (select ...); "
        'write the table as schema.table ("Quoted Name" for other characters) or a select'
    )


def _from(relation: str) -> str:
    """``relation`` as a FROM item named ``part`` (a query's last line may be a comment)."""
    return f"({relation}\n) AS part" if is_query(relation) else f"{relation} AS part"


def quoted(column: str) -> str:
    """A column name as an SQL identifier, whatever its characters."""
    return '"' + column.replace('"', '""') + '"'


@dataclass(frozen=True)
class Database:
    """A database to read, by its URL as written (no connection, no resolved password: safe
    to pickle and to log as ``uri``). Each call opens its own read-only session."""

    url: DatabaseUrl

    @property
    def uri(self) -> str:
        """The database for a run's lineage: no password, a DuckDB file by its absolute path."""
        if self.url.dialect == "duckdb":
            return f"duckdb://{self.url.path.resolve()}"
        return self.url.shown

    def stream(self, relation: str, chunk_rows: int, what: str) -> Iterator[pa.Table]:
        """The rows of ``relation`` in tables of ``chunk_rows`` rows (the last may hold fewer;
        an empty relation gives one empty table with its columns), driver types made plain
        (``plain``)."""
        with self._session(what) as session:
            reader = session.reader(f"SELECT * FROM {_from(relation)}", chunk_rows)
            yield from _cut(_guarded(reader, lambda e: self._failure(e, what)), chunk_rows)

    def columns(self, relation: str, what: str) -> list[str] | None:
        """The columns of ``relation``, or None when it names a table the database lacks."""
        with self._session(what) as session:
            try:
                reader = session.reader(f"SELECT * FROM {_from(relation)} LIMIT 0", 1)
            except Exception as exc:
                if _missing_table(exc):
                    return None
                raise
            return list(reader.schema.names)

    def column(self, relation: str, column: str, what: str) -> pa.ChunkedArray:
        """One column of ``relation``, its type made plain."""
        with self._session(what) as session:
            reader = session.reader(f"SELECT {quoted(column)} FROM {_from(relation)}", 1 << 20)
            table = pa.Table.from_batches(list(reader), reader.schema)
        return plain(table).column(0)

    def count(self, relation: str, what: str) -> int:
        """Rows of ``relation``, counted by the database apart from any read of them."""
        return int(self._scalars(f"SELECT count(*) FROM {_from(relation)}", what)[0])

    def fingerprint(self, relation: str, what: str) -> str:
        """A digest of every row of ``relation``, computed in the database (nothing crosses the
        network): the row count and the sum of each row's 64-bit hash. Any changed, added or
        removed row changes it; the rows' order does not (the same rows are the same data)."""
        row_hash = "hashtextextended(part::text, 0)" if self._postgres else "hash(part)"
        total = self._scalars(
            f"SELECT count(*), coalesce(sum({row_hash}), 0)::text FROM {_from(relation)}", what
        )
        return hashlib.sha256(f"{self.url.dialect}:{total[0]}:{total[1]}".encode()).hexdigest()

    @property
    def _postgres(self) -> bool:
        return self.url.dialect == "postgresql"

    def _scalars(self, query: str, what: str) -> tuple[Any, ...]:
        with self._session(what) as session:
            reader = session.reader(query, 1)
            return tuple(pa.Table.from_batches(list(reader), reader.schema).to_pylist()[0].values())

    @contextmanager
    def _session(self, what: str) -> Iterator[_Session]:
        """A read-only session; a driver error inside it becomes one line naming ``what``."""
        session = self._connect()
        try:
            yield session
        except InMarketError:
            raise
        except Exception as exc:
            if _driver_error(exc):
                raise self._failure(exc, what) from None
            raise
        finally:
            session.close()

    def _connect(self) -> _Session:
        try:
            if self._postgres:
                import adbc_driver_postgresql.dbapi as adbc

                uri = _session_uri(self.url.resolve())
                return _Session(adbc.connect(uri, autocommit=True), duckdb=False)
            import duckdb

            if not self.url.path.is_file():
                raise ConfigError(
                    f"{self.url.shown}: no DuckDB file at {self.url.path.resolve()}; check the "
                    "path (duckdb:///absolute/path.duckdb, duckdb://relative/path.duckdb)"
                )
            connection = duckdb.connect(str(self.url.path), read_only=True)
            connection.execute("SET TimeZone = 'UTC'")
            return _Session(connection, duckdb=True)
        except InMarketError:
            raise
        except Exception as exc:
            if not _driver_error(exc):
                raise
            raise self._refused(exc) from None

    def _refused(self, exc: Exception) -> ConfigError:
        """The one line for a session the database would not open."""
        text = self.url.hide(_first_line(exc))
        state = getattr(exc, "sqlstate", None) or ""
        if state.startswith("28") or "authentication failed" in text or "password" in text:
            return ConfigError(
                f"{self.url.shown}: the database refused the sign-in ({text}); check the user "
                "and the password in the environment variable the URL names"
            )
        return ConfigError(
            f"{self.url.shown}: cannot connect ({text}); check the host, port and database "
            "name in the URL, and that the database server runs"
        )

    def _failure(self, exc: Exception, what: str) -> InMarketError:
        """The one line for a read that failed: the session lost, a table missing, a query the
        database refused."""
        text = self.url.hide(_first_line(exc))
        state = getattr(exc, "sqlstate", None) or ""
        if state.startswith(_LOST) or _lost(text):
            return ConfigError(
                f"{what}: the connection to {self.url.shown} was lost while reading ({text}); "
                "nothing was written: run again once the database is back"
            )
        return ContractError(
            f"{what}: the database could not read it ({text}); fix the table or query named "
            "in [data.tables] (or in the mapping file)"
        )


class _Session:
    """One open connection, PostgreSQL's (ADBC) or DuckDB's, reading Arrow batches."""

    def __init__(self, connection: Any, *, duckdb: bool) -> None:
        self.connection, self.duckdb = connection, duckdb
        self.cursor: Any = None

    def reader(self, query: str, batch_rows: int) -> pa.RecordBatchReader:
        """``query``'s result as a stream of Arrow batches (about ``batch_rows`` each)."""
        if self.duckdb:
            reader: pa.RecordBatchReader = self.connection.sql(query).to_arrow_reader(batch_rows)
            return reader
        self.cursor = self.connection.cursor()
        self.cursor.adbc_statement.set_options(
            **{"adbc.postgresql.batch_size_hint_bytes": str(_BATCH_BYTES)}
        )
        self.cursor.execute(query)
        stream: pa.RecordBatchReader = self.cursor.fetch_record_batch()
        return stream

    def close(self) -> None:
        try:
            if self.cursor is not None:
                self.cursor.close()
        finally:
            self.connection.close()


def plain(table: pa.Table) -> pa.Table:
    """Driver types as the pipeline reads Parquet's: decimals as float64, timestamps in UTC
    microseconds (one without time zone taken as UTC), text as strings."""
    fields = []
    for field in table.schema:
        kind = field.type
        if pa.types.is_decimal(kind):
            kind = pa.float64()
        elif pa.types.is_timestamp(kind):
            kind = pa.timestamp("us", "UTC")
        elif pa.types.is_string_view(kind):
            kind = pa.string()
        fields.append(pa.field(field.name, kind))
    return table.cast(pa.schema(fields))


def contract_typed(name: str, table: pa.Table) -> pa.Table:
    """``table`` (a part of canonical table ``name``) with its contract columns in their
    contract's type where the database's differs: ids and text as strings (an integer id as its
    digits), numbers as float64. Text in a time or number column is left to validation, which
    parses it as it parses a CSV's."""
    kinds = column_kinds(name)
    for index, field in enumerate(table.schema):
        kind, now = kinds.get(field.name), field.type
        wanted: pa.DataType | None = None
        if kind in ("id", "text") and not (
            pa.types.is_string(now) or pa.types.is_large_string(now)
        ):
            wanted = pa.string()
        elif kind == "number" and (pa.types.is_integer(now) or pa.types.is_floating(now)):
            wanted = pa.float64()
        if wanted is not None and wanted != now:
            table = table.set_column(index, field.name, table.column(index).cast(wanted))
    return table


def _cut(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """``batches`` re-cut into tables of exactly ``rows`` rows (the last holds the rest), each
    one contiguous chunk, so the batches of a part do not depend on the driver's."""
    schema: pa.Schema | None = None
    pending: list[pa.RecordBatch] = []
    held, given = 0, False
    for batch in batches:
        schema = batch.schema
        pending.append(batch)
        held += batch.num_rows
        while held >= rows:
            table = pa.Table.from_batches(pending, schema)
            yield plain(table.slice(0, rows).combine_chunks())
            given = True
            rest = table.slice(rows)
            pending, held = rest.to_batches(), rest.num_rows
    if schema is not None and (held or not given):
        yield plain(pa.Table.from_batches(pending, schema).combine_chunks())


def _guarded(
    reader: pa.RecordBatchReader, failure: Callable[[Exception], InMarketError]
) -> Iterator[pa.RecordBatch]:
    """``reader``'s batches; a driver error while streaming becomes ``failure(error)``."""
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except Exception as exc:
            if not _driver_error(exc):
                raise
            raise failure(exc) from None
        yield batch


def _session_uri(resolved: str) -> str:
    """A libpq URI with this reader's session settings and a connect timeout added (a URI's
    own ``options`` kept before them)."""
    parts = urlsplit(resolved)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    params.setdefault("connect_timeout", str(_CONNECT_SECONDS))
    params["options"] = f"{params.get('options', '')} {_SESSION}".strip()
    return parts._replace(query=urlencode(params, quote_via=quote)).geturl()


def _driver_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a database driver: ADBC's or DuckDB's DB-API errors, or
    the error of an Arrow stream a driver feeds (a libpq failure surfaces as ``OSError``)."""
    module = type(exc).__module__ or ""
    drivers = ("adbc_driver", "_duckdb", "duckdb")
    return module.startswith(drivers) or isinstance(exc, (pa.ArrowException, OSError))


def _missing_table(exc: Exception) -> bool:
    state = getattr(exc, "sqlstate", None) or ""
    return state == _NO_TABLE or type(exc).__name__ == "CatalogException"


def _lost(text: str) -> bool:
    words = ("server closed the connection", "terminating connection", "connection lost")
    return any(w in text.lower() for w in words)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
