"""Training benchmark: `inmarket train` on about a million labelled snapshot rows.

    python -m bench.train --world data/bench-100000 --every-days 45

Builds the feature table of a (generated or reused) world once, then times ``inmarket train``
from that table: labels, the time split, LightGBM with early stopping and calibration, the three
baselines, metrics, plots and the MLflow run with the registered model, in its own process with
its peak memory sampled. Results go to ``bench/results/train.json`` and stdout.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from bench.measure import INMARKET, ensure_world, measure, record, stamp


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--world", type=Path)
    parser.add_argument("--every-days", type=int, default=45)
    args = parser.parse_args(argv)
    world = args.world or Path(f"data/bench-{args.accounts}")
    inmarket = INMARKET
    ensure_world(world, args.accounts, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        features = Path(tmp) / "features.parquet"
        built = measure(
            [
                *inmarket,
                "features",
                str(world),
                "--out",
                str(features),
                "--every-days",
                str(args.every_days),
                "--all-history",
            ]
        )
        rows = pq.ParquetFile(features).metadata.num_rows
        trained = measure(
            [
                *inmarket,
                "train",
                str(world),
                "--features",
                str(features),
                "--store",
                f"{tmp}/mlruns",
            ]
        )
    result = {
        **stamp(),
        "world": str(world),
        "snapshot_rows": rows,
        "features": built,
        "train": trained,
    }
    return record("train", result)


if __name__ == "__main__":
    main()
