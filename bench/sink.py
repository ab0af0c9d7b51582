"""Writing scores into a database (``serving.sink``): a published run of ``--accounts`` accounts
written to PostgreSQL (the replaced rows deleted, the run COPYed in, one transaction) and
to a DuckDB file, first into empty tables, then ``--reruns`` times again as re-runs of the same
as_of (every row replaced), in one run.

    python -m bench.sink --ranked data/ranked.parquet --accounts 100000 \\
        --to 'postgresql://postgres@127.0.0.1:5432/bench'

The run's rows are real ones: those of the run published at ``--ranked`` (the output of
``inmarket score``), its accounts repeated under new ids up to ``--accounts``, each with its
reasons, roles and score history (every snapshot scored). ``--to`` names an empty PostgreSQL
database. Each write is timed whole, as ``inmarket score --to`` does it after publishing:
reading the run's files back through its manifest, converting them to the tables' types,
connecting, and the transaction. Results go to ``bench/results/sink.json`` and stdout.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.measure import record, stamp
from serving.batch import write_ranked
from serving.runs import new_run, published
from serving.settings import SinkSettings
from serving.sink import RunFacts, Sink, Written


def tiled(out: Path, accounts: int) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The list and history of the run published at ``out``, its accounts repeated under new
    ids (``<id>-<copy>``) to ``accounts`` accounts; the run's manifest."""
    run = published(out)
    if run is None:
        raise SystemExit(f"{out}: no published run; make one with `inmarket score`")
    ranked = pd.read_parquet(run.folder / out.name)
    history = pd.read_parquet(run.folder / f"{out.stem}.history.parquet")
    copies = -(-accounts // len(ranked))

    def repeat(frame: pd.DataFrame) -> pd.DataFrame:
        copy = np.repeat(np.arange(copies), len(frame))
        many = pd.concat([frame] * copies, ignore_index=True)
        many["account_id"] = many["account_id"].astype(str) + "-" + pd.Series(copy).astype(str)
        return many

    ranked = repeat(ranked).iloc[:accounts]
    history = repeat(history)
    history = history[history["account_id"].isin(ranked["account_id"])]
    return ranked.reset_index(drop=True), history.reset_index(drop=True), run.manifest


def publish(out: Path, ranked: pd.DataFrame, history: pd.DataFrame, facts: dict[str, Any]) -> None:
    """``ranked`` and ``history`` published at ``out`` as a new run."""
    with new_run(out) as run:
        history.to_parquet(run.path("history.parquet"), index=False)
        write_ranked(ranked, run)
        keep = ("model", "model_version", "as_of")
        run.publish(
            {**{k: facts[k] for k in keep}, "written_at": pd.Timestamp.now("UTC").isoformat()}
        )


def writes(
    url: str,
    out: Path,
    ranked: pd.DataFrame,
    history: pd.DataFrame,
    facts: dict[str, Any],
    reruns: int,
) -> dict[str, Any]:
    """Seconds of the first write into empty tables and of each re-run of the same as_of
    (every row replaced), with the re-runs' best and median: on a shared machine the best is
    the cost of the write itself, the median what a run gets."""
    sink = Sink(SinkSettings(to=url))
    sink.check()
    seconds = []
    for _ in range(1 + reruns):
        publish(out, ranked, history, facts)
        written: Written = sink.write(out, RunFacts(out.parent.as_uri()))
        print(f"bench.sink: {written.summary()}", flush=True)
        seconds.append(round(written.seconds, 2))
    again = seconds[1:]
    return {
        "first write": seconds[0],
        "re-runs of the same as_of": again,
        "re-run best": min(again, default=None),
        "re-run median": statistics.median(again) if again else None,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranked", type=Path, required=True, help="a published ranked.parquet")
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--to", required=True, help="an empty PostgreSQL database's URL")
    parser.add_argument("--reruns", type=int, default=3, help="re-runs of the same as_of")
    args = parser.parse_args(argv)
    ranked, history, facts = tiled(args.ranked, args.accounts)
    result: dict[str, Any] = {
        **stamp(),
        "accounts": len(ranked),
        "history_rows": len(history),
        "from": str(args.ranked),
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        result["postgresql"] = writes(
            args.to, folder / "pg" / "ranked.parquet", ranked, history, facts, args.reruns
        )
        duck = f"duckdb://{folder / 'scores.duckdb'}"
        result["duckdb"] = writes(
            duck, folder / "duck" / "ranked.parquet", ranked, history, facts, args.reruns
        )
        files = published(folder / "pg" / "ranked.parquet")
        assert files is not None
        result["run_parquet_mb"] = round(
            sum(v["bytes"] for k, v in files.manifest["files"].items() if k.endswith("parquet"))
            / 1e6,
            1,
        )
    return record("sink", result)


if __name__ == "__main__":
    main()
