"""The local engine: events streamed into per-bucket files, then each bucket built by
``build_bucket`` in forked worker processes.

The events are read in chunks of 2M rows; each raw row goes to its account's hash bucket and is
written to that bucket's Arrow scratch file. Workers (``workers``, two by default) read one
bucket each, so memory follows the bucket size, not the data size; they die with the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from features.errors import ContractError
from features.io import RawSource
from features.leftovers import die_with_parent
from features.plan import BuildPlan, build_bucket, event_buckets
from features.report import ValidationReport
from features.sources import TableSource

BucketResult = tuple[pd.DataFrame, ValidationReport, pd.DataFrame]  # features, report, rejects


def partition_events(
    plan: BuildPlan, source: TableSource, folder: Path, chunk_rows: int = 2_000_000
) -> dict[int, list[tuple[str, Path]]]:
    """Stream every events part of ``source`` into per-bucket Arrow files under ``folder``."""
    writers: dict[tuple[int, str], pa.ipc.RecordBatchFileWriter] = {}
    schemas: dict[str, pa.Schema] = {}
    files: dict[int, list[tuple[str, Path]]] = {}
    streamed = 0
    try:
        for index, part in enumerate(plan.events):
            for table in source.batches(part, chunk_rows):
                streamed += table.num_rows
                if not table.num_rows:
                    continue
                buckets = event_buckets(table, plan)
                order = np.argsort(buckets.astype(np.int16), kind="stable")  # radix sort
                ordered = table.take(order)
                present, starts = np.unique(buckets[order], return_index=True)
                ends = np.r_[starts[1:], len(order)]
                for bucket, lo, hi in zip(present, starts, ends, strict=True):
                    key = (int(bucket), part.name)
                    if key not in writers:
                        path = folder / f"bucket={bucket}" / f"source={index}.arrow"
                        path.parent.mkdir(parents=True, exist_ok=True)
                        # scratch files are read once, soon: Arrow IPC, no encoding work
                        writers[key] = pa.ipc.new_file(path, schemas.get(part.name, table.schema))
                        files.setdefault(int(bucket), []).append((part.name, path))
                    piece = ordered.slice(lo, hi - lo)
                    schema = schemas.setdefault(part.name, piece.schema)
                    if piece.schema != schema:
                        piece = piece.cast(schema)
                    writers[key].write_table(piece)
    finally:
        for writer in writers.values():
            writer.close()
    if not streamed:
        names = ", ".join(part.name for part in plan.events)
        raise ContractError(
            f"events ({names}): no rows; the features are made of engagement, so export the "
            "events (web visits, emails, webinars, ...) with the other tables"
        )
    return files


def _read_arrow(path: Path) -> pd.DataFrame:
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all().to_pandas()


class _LocalBuckets:
    """Runs ``build_bucket`` over the partitioned buckets, in forked worker processes."""

    def __init__(self, plan: BuildPlan, files: dict[int, list[tuple[str, Path]]]) -> None:
        self.plan, self.files = plan, files
        self.account_bucket = plan.account_bucket

    def __call__(self, bucket: int) -> BucketResult:
        plan = self.plan
        raw = [
            RawSource("events", name, _read_arrow(path), plan.formats.get(name, {}))
            for name, path in self.files.get(bucket, [])
        ]
        ids = plan.base.accounts["account_id"].to_numpy()[self.account_bucket == bucket]
        return build_bucket(plan, raw, ids)


_WORKER: _LocalBuckets | None = None  # each forked worker's copy of the job


def _start_worker(job: _LocalBuckets, parent: int) -> None:
    global _WORKER
    die_with_parent(parent)
    _WORKER = job


def _work(bucket: int) -> BucketResult:
    assert _WORKER is not None
    return _WORKER(bucket)


def run_local(
    plan: BuildPlan, source: TableSource, scratch: Path, workers: int | None
) -> Iterator[BucketResult]:
    """Build the features bucket by bucket; yields each bucket's (features, report, rejects)."""
    job = _LocalBuckets(plan, partition_events(plan, source, scratch))
    buckets = range(plan.n_buckets)
    progress = partial(tqdm, desc="features", unit="bucket", total=plan.n_buckets, disable=None)
    workers = workers or min(2, os.cpu_count() or 1)
    if workers <= 1 or plan.n_buckets == 1:
        yield from progress(map(job, buckets))
        return
    # fork: the workers share the plan's tables copy-on-write instead of unpickling them
    with ProcessPoolExecutor(
        min(workers, plan.n_buckets),
        mp_context=get_context("fork"),
        initializer=_start_worker,
        initargs=(job, os.getpid()),
    ) as pool:
        yield from progress(pool.map(_work, buckets))
