"""Feature-table benchmark: the local engine against a DuckDB floor, measured in one run.

    python -m bench.features --accounts 100000 --seed 7 --world data/bench-100k

Generates the world once (or reuses it), then runs, each in its own process so peak memory
is its own: ``inmarket features`` (validation, all feature families, 12 monthly snapshots)
and a DuckDB query over the same Parquet computing only the simplest aggregates (events and
distinct people per account per snapshot's 90-day window). Peak memory is sampled every 0.1 s
over the process and its children, both as summed RSS (counts pages shared by forked
workers once per process, an upper bound) and as summed PSS (shared pages split between
the processes sharing them). Results go to ``bench/results/features.json`` and stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import textwrap
from pathlib import Path

import pyarrow.parquet as pq

from bench.measure import INMARKET, ensure_world, measure, record, stamp

DUCKDB_FLOOR = textwrap.dedent("""
    import sys, duckdb
    events, end, snapshots = sys.argv[1], sys.argv[2], int(sys.argv[3])
    con = duckdb.connect()
    con.execute("SET threads = 2")
    rows = con.execute(f'''
        WITH grid AS (
            SELECT TIMESTAMPTZ '{end}' - INTERVAL (30 * k) DAY AS as_of
            FROM range({snapshots}) t(k)),
        ev AS (SELECT account_id, person_id, timestamp FROM read_parquet('{events}'))
        SELECT count(*) FROM (
            SELECT ev.account_id, grid.as_of, count(*) AS events_90d,
                   count(DISTINCT ev.person_id) AS people_90d
            FROM ev JOIN grid
              ON ev.timestamp < grid.as_of AND ev.timestamp >= grid.as_of - INTERVAL 90 DAY
            GROUP BY ALL)''').fetchone()[0]
    print(rows)
""")


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--world", type=Path, help="world folder (generated if missing)")
    parser.add_argument("--snapshots", type=int, default=12)
    args = parser.parse_args(argv)
    world = args.world or Path(f"data/bench-{args.accounts}")
    inmarket = INMARKET
    generated = ensure_world(world, args.accounts, args.seed)
    events = pq.ParquetFile(world / "events.parquet").metadata.num_rows
    end = json.loads((world / "_extract.json").read_text())["extracted_at"]
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = measure(
            [
                *inmarket,
                "features",
                str(world),
                "--out",
                f"{tmp}/f.parquet",
                "--snapshots",
                str(args.snapshots),
            ]
        )
        rows = pq.ParquetFile(f"{tmp}/f.parquet").metadata.num_rows
    floor = measure(
        [
            sys.executable,
            "-c",
            DUCKDB_FLOOR,
            str(world / "events.parquet"),
            end,
            str(args.snapshots),
        ]
    )
    result = {
        **stamp(),
        "accounts": args.accounts,
        "events": events,
        "snapshot_rows": rows,
        "generate": generated,
        "pipeline": {**pipeline, "events_per_second": round(events / float(pipeline["seconds"]))},
        "duckdb_floor": {**floor, "events_per_second": round(events / float(floor["seconds"]))},
        "ratio_to_floor": round(float(pipeline["seconds"]) / float(floor["seconds"]), 2),
    }
    return record("features", result)


if __name__ == "__main__":
    main()
