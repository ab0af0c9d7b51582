"""Where the tables come from: one interface (``TableSource``) between the data and everything
that reads it (validation, both engines, the activity table, batch scoring), and its kinds: a
folder of files (``FolderSource``, reading through ``features.io``) and a database
(``SqlSource``, reading through ``features.sql``).

A source hands out each canonical table as parts (a file; for a database, a table or a query),
already in canonical columns: the mapping file, when there is one, is applied here and nowhere
else. A new kind of source is one subclass here plus one ``[data] kind``, opened by
``open_source``.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract import OPTIONAL_TABLES, TABLE_ORDER
from features.database import DatabaseUrl, is_database_url
from features.errors import ConfigError, ContractError
from features.io import (
    EXTRACT_MANIFEST,
    ROW_COLUMN,
    RawSource,
    as_utc,
    count_rows,
    iter_table_batches,
    locate_tables,
    read_extracted_at,
    read_file_column,
    read_table_file,
    text_table,
)
from features.mapping import Mapping, SourceMapping, map_frame
from features.report import CLOCK, GIVEN
from features.settings import DataSettings
from features.sql import Database, check_relation, contract_typed, is_query

_WHOLE_ROWS = 1_000_000  # batch size of the whole-part reads the base class builds on batches


@dataclass(frozen=True)
class TablePart:
    """One piece of a canonical table (a file; for a database, a query), named as the report and
    the rejects name its rows; ``formats`` holds the strftime of its date columns, if given."""

    table: str
    name: str
    formats: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SparkInput:
    """How Spark's generic reader loads a part:
    ``spark.read.format(format).options(**options).load(path)``."""

    format: str
    path: str | None = None
    options: dict[str, str] = field(default_factory=dict)


class TableSource(ABC):
    """The canonical tables of one export, part by part, in canonical columns.

    A subclass says where parts are (``parts``), reads one in Arrow batches (``batches``) and
    tells the export time it records (``extracted_at``). Whole reads, row counts and single
    columns default to the batches: each default reads the whole part, so a subclass overrides
    ``count_rows`` and ``read_column`` where it has a cheaper way (a file's footer, ``SELECT
    count(*)``), and ``count_rows`` where it can count apart from the read. A source is pickled
    to Spark's executors with the plan: it holds settings, never an open connection or a
    credential."""

    KIND: ClassVar[str]

    @property
    @abstractmethod
    def uri(self) -> str:
        """Where the tables are, as a URI (what a training run logs as its data source); never
        holds a credential."""

    @abstractmethod
    def parts(self, table: str) -> list[TablePart]:
        """The parts of ``table``; none for an absent optional table, a ``ContractError`` naming
        the table and what was found for an absent required one."""

    @abstractmethod
    def batches(self, part: TablePart, chunk_rows: int) -> Iterator[pa.Table]:
        """``part`` in Arrow batches of about ``chunk_rows`` rows, in canonical columns, each
        row with its number in the part (``_row``)."""

    @abstractmethod
    def extracted_at(self) -> tuple[datetime, str] | None:
        """The export time the source records and where it records it, if it does."""

    @property
    def name(self) -> str:
        """A short name for the data (a folder's name), for run names."""
        return unquote(PurePosixPath(urlparse(self.uri).path).name) or self.uri

    def read_part(self, part: TablePart) -> pd.DataFrame:
        """``part`` whole, in canonical columns."""
        tables = list(self.batches(part, _WHOLE_ROWS))
        return pa.concat_tables(tables).to_pandas() if tables else pd.DataFrame()

    def count_rows(self, part: TablePart) -> int:
        """Rows in ``part``, exactly: the validation report's rows in, which the rows used and
        rejected must add up to. Counted from the batches unless a subclass counts apart from
        the read, so that a row lost reading it shows (a file's footer, ``SELECT count(*)``)."""
        return sum(batch.num_rows for batch in self.batches(part, _WHOLE_ROWS))

    def read_column(self, part: TablePart, column: str) -> pd.Series | None:
        """One canonical column of ``part``, or None when the part has no such column."""
        values = [
            b.column(column) for b in self.batches(part, _WHOLE_ROWS) if column in b.schema.names
        ]
        return pa.chunked_array(values).to_pandas() if values else None

    def fingerprint(self, part: TablePart) -> str:
        """A digest that changes whenever ``part``'s data does (what a refresh compares to tell
        new data): here, of its rows as read, in Arrow's format; a subclass digests what it
        holds more cheaply (a file's bytes, a database's own hash of its rows)."""
        digest = hashlib.sha256()
        for batch in self.batches(part, _WHOLE_ROWS):
            for piece in batch.to_batches():
                digest.update(piece.serialize())
        return digest.hexdigest()

    def to_canonical(self, part: TablePart, frame: pd.DataFrame) -> pd.DataFrame:
        """A raw chunk of ``part`` as read by Spark (``spark_input``), in canonical columns."""
        return frame

    def spark_input(self, part: TablePart) -> SparkInput:
        """How Spark reads ``part`` itself, so that executors read it, not the driver."""
        raise ConfigError(
            f"[data] kind {self.KIND!r}: the Spark engine cannot read {part.table} from "
            f"{self.uri}; set features.engine = 'local'"
        )

    def read(self, tables: Iterable[str] = TABLE_ORDER) -> dict[str, list[RawSource]]:
        """Each of ``tables`` whole, part by part, with each part's rows as counted here, for
        validation (absent optional ones omitted)."""
        wanted = set(tables)
        return {
            table: [
                RawSource(table, p.name, self.read_part(p), dict(p.formats), self.count_rows(p))
                for p in parts
            ]
            for table in TABLE_ORDER
            if table in wanted and (parts := self.parts(table))
        }

    def export_time(self, given: datetime | None) -> tuple[datetime | None, str]:
        """When the export was taken and where that came from: given, recorded by the source,
        else unknown (None: validation takes the clock, and says so)."""
        if given is not None:
            return as_utc(given), GIVEN
        recorded = self.extracted_at()
        return recorded if recorded is not None else (None, CLOCK)

    def lineage(self) -> dict[str, Any]:
        """What a run trained on: the kind, the URI and the parts of every table present (what
        a training run records as its dataset's source)."""
        parts = {table: [p.name for p in self.parts(table)] for table in TABLE_ORDER}
        return {"kind": self.KIND, "uri": self.uri, "parts": {t: p for t, p in parts.items() if p}}


@dataclass(frozen=True, kw_only=True)
class FilePart(TablePart):
    """A file (or a folder of Parquet parts) of a folder source, with its mapping if any."""

    path: Path
    mapping: SourceMapping | None = None


class FolderSource(TableSource):
    """A folder of Parquet or CSV files, one per table (``<table>.parquet``, ``<table>.csv``,
    a ``<table>/`` folder of Parquet parts), or the files a mapping file names."""

    KIND = "folder"

    def __init__(self, folder: Path, mapping: Path | None = None) -> None:
        self.folder, self.mapping = Path(folder), mapping

    @cached_property
    def _mapping(self) -> Mapping | None:
        return Mapping.load(self.mapping) if self.mapping else None

    @property
    def uri(self) -> str:
        return self.folder.resolve().as_uri()

    def parts(self, table: str) -> list[TablePart]:
        if self._mapping is None:
            path = locate_tables(self.folder).get(table)
            return [] if path is None else [FilePart(table, path.name, path=path)]
        parts: list[TablePart] = []
        for source in self._mapping.sources(table):
            path = self.folder / source.file
            if not path.exists():
                raise ContractError(
                    f"{table}: mapped file {source.file} not found in {self.folder}"
                )
            parts.append(
                FilePart(table, source.file, dict(source.formats), path=path, mapping=source)
            )
        if not parts and table not in OPTIONAL_TABLES:
            raise ContractError(f"table '{table}' is missing from the mapping file")
        return parts

    def batches(self, part: TablePart, chunk_rows: int) -> Iterator[pa.Table]:
        file = _file(part)
        for table in iter_table_batches(file.path, chunk_rows):
            yield text_table(self.to_canonical(part, table.to_pandas())) if file.mapping else table

    def extracted_at(self) -> tuple[datetime, str] | None:
        stamp = read_extracted_at(self.folder)
        return None if stamp is None else (stamp, EXTRACT_MANIFEST)

    def read_part(self, part: TablePart) -> pd.DataFrame:
        return self.to_canonical(part, read_table_file(_file(part).path))

    def count_rows(self, part: TablePart) -> int:
        return count_rows(_file(part).path)

    def read_column(self, part: TablePart, column: str) -> pd.Series | None:
        file = _file(part)
        return read_file_column(
            file.path, file.mapping.columns.get(column, column) if file.mapping else column
        )

    def fingerprint(self, part: TablePart) -> str:
        """Every byte of the part's file, or of its Parquet folder's files by their path in the
        folder (hive folders are columns)."""
        path, digest = _file(part).path, hashlib.sha256()
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
        for file in files or [path]:
            digest.update(str(file.relative_to(path) if files else file.name).encode())
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()

    def to_canonical(self, part: TablePart, frame: pd.DataFrame) -> pd.DataFrame:
        mapping = _file(part).mapping
        return map_frame(part.table, mapping, frame) if mapping else frame

    def spark_input(self, part: TablePart) -> SparkInput:
        path = _file(part).path
        if path.name.endswith(".parquet") or path.is_dir():
            return SparkInput("parquet", str(path))
        # a record may span lines (a line break in quotes), and a quote in quotes is doubled
        return SparkInput("csv", str(path), {"header": "true", "multiLine": "true", "escape": '"'})

    def lineage(self) -> dict[str, Any]:
        mapped = {"mapping": Path(self.mapping).resolve().as_uri()} if self.mapping else {}
        return {**super().lineage(), **mapped}


def _file(part: TablePart) -> FilePart:
    if not isinstance(part, FilePart):
        raise TypeError(f"{part.table} ({part.name}): not a part of a folder source")
    return part


@dataclass(frozen=True, kw_only=True)
class SqlPart(TablePart):
    """A table or a query of a database source (``relation``), with its mapping if any."""

    relation: str
    mapping: SourceMapping | None = None


class SqlSource(TableSource):
    """A database (PostgreSQL, DuckDB): each canonical table one database table or query
    (``[data.tables]``; by default the table of the canonical name), or those a mapping file
    names in its entries' ``file``. Read as it is now: it records no export time."""

    KIND = "sql"

    def __init__(self, url: str, settings: DataSettings) -> None:
        self.database = Database(DatabaseUrl(url))
        self.tables, self.mapping = dict(settings.tables), settings.mapping
        self._parts: dict[str, list[TablePart]] = {}

    @cached_property
    def _mapping(self) -> Mapping | None:
        return Mapping.load(self.mapping) if self.mapping else None

    @property
    def uri(self) -> str:
        return self.database.uri

    def parts(self, table: str) -> list[TablePart]:
        if table not in self._parts:  # each table's existence asked of the database once
            self._parts[table] = self._find(table)
        return self._parts[table]

    def _find(self, table: str) -> list[TablePart]:
        relations: list[tuple[str, SourceMapping | None]]
        if self._mapping is None:
            relations = [(self.tables.get(table, table), None)]
        else:
            relations = [
                (check_relation(s.file, f"{self.mapping} [{table}] file"), s)
                for s in self._mapping.sources(table)
            ]
            if not relations and table not in OPTIONAL_TABLES:
                raise ContractError(f"table '{table}' is missing from the mapping file")
        queries = sum(is_query(relation) for relation, _ in relations)
        parts: list[TablePart] = []
        for relation, mapping in relations:
            if is_query(relation):
                name = f"{table} query" + (f" {len(parts) + 1}" if queries > 1 else "")
            elif self.database.columns(relation, table) is not None:
                name = relation
            elif table in OPTIONAL_TABLES and mapping is None and table not in self.tables:
                return []
            else:
                raise ContractError(
                    f"{table}: no table {relation} in {self.uri}; create it, or name the table "
                    f'(or a query) holding the {table} in [data.tables] {table} = "schema.table"'
                    + (" or in the mapping file" if mapping else "")
                )
            formats: dict[str, str] = dict(mapping.formats) if mapping else {}
            parts.append(SqlPart(table, name, formats, relation=relation, mapping=mapping))
        return parts

    def batches(self, part: TablePart, chunk_rows: int) -> Iterator[pa.Table]:
        sql, offset = _sql(part), 0
        for table in self.database.stream(sql.relation, chunk_rows, _what(part)):
            if offset == 0:
                _once_each(part, table.column_names)
            rows = pa.array(np.arange(offset, offset + table.num_rows))
            offset += table.num_rows
            table = table.append_column(ROW_COLUMN, rows)
            if sql.mapping is not None:
                table = text_table(map_frame(part.table, sql.mapping, table.to_pandas()))
            yield contract_typed(part.table, table)

    def extracted_at(self) -> tuple[datetime, str] | None:
        return None

    def count_rows(self, part: TablePart) -> int:
        return self.database.count(_sql(part).relation, _what(part))

    def read_column(self, part: TablePart, column: str) -> pd.Series | None:
        sql = _sql(part)
        name = sql.mapping.columns.get(column, column) if sql.mapping else column
        if name not in (self.database.columns(sql.relation, _what(part)) or []):
            return None
        return self.database.column(sql.relation, name, _what(part)).to_pandas()

    def fingerprint(self, part: TablePart) -> str:
        return self.database.fingerprint(_sql(part).relation, _what(part))

    def lineage(self) -> dict[str, Any]:
        sql = [_sql(p) for table in TABLE_ORDER for p in self.parts(table)]
        queries = {p.name: p.relation for p in sql if is_query(p.relation)}
        mapped = {"mapping": Path(self.mapping).resolve().as_uri()} if self.mapping else {}
        return {**super().lineage(), **({"queries": queries} if queries else {}), **mapped}


def _sql(part: TablePart) -> SqlPart:
    if not isinstance(part, SqlPart):
        raise TypeError(f"{part.table} ({part.name}): not a part of a database source")
    return part


def _what(part: TablePart) -> str:
    """How an error names a part: its table, and the database table or query."""
    return f"{part.table} ({part.name})"


def _once_each(part: TablePart, columns: list[str]) -> None:
    """Two columns of one name (a query's join) would leave validation to guess which is meant."""
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise ContractError(
            f"{_what(part)}: column(s) {twice} appear more than once; name each once "
            "(select a.x AS x, ...)"
        )


def open_source(data: TableSource | str | Path | None, settings: DataSettings) -> TableSource:
    """The tables to read: ``data`` itself when it is a source, a database when it is a
    database URL, else the source ``[data] kind`` names: a folder at ``data`` (read through
    ``[data] mapping`` if given), or the database at ``[data] url``."""
    if isinstance(data, TableSource):
        return data
    if data is not None and is_database_url(str(data)):
        return SqlSource(str(data), settings)
    match settings.kind:
        case "folder" if data is not None:
            return FolderSource(Path(data), settings.mapping)
        case "sql" if data is None and settings.url is not None:
            return SqlSource(settings.url, settings)
        case "sql":
            raise ConfigError(
                f"[data] kind = 'sql' reads a database; {data or 'no DATA'} is not its URL: give "
                "DATA as postgresql://... or duckdb:///... (or set [data] url), or set "
                "[data] kind = 'folder'"
            )
    raise ConfigError("give DATA: the folder (or database URL) that holds the tables")
