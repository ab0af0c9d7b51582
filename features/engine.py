"""Build the feature table of a data folder, bucket by bucket, locally or on Spark.

Accounts are split into hash buckets. The small tables (accounts, people, intent,
opportunities) are validated once; events, the large table, are streamed in chunks into
per-bucket files, then each bucket is validated and turned into features by ``build_bucket``,
the one function both engines run. Peak memory is set by the bucket size, not the data size.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, partial
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from tqdm import tqdm

from features.contract import DOMAIN_COLUMN, EARLIEST_DATE, empty_table
from features.encode import domain_of, encode, take_codes
from features.errors import ContractError
from features.families import build_features, fit_categories
from features.io import (
    RawSource,
    count_rows,
    export_time,
    iter_table_batches,
    locate_tables,
    read_folder,
    sidecar,
    text_table,
    write_atomic,
    write_json_atomic,
    write_parquet_atomic,
)
from features.leftovers import die_with_parent, scratch_dir
from features.mapping import Mapping, SourceMapping, map_frame
from features.report import ValidationReport
from features.settings import DataSettings, FeatureSettings, FeatureSpec
from features.snapshots import as_of_grid, snapshot_grid
from features.validation import Dataset, validate

EVENTS_PER_BUCKET = 1_000_000
SPEC_KEY = b"inmarket.feature_spec"  # the FeatureSpec a feature table was built with
SMALL_TABLES = ("accounts", "people", "intent", "opportunities", "account_history")


@dataclass(frozen=True)
class EventSource:
    """One file feeding the events table, with its mapping if the export needs one."""

    name: str
    path: Path
    mapping: SourceMapping | None = None

    @property
    def formats(self) -> dict[str, str]:
        return dict(self.mapping.formats) if self.mapping else {}


@dataclass
class BuildPlan:
    """Everything a bucket needs; plain data, so Spark can ship it to executors."""

    base: Dataset
    as_ofs: pd.DatetimeIndex
    settings: FeatureSettings
    categories: dict[str, tuple[str, ...]]
    n_buckets: int
    extracted_at: datetime
    max_bad_share: float
    formats: dict[str, dict[str, str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @cached_property
    def account_bucket(self) -> np.ndarray:
        """The bucket of each row of the accounts table."""
        return bucket_of(self.base.accounts["account_id"], self.n_buckets)

    @property
    def known(self) -> dict[str, pd.DataFrame]:
        return {t: self.base.table(t) for t in SMALL_TABLES}


@dataclass
class FeatureBuild:
    """What ``build_feature_table`` wrote: rows, buckets, time, the report and the rejects."""

    out: Path
    rows: int
    buckets: int
    seconds: float
    report: ValidationReport
    rejects: int
    warnings: list[str] = field(default_factory=list)  # about the snapshot grid


def bucket_of(keys: pd.Series, n_buckets: int) -> np.ndarray:
    """Stable hash bucket of account ids (the same on every machine and run)."""
    text = keys.fillna("").astype("str").to_numpy(dtype=object)
    buckets: np.ndarray = (pd.util.hash_array(text) % np.uint64(n_buckets)).astype(np.int64)
    return buckets


def build_bucket(
    plan: BuildPlan, sources: list[RawSource], account_ids: np.ndarray
) -> tuple[pd.DataFrame, ValidationReport, pd.DataFrame]:
    """Validate one bucket's events and build the features of its accounts' snapshots."""
    known = plan.known
    if sources:
        part = validate(
            {"events": sources},
            extracted_at=plan.extracted_at,
            max_bad_share=plan.max_bad_share,
            known=known,
            extracted_from=plan.base.report.extracted_from,
        )
        events, report, rejects = part.events, part.report, part.rejects
    else:
        events = empty_table("events")
        report = ValidationReport({}, plan.extracted_at, plan.base.report.extracted_from)
        rejects = pd.DataFrame(columns=["table", "source_file", "source_row", "reason"])
    accounts = plan.base.accounts
    snaps = snapshot_grid(accounts[accounts["account_id"].isin(account_ids)], plan.as_ofs)
    intent, opps, history = plan.base.intent, plan.base.opportunities, plan.base.account_history
    features = build_features(
        snaps,
        accounts,
        plan.base.people,
        events,
        intent[intent["account_id"].isin(account_ids)],
        opps[opps["account_id"].isin(account_ids)],
        plan.settings,
        plan.categories,
        history[history["account_id"].isin(account_ids)],
    )
    return features, report, rejects


def event_sources(folder: Path, mapping: Mapping | None) -> list[EventSource]:
    """The files feeding the events table: the folder's own, or those the mapping names."""
    if mapping is None:
        return [EventSource(locate_tables(folder)["events"].name, locate_tables(folder)["events"])]
    sources = [EventSource(s.file, folder / s.file, s) for s in mapping.sources("events")]
    for source in sources:
        if not source.path.exists():
            raise ContractError(f"events: mapped file {source.name} not found in {folder}")
    if not sources:
        raise ContractError("table 'events' is missing from the mapping file")
    return sources


def load_small_tables(folder: Path, data: DataSettings) -> Dataset:
    """Accounts, people, intent and opportunities, validated; events left empty (they are
    streamed bucket by bucket)."""
    folder = Path(folder)
    mapping = Mapping.load(data.mapping) if data.mapping else None
    raw = mapping.read(folder, SMALL_TABLES) if mapping else read_folder(folder, SMALL_TABLES)
    stamp, source = export_time(folder, data.extracted_at)
    return validate(
        raw,
        extracted_at=stamp,
        max_bad_share=data.max_bad_share,
        known={"events": empty_table("events")},
        extracted_from=source,
    )


def plan_build(
    folder: Path,
    data: DataSettings,
    settings: FeatureSettings,
    categories: dict[str, tuple[str, ...]] | None = None,
) -> tuple[BuildPlan, list[EventSource]]:
    """Validate the small tables and decide the snapshot grid and the number of buckets."""
    folder = Path(folder)
    sources = event_sources(folder, Mapping.load(data.mapping) if data.mapping else None)
    base = load_small_tables(folder, data)
    end = base.report.extracted_at
    warnings: list[str] = []
    if settings.snapshots is None:
        start, warnings = _history_start(base, _earliest_event(sources, end), settings)
        grid = as_of_grid(end, every_days=settings.every_days, start=start)
    else:
        grid = as_of_grid(end, every_days=settings.every_days, count=settings.snapshots)
    total = sum(count_rows(s.path) for s in sources)
    n_buckets = settings.buckets or max(1, -(-total // EVENTS_PER_BUCKET))
    plan = BuildPlan(
        base,
        grid,
        settings,
        categories or fit_categories(base.accounts, settings, base.account_history),
        n_buckets,
        end,
        data.max_bad_share,
        {s.name: s.formats for s in sources},
        warnings,
    )
    return plan, sources


def read_feature_table(path: Path) -> tuple[pd.DataFrame, FeatureSpec]:
    """A feature table and the ``FeatureSpec`` it was built with (kept in its metadata)."""
    path = Path(path)
    metadata = pq.read_schema(path).metadata or {}
    if SPEC_KEY not in metadata:
        raise ContractError(
            f"{path}: not a feature table of this version (no feature specification in its "
            "metadata); build it again with `inmarket features`"
        )
    return pd.read_parquet(path), FeatureSpec.model_validate_json(metadata[SPEC_KEY])


def _read_column(path: Path, column: str) -> pd.Series | None:
    """One column of a table file, or None when it has no such column."""
    try:
        if path.is_dir():
            return pads.dataset(path).to_table(columns=[column]).column(0).to_pandas()
        if path.name.lower().endswith(".parquet"):
            return pq.read_table(path, columns=[column]).column(0).to_pandas()
        return pd.read_csv(path, usecols=[column], dtype=str)[column]
    except (KeyError, ValueError, pa.ArrowInvalid):
        return None


def _earliest_event(sources: list[EventSource], end: datetime) -> pd.Timestamp | None:
    """When the export's events begin: the 0.1% quantile of the readable timestamps from
    ``EARLIEST_DATE`` up to the export time, over every events source (one read of each
    source's timestamp column), so placeholder dates (0001-01-01, 1970-01-01) and a few stray
    early ones do not pull the grid back decades."""
    parts = []
    for source in sources:
        column = (
            source.mapping.columns.get("timestamp", "timestamp") if source.mapping else "timestamp"
        )
        values = _read_column(source.path, column)
        if values is None:
            continue
        if not pd.api.types.is_datetime64_any_dtype(values):
            form = source.formats.get("timestamp", "ISO8601")
            values = pd.to_datetime(values, utc=True, errors="coerce", format=form)
        stamps = pd.to_datetime(values, utc=True)
        parts.append(stamps[(stamps >= EARLIEST_DATE) & (stamps <= pd.Timestamp(end))])
    stamps = pd.concat(parts) if parts else pd.Series(dtype="datetime64[us, UTC]")
    return stamps.quantile(0.001) if len(stamps) else None


def _history_start(
    base: Dataset, first_event: pd.Timestamp | None, settings: FeatureSettings
) -> tuple[pd.Timestamp, list[str]]:
    """The first snapshot of all history, and a warning when deals or intent reach much further
    back than the events: features there would be empty, not informative."""
    if settings.start is not None:
        return pd.Timestamp(settings.start), []
    lookback = pd.Timedelta(days=settings.lookback_days)
    dated = [base.opportunities["created_at"].min(), base.intent["date"].min()]
    first_other = min((d for d in dated if pd.notna(d)), default=None)
    if first_event is None:  # no events at all: the deals (or a year) set the start
        fallback = pd.Timestamp(base.report.extracted_at) - pd.Timedelta(days=365)
        return (first_other if first_other is not None else fallback) + lookback, []
    start = first_event + lookback
    warnings = []
    if first_other is not None and first_other < first_event - pd.Timedelta(days=180):
        warnings.append(
            f"deals or intent begin {first_other:%Y-%m-%d}, {(first_event - first_other).days} "
            f"days before the first event ({first_event:%Y-%m-%d}): snapshots start at "
            f"{start:%Y-%m-%d}, where events fill the {settings.lookback_days}-day window (the "
            "earlier deals still count as account history); set features.start to choose"
        )
    return start, warnings


def event_buckets(table: pa.Table, plan: BuildPlan) -> np.ndarray:
    """The bucket of each raw event row: its account's, resolved as validation will resolve it
    (account_id, else the person's account, else the domain's); unresolvable rows are hashed."""
    accounts, people = plan.base.accounts, plan.base.people
    names = set(table.column_names)
    account = (
        encode(table["account_id"], accounts["account_id"])
        if "account_id" in names
        else np.full(table.num_rows, -1)
    )
    missing = np.flatnonzero(account < 0)
    if "person_id" in names and len(missing):
        person = encode(table["person_id"].take(missing), people["person_id"])
        person_account = encode(people["account_id"], accounts["account_id"])
        account[missing] = take_codes(person_account, person, missing=-1)
    missing = np.flatnonzero(account < 0)
    if DOMAIN_COLUMN in names and len(missing):
        domains = domain_of(pd.Series(table[DOMAIN_COLUMN].take(missing).to_pandas(), dtype="str"))
        account[missing] = encode(domains, accounts["domain"])
    buckets = take_codes(plan.account_bucket, account, missing=-1)
    lost = np.flatnonzero(buckets < 0)
    if len(lost):
        keys = pd.Series(pd.NA, index=range(len(lost)), dtype="str")
        for column in ("account_id", "person_id", DOMAIN_COLUMN):
            if column in names:
                values = pd.Series(table[column].take(lost).to_pandas(), dtype="str")
                keys = keys.fillna(values.str.strip())
        buckets[lost] = bucket_of(keys, plan.n_buckets)
    return buckets


def partition_events(
    plan: BuildPlan, sources: list[EventSource], folder: Path, chunk_rows: int = 2_000_000
) -> dict[int, list[tuple[str, Path]]]:
    """Stream every events source into per-bucket Arrow files under ``folder``."""
    writers: dict[tuple[int, str], pa.ipc.RecordBatchFileWriter] = {}
    schemas: dict[str, pa.Schema] = {}
    files: dict[int, list[tuple[str, Path]]] = {}
    streamed = 0
    try:
        for index, source in enumerate(sources):
            for table in iter_table_batches(source.path, chunk_rows):
                streamed += table.num_rows
                if not table.num_rows:
                    continue
                if source.mapping:
                    table = text_table(map_frame("events", source.mapping, table.to_pandas()))
                buckets = event_buckets(table, plan)
                order = np.argsort(buckets.astype(np.int16), kind="stable")  # radix sort
                ordered = table.take(order)
                present, starts = np.unique(buckets[order], return_index=True)
                ends = np.r_[starts[1:], len(order)]
                for bucket, lo, hi in zip(present, starts, ends, strict=True):
                    key = (int(bucket), source.name)
                    if key not in writers:
                        path = folder / f"bucket={bucket}" / f"source={index}.arrow"
                        path.parent.mkdir(parents=True, exist_ok=True)
                        # scratch files are read once, soon: Arrow IPC, no encoding work
                        writers[key] = pa.ipc.new_file(path, schemas.get(source.name, table.schema))
                        files.setdefault(int(bucket), []).append((source.name, path))
                    part = ordered.slice(lo, hi - lo)
                    schema = schemas.setdefault(source.name, part.schema)
                    if part.schema != schema:
                        part = part.cast(schema)
                    writers[key].write_table(part)
    finally:
        for writer in writers.values():
            writer.close()
    if not streamed:
        names = ", ".join(s.name for s in sources)
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

    def __call__(self, bucket: int) -> tuple[pd.DataFrame, ValidationReport, pd.DataFrame]:
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


def _work(bucket: int) -> tuple[pd.DataFrame, ValidationReport, pd.DataFrame]:
    assert _WORKER is not None
    return _WORKER(bucket)


def _run_local(
    plan: BuildPlan, sources: list[EventSource], scratch: Path, workers: int | None
) -> Iterator[tuple[pd.DataFrame, ValidationReport, pd.DataFrame]]:
    job = _LocalBuckets(plan, partition_events(plan, sources, scratch))
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


def build_feature_table(
    data: Path,
    out: Path,
    data_settings: DataSettings,
    settings: FeatureSettings,
    *,
    categories: dict[str, tuple[str, ...]] | None = None,
) -> FeatureBuild:
    """Write the feature table of ``data`` to ``out`` (Parquet, atomically), with the
    validation report (``<out>.report.json``) and the rejected rows (``<out>.rejects.parquet``)."""
    began = time.perf_counter()
    out = Path(out)
    plan, sources = plan_build(Path(data), data_settings, settings, categories)
    report, rejects, rows = plan.base.report, [plan.base.rejects], 0
    spec_json = settings.spec().model_dump_json().encode()
    # the bucket files go beside the table (the same disk), in a folder named by this process
    with scratch_dir(f"{out.name}.buckets", out.parent) as scratch:
        if settings.engine == "spark":
            from features.spark import run_spark

            parts = run_spark(plan, sources, settings.spark_master)
        else:
            parts = _run_local(plan, sources, scratch, settings.workers)

        def write(tmp: Path) -> None:
            nonlocal report, rows
            writer: pq.ParquetWriter | None = None
            try:
                for features, part_report, part_rejects in parts:
                    table = pa.Table.from_pandas(features, preserve_index=False)
                    if writer is None:
                        schema = table.schema.with_metadata(
                            {**(table.schema.metadata or {}), SPEC_KEY: spec_json}
                        )
                        writer = pq.ParquetWriter(tmp, schema, compression="zstd")
                    writer.write_table(table.cast(writer.schema))
                    report = report.merge(part_report)
                    rejects.append(part_rejects)
                    rows += len(features)
            finally:
                if writer is not None:
                    writer.close()

        write_atomic(out, write)
    all_rejects = pd.concat([r for r in rejects if len(r)] or rejects[:1], ignore_index=True)
    write_parquet_atomic(
        all_rejects.astype({"source_row": "int64"}), sidecar(out, "rejects.parquet")
    )
    write_json_atomic(report.to_dict(), sidecar(out, "report.json"))
    return FeatureBuild(
        out,
        rows,
        plan.n_buckets,
        time.perf_counter() - began,
        report,
        len(all_rejects),
        plan.warnings,
    )
