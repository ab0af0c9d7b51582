"""The benchmark suite: every step of the product on one world, one table.

    python -m bench --accounts 100000            # or: make bench ACCOUNTS=100000
    python -m bench --accounts 10000 --spark     # adds Spark batch scoring

Generates the world (or reuses ``--world``), then runs each step in its own process with its
wall time and peak memory sampled (``bench.measure``): the 12-snapshot feature table and the
DuckDB floor for it, the training feature table (all history, every 45 days), training,
promotion, batch scoring (locally and, with ``--spark``, on Spark in local mode), the static
report, and the serving benchmark (``bench.serve``) on the model just trained. Writes
``bench/results/suite-<accounts>.json`` and ``.md`` and prints the table; when a smaller suite
run is there too, it adds how each step grew between the two sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from bench.features import DUCKDB_FLOOR
from bench.measure import INMARKET, RESULTS, generate_command, measure, stamp


def _rows(path: Path) -> int:
    return int(pq.ParquetFile(path).metadata.num_rows)


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    world = args.world or Path(f"data/bench-{args.accounts}")
    store = work / "mlruns"
    steps: dict[str, dict[str, Any]] = {}

    def step(name: str, command: list[str], note: str = "") -> dict[str, Any]:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        steps[name] = {**measure(command), "note": note}
        return steps[name]

    if not (world / "events.parquet").exists():
        step("generate", generate_command(world, args.accounts, 7))
    events = _rows(world / "events.parquet")
    if "generate" in steps:
        steps["generate"]["note"] = f"{events:,} events"
    extract = json.loads((world / "_extract.json").read_text())["extracted_at"]
    step(
        "features, 12 snapshots",
        [*INMARKET, "features", str(world), "--out", str(work / "f12.parquet")],
    )
    steps["features, 12 snapshots"]["note"] = f"{_rows(work / 'f12.parquet'):,} rows"
    step(
        "DuckDB floor, 12 snapshots",
        [sys.executable, "-c", DUCKDB_FLOOR, str(world / "events.parquet"), extract, "12"],
        "events and distinct people per account and 90-day window only",
    )
    training = work / "training.parquet"
    step(
        "features for training",
        [
            *INMARKET,
            "features",
            str(world),
            "--out",
            str(training),
            "--all-history",
            "--every-days",
            "45",
        ],
    )
    steps["features for training"]["note"] = f"{_rows(training):,} rows, all history every 45 days"
    step(
        "train",
        [*INMARKET, "train", str(world), "--features", str(training), "--store", str(store)],
    )
    step("promote", [*INMARKET, "promote", "--force", "--store", str(store)])
    ranked = work / "ranked.parquet"
    step("score", [*INMARKET, "score", str(world), "--out", str(ranked), "--store", str(store)])
    steps["score"]["note"] = f"{_rows(ranked):,} accounts, 6 snapshots scored, reasons, activity"
    if args.spark:
        step(
            "score on Spark (local[2])",
            [
                *INMARKET,
                "score",
                str(world),
                "--out",
                str(work / "spark.parquet"),
                "--store",
                str(store),
                "--engine",
                "spark",
                "--spark-master",
                "local[2]",
            ],
        )
    step(
        "report",
        [
            *INMARKET,
            "report",
            "--ranked",
            str(ranked),
            "--out",
            str(work / "report.html"),
            "--store",
            str(store),
        ],
        "top 1,000 accounts",
    )
    serving = None
    if args.serve_seconds > 0:
        from bench import serve

        print("bench: serving ...", file=sys.stderr, flush=True)
        serving = serve.main(
            [
                "--store",
                str(store),
                "--features",
                str(work / "f12.parquet"),
                "--seconds",
                str(args.serve_seconds),
                "--soak-rate",
                "0",
            ]
        )
    peak = max(float(s["peak_rss_gb"]) for s in steps.values())
    return {
        **stamp(),
        "accounts": args.accounts,
        "events": events,
        "world": str(world),
        "steps": {k: {m: v for m, v in s.items() if m != "stdout"} for k, s in steps.items()},
        "peak_rss_gb_any_step": peak,
        "features_ratio_to_duckdb": round(
            steps["features, 12 snapshots"]["seconds"]
            / steps["DuckDB floor, 12 snapshots"]["seconds"],
            2,
        ),
        "serving": serving,
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['accounts']:,} accounts, {result['events']:,} events; {result['machine']}; "
        f"{result['date']}",
        "",
        "| step | seconds | peak RSS (GB) | peak PSS (GB) | |",
        "|---|---|---|---|---|",
    ]
    for name, s in result["steps"].items():
        lines.append(
            f"| {name} | {s['seconds']:.1f} | {s['peak_rss_gb']:.2f} | {s['peak_pss_gb']:.2f} "
            f"| {s['note']} |"
        )
    serving = result.get("serving")
    if serving:
        single = serving["single_account_bentoml"]
        batch = serving["batch_1000_accounts_bentoml"]
        lines.append(
            f"| serve: single-account /score, {serving['clients']} clients | "
            f"{single['requests_per_second']:,.0f} req/s | | | p50 {single['p50_ms']:.1f} ms, "
            f"p99 {single['p99_ms']:.1f} ms; {serving['throughput_ratio']}x mlflow models serve |"
        )
        lines.append(
            f"| serve: 1,000-account batch | {batch['p50_ms']:.1f} ms p50 | | | "
            f"p99 {batch['p99_ms']:.1f} ms |"
        )
    return "\n".join(lines) + "\n"


def growth(small: dict[str, Any], large: dict[str, Any]) -> str:
    """How each step's wall time and peak memory grew between two suite runs, against the
    growth of the world itself: a time ratio above the size ratio is worse than linear."""
    size = large["accounts"] / small["accounts"]
    lines = [
        f"Growth from {small['accounts']:,} to {large['accounts']:,} accounts "
        f"({size:g}x the accounts, {large['events'] / small['events']:.2f}x the events)",
        "",
        "| step | seconds | time ratio | peak RSS (GB) | memory ratio | |",
        "|---|---|---|---|---|---|",
    ]
    for name, big in large["steps"].items():
        little = small["steps"].get(name)
        if little is None:
            continue
        time_ratio = big["seconds"] / max(little["seconds"], 0.01)
        memory_ratio = big["peak_rss_gb"] / max(little["peak_rss_gb"], 0.01)
        verdict = "worse than linear" if time_ratio > size * 1.1 else "linear or better"
        lines.append(
            f"| {name} | {little['seconds']:.1f} → {big['seconds']:.1f} | {time_ratio:.1f}x | "
            f"{little['peak_rss_gb']:.2f} → {big['peak_rss_gb']:.2f} | {memory_ratio:.1f}x | "
            f"{verdict} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--world", type=Path, help="world folder (generated if missing)")
    parser.add_argument("--spark", action="store_true", help="also score on Spark (local[2])")
    parser.add_argument(
        "--serve-seconds", type=float, default=10, help="length of each serving load (0: skip)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=Path("data") if Path("data").is_dir() else None) as tmp:
        result = run(args, Path(tmp))
    RESULTS.mkdir(exist_ok=True)
    name = f"suite-{args.accounts}"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = table(result)
    smaller = sorted(
        (json.loads(p.read_text()) for p in RESULTS.glob("suite-*.json") if p.stem != name),
        key=lambda r: r["accounts"],
    )
    smaller = [r for r in smaller if r["accounts"] < args.accounts]
    if smaller:  # the nearest smaller run of this machine, for the growth of each step
        text += "\n" + growth(smaller[-1], result)
    (RESULTS / f"{name}.md").write_text(text)
    print(text)
    return result


if __name__ == "__main__":
    main()
