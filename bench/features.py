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
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pyarrow.parquet as pq

RESULTS = Path(__file__).parent / "results"

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


def measure(command: list[str]) -> dict[str, float | str]:
    """Run a command; return its wall time and the peak memory of its process tree."""
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(process.pid)
    peak_rss = peak_pss = 0
    while process.poll() is None:
        rss = pss = 0
        try:
            for proc in [root, *root.children(recursive=True)]:
                info = proc.memory_full_info()
                rss, pss = rss + info.rss, pss + info.pss
        except psutil.Error:
            pass
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.1)
    out, err = process.communicate()
    if process.returncode:
        raise SystemExit(f"{command[0]} failed:\n{err[-2000:]}")
    return {
        "seconds": round(time.perf_counter() - began, 2),
        "peak_rss_gb": round(peak_rss / 1e9, 2),
        "peak_pss_gb": round(peak_pss / 1e9, 2),
        "stdout": out.strip().splitlines()[-1] if out.strip() else "",
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--world", type=Path, help="world folder (generated if missing)")
    parser.add_argument("--snapshots", type=int, default=12)
    args = parser.parse_args(argv)
    world = args.world or Path(f"data/bench-{args.accounts}")
    inmarket = [sys.executable, "-m", "inmarket.cli"]
    generated = None
    if not (world / "events.parquet").exists():
        generated = measure(
            [
                *inmarket,
                "generate",
                "--accounts",
                str(args.accounts),
                "--seed",
                str(args.seed),
                "--out",
                str(world),
            ]
        )
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
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB",
        "accounts": args.accounts,
        "events": events,
        "snapshot_rows": rows,
        "generate": generated,
        "pipeline": {**pipeline, "events_per_second": round(events / float(pipeline["seconds"]))},
        "duckdb_floor": {**floor, "events_per_second": round(events / float(floor["seconds"]))},
        "ratio_to_floor": round(float(pipeline["seconds"]) / float(floor["seconds"]), 2),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "features.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
