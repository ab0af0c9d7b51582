"""What a feature build decides before any event is read, and the one step both engines run.

The small tables (accounts, people, intent, opportunities, account history) are validated once;
the snapshot grid and the number of account hash buckets follow from them and from the size of
the events, whose rows the source counts here, once per part, for the report's rows in.
``build_bucket`` then validates one bucket's events and builds the features of its accounts:
the local engine (``features.local``) and Spark (``features.spark``) both run it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract import DOMAIN_COLUMN, EARLIEST_DATE, empty_table
from features.encode import domain_of, encode, take_codes
from features.families import build_features
from features.fit import fit_categories
from features.io import RawSource
from features.report import ValidationReport
from features.settings import DataSettings, FeatureSettings
from features.snapshots import as_of_grid, snapshot_grid
from features.sources import TablePart, TableSource, open_source
from features.validation import Dataset, validate

EVENTS_PER_BUCKET = 1_000_000
SMALL_TABLES = ("accounts", "people", "intent", "opportunities", "account_history")


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
    events: list[TablePart] = field(default_factory=list)
    events_in: int = 0  # rows of the events parts as the source counted them, once per part
    warnings: list[str] = field(default_factory=list)

    @cached_property
    def account_bucket(self) -> np.ndarray:
        """The bucket of each row of the accounts table."""
        return bucket_of(self.base.accounts["account_id"], self.n_buckets)

    @property
    def known(self) -> dict[str, pd.DataFrame]:
        return {t: self.base.table(t) for t in SMALL_TABLES}

    @property
    def formats(self) -> dict[str, dict[str, str]]:
        """The date formats of each events part, by its name."""
        return {part.name: dict(part.formats) for part in self.events}


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


def load_small_tables(data: TableSource | Path, settings: DataSettings) -> Dataset:
    """Accounts, people, intent and opportunities, validated; events left empty (they are
    streamed bucket by bucket)."""
    source = open_source(data, settings)
    raw = source.read(SMALL_TABLES)
    stamp, extracted_from = source.export_time(settings.extracted_at)
    return validate(
        raw,
        extracted_at=stamp,
        max_bad_share=settings.max_bad_share,
        known={"events": empty_table("events")},
        extracted_from=extracted_from,
    )


def plan_build(
    data: TableSource | Path,
    data_settings: DataSettings,
    settings: FeatureSettings,
    categories: dict[str, tuple[str, ...]] | None = None,
) -> BuildPlan:
    """Validate the small tables and decide the snapshot grid and the number of buckets."""
    source = open_source(data, data_settings)
    events = source.parts("events")
    base = load_small_tables(source, data_settings)
    end = base.report.extracted_at
    warnings: list[str] = []
    if settings.snapshots is None:
        first_event = _earliest_event(source, events, end)
        start, warnings = _history_start(base, first_event, settings)
        grid = as_of_grid(end, every_days=settings.every_days, start=start)
    else:
        grid = as_of_grid(end, every_days=settings.every_days, count=settings.snapshots)
    total = sum(source.count_rows(part) for part in events)  # the report's rows in, too
    n_buckets = settings.buckets or max(1, -(-total // EVENTS_PER_BUCKET))
    return BuildPlan(
        base,
        grid,
        settings,
        categories or fit_categories(base.accounts, settings, base.account_history),
        n_buckets,
        end,
        data_settings.max_bad_share,
        events,
        total,
        warnings,
    )


def _earliest_event(
    source: TableSource, events: list[TablePart], end: datetime
) -> pd.Timestamp | None:
    """When the export's events begin: the 0.1% quantile of the readable timestamps from
    ``EARLIEST_DATE`` up to the export time, over every events part (one read of each
    part's timestamp column), so placeholder dates (0001-01-01, 1970-01-01) and a few stray
    early ones do not pull the grid back decades."""
    parts = []
    for part in events:
        values = source.read_column(part, "timestamp")
        if values is None:
            continue
        if not pd.api.types.is_datetime64_any_dtype(values):
            form = part.formats.get("timestamp", "ISO8601")
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
