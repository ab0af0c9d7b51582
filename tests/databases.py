"""A world's tables written into a database, as a team's warehouse holds them: every table of a
world folder into PostgreSQL (``to_postgres``, through ADBC's COPY) or a DuckDB file
(``to_duckdb``), one database table per canonical table, the same rows in the same order with
the same column types."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from features.database import DatabaseUrl
from features.sql import quoted


def world_tables(folder: Path) -> dict[str, pa.Table]:
    """Each Parquet table of a world folder by its name (``_truth`` and side files left out)."""
    return {path.stem: pq.read_table(path) for path in sorted(folder.glob("*.parquet"))}


def to_duckdb(folder: Path, path: Path, schema: str = "main") -> str:
    """The tables of ``folder`` in a new DuckDB file at ``path`` (in ``schema``); its URL."""
    import duckdb

    with duckdb.connect(str(path)) as connection:
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted(schema)}")
        for name, table in world_tables(folder).items():
            connection.register("incoming", table)
            connection.execute(
                f"CREATE TABLE {quoted(schema)}.{quoted(name)} AS SELECT * FROM incoming"
            )
            connection.unregister("incoming")
    return f"duckdb://{path.resolve()}"


def to_postgres(folder: Path, url: str, schema: str = "public") -> str:
    """The tables of ``folder`` in the PostgreSQL database at ``url`` (in ``schema``); its URL
    in libpq's form."""
    import adbc_driver_postgresql.dbapi as adbc

    plain = DatabaseUrl(url).resolve()
    with adbc.connect(plain) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted(schema)}")
        for name, table in world_tables(folder).items():
            cursor.adbc_ingest(name, table, mode="create", db_schema_name=schema)
        connection.commit()
    return plain
