"""Reading the events from a database against reading them from Parquet, measured in one run.

    python -m bench.sql --accounts 10000                 # about 1 M events
    python -m bench.sql --world data/bench-10000 --url postgresql://user@host:5432/db

Generates the world once (or reuses it), starts a PostgreSQL 15 of its own (as the tests do:
``initdb`` into a temporary folder) unless ``--url`` names one, and loads the events into it
and into a DuckDB file. Then each reader streams every event in batches of 2 M rows, in its own
process so peak memory is its own, in three rounds (the readers taking turns, the fastest run
of each counts): Parquet through ``FolderSource`` (the baseline), PostgreSQL through
``SqlSource`` on ADBC (the driver chosen), PostgreSQL through psycopg 3 two ways (``COPY ... TO
STDOUT`` CSV into pyarrow's CSV reader, a server-side cursor into Arrow arrays), DuckDB through
``SqlSource``; and the database's fingerprint of the events (what a refresh hashes). Results go
to ``bench/results/sql.json`` and stdout.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bench.measure import ensure_world, measure, record, stamp

CHUNK_ROWS = 2_000_000  # the local engine's chunk of events
READERS = ("parquet", "postgresql-adbc", "psycopg-copy", "psycopg-cursor", "duckdb")
# PostgreSQL type OIDs of the world's columns -> Arrow, for psycopg's readers
_ARROW = {
    25: pa.string(),
    1043: pa.string(),
    1184: pa.timestamp("us", "UTC"),
    1114: pa.timestamp("us"),
    701: pa.float64(),
    20: pa.int64(),
    23: pa.int32(),
    1082: pa.date32(),
}


def read(reader: str, where: str) -> dict[str, Any]:
    """Stream every event of ``where`` (a folder or a database URL) with ``reader``; the rows
    and seconds it took (the process's start and imports excluded)."""
    from features.settings import DataSettings
    from features.sources import open_source

    began = time.perf_counter()
    if reader in ("parquet", "postgresql-adbc", "duckdb"):
        source = open_source(where, DataSettings())
        (part,) = source.parts("events")
        rows = sum(batch.num_rows for batch in source.batches(part, CHUNK_ROWS))
    elif reader == "postgresql fingerprint":
        source = open_source(where, DataSettings())
        (part,) = source.parts("events")
        source.fingerprint(part)
        rows = source.count_rows(part)
    else:
        rows = sum(t.num_rows for t in _psycopg(where, copy=reader == "psycopg-copy"))
    return {"rows": rows, "read_seconds": round(time.perf_counter() - began, 3)}


def _psycopg(url: str, *, copy: bool) -> Iterator[pa.Table]:
    """The events through psycopg 3: COPY's CSV parsed by pyarrow, or a server-side cursor's
    rows turned into Arrow arrays, in tables of ``CHUNK_ROWS``."""
    import psycopg

    with psycopg.connect(url, options="-c TimeZone=UTC") as connection:
        described = connection.execute("SELECT * FROM events LIMIT 0").description or []
        schema = pa.schema([(c.name, _ARROW[c.type_code]) for c in described])
        if copy:
            with connection.cursor().copy("COPY events TO STDOUT (FORMAT csv)") as stream:
                reader = pacsv.open_csv(
                    io.BufferedReader(_CopyFile(iter(stream)), 1 << 20),
                    read_options=pacsv.ReadOptions(column_names=schema.names, block_size=64 << 20),
                    convert_options=pacsv.ConvertOptions(
                        column_types=schema,
                        strings_can_be_null=True,
                        quoted_strings_can_be_null=False,
                    ),
                )
                for batch in reader:
                    yield pa.Table.from_batches([batch])
            return
        with connection.cursor(name="events") as cursor:
            cursor.itersize = 100_000
            cursor.execute("SELECT * FROM events")
            while rows := cursor.fetchmany(CHUNK_ROWS):
                columns = list(zip(*rows, strict=True))
                yield pa.table(
                    [pa.array(c, t) for c, t in zip(columns, schema.types, strict=True)],
                    schema=schema,
                )


class _CopyFile(io.RawIOBase):
    """COPY's blocks as a file pyarrow reads."""

    def __init__(self, blocks: Iterator[Any]) -> None:
        self.blocks, self.rest = blocks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.rest:
            block = next(self.blocks, None)
            if block is None:
                return 0
            self.rest = bytes(block)
        n = min(len(buffer), len(self.rest))
        buffer[:n], self.rest = self.rest[:n], self.rest[n:]
        return n


def _timed(readers: dict[str, str], rounds: int = 3) -> dict[str, dict[str, Any]]:
    """Each reader (name -> where it reads) run ``rounds`` times, each in a process of its
    own and the readers taking turns, so that every one meets the same load on the machine;
    each reader's fastest run, with its peak memory."""
    runs: dict[str, list[dict[str, Any]]] = {reader: [] for reader in readers}
    for _ in range(rounds):
        for reader, where in readers.items():
            done = measure([sys.executable, "-m", "bench.sql", "--read", reader, "--source", where])
            read = json.loads(str(done["stdout"]))
            runs[reader].append({**read, "peak_rss_gb": done["peak_rss_gb"]})
    return {r: min(found, key=lambda run: float(run["read_seconds"])) for r, found in runs.items()}


def _load(world: Path, url: str | None, folder: Path) -> tuple[str, str, dict[str, float]]:
    """The world in PostgreSQL (``url``, else a cluster of this run's own) and in a DuckDB
    file; the URLs and the seconds each load took."""
    from tests.databases import to_duckdb, to_postgres

    began = time.perf_counter()
    postgres = to_postgres(world, url) if url else ""
    loaded = time.perf_counter()
    duckdb = to_duckdb(world, folder / "world.duckdb")
    seconds = {"postgresql": loaded - began, "duckdb": time.perf_counter() - loaded}
    return postgres, duckdb, {k: round(v, 1) for k, v in seconds.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    world = args.world or Path(f"data/bench-{args.accounts}")
    ensure_world(world, args.accounts, args.seed)
    events = pq.ParquetFile(world / "events.parquet").metadata.num_rows
    cluster = None
    url = args.url
    if url is None:
        from tests.tracking_server import Postgres

        cluster = Postgres().start()
        url = cluster.create_database("bench_sql")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            postgres, duckdb, loads = _load(world, url, Path(tmp))
            where = {"parquet": str(world), "duckdb": duckdb}
            readers = {reader: where.get(reader, postgres) for reader in READERS}
            timings = _timed({**readers, "postgresql fingerprint": postgres})
    finally:
        if cluster is not None:
            cluster.stop()
    base = float(timings["parquet"]["read_seconds"])
    return {
        **stamp(),
        "accounts": args.accounts,
        "events": events,
        "load_seconds": loads,
        "readers": timings,
        "ratio_to_parquet": {
            r: round(float(t["read_seconds"]) / base, 2) for r, t in timings.items()
        },
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--world", type=Path, help="world folder (generated if missing)")
    parser.add_argument("--url", help="an empty PostgreSQL database (default: one started here)")
    parser.add_argument(
        "--read", choices=[*READERS, "postgresql fingerprint"], help=argparse.SUPPRESS
    )
    parser.add_argument("--source", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.read:
        result = read(args.read, args.source)
        print(json.dumps(result))
        return result
    return record("sql", run(args))


if __name__ == "__main__":
    main()
