"""Load the five tables, check them against the contract, and account for every row.

Every input row is either used or counted in the rejects report with its reason, so that
rows in = rows used + rows rejected for each table. A file that is wrong as a whole (a
missing table or column, a column whose values mostly do not parse) stops the run with a
``ContractError`` naming the table, the column and what was found.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from features.contract import (
    BUYING_ROLES,
    OPPORTUNITY_STATUSES,
    OPPORTUNITY_TYPES,
    TABLE_ORDER,
    column_kinds,
    required_columns,
)

OPTIONAL_TABLES = frozenset({"intent"})
EXTRACT_MANIFEST = "_extract.json"
DOMAIN_COLUMN = "_domain"  # internal: an email/URL/domain from which the account is resolved
_SOURCE, _ROW = "_source", "_row"


class ContractError(ValueError):
    """The input cannot be used as a whole; the message says what to change."""


@dataclass
class RawSource:
    """One file feeding one canonical table, already renamed to canonical columns."""

    table: str
    file: str
    frame: pd.DataFrame
    formats: dict[str, str] = field(default_factory=dict)


def _add_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in sorted({*a, *b})}


def _first_examples(a: dict[str, str], b: dict[str, str]) -> dict[str, str]:
    """Per reason, the example that comes first in its source ('file row N')."""

    def position(example: str) -> tuple[str, int]:
        file, _, row = example.rpartition(" row ")
        return file, int(row) if row.isdigit() else 0

    return {k: min((e for e in (a.get(k), b.get(k)) if e), key=position) for k in sorted({*a, *b})}


@dataclass
class TableReport:
    table: str
    rows_in: int
    rows_used: int
    rejects: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    provided: bool = True

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejects.values())

    @property
    def reconciles(self) -> bool:
        return self.rows_in == self.rows_used + self.rows_rejected


@dataclass
class ValidationReport:
    tables: dict[str, TableReport]
    extracted_at: datetime

    @property
    def reconciles(self) -> bool:
        return all(t.reconciles for t in self.tables.values())

    def merge(self, other: ValidationReport) -> ValidationReport:
        """Add up the reports of parts of the same input (e.g. buckets of events)."""
        tables = dict(self.tables)
        for name, part in other.tables.items():
            mine = tables.get(name)
            if mine is None:
                tables[name] = part
                continue
            tables[name] = TableReport(
                name,
                mine.rows_in + part.rows_in,
                mine.rows_used + part.rows_used,
                _add_counts(mine.rejects, part.rejects),
                _add_counts(mine.warnings, part.warnings),
                _first_examples(mine.examples, part.examples),
                mine.provided or part.provided,
            )
        return ValidationReport(tables, self.extracted_at)

    @property
    def total_rejected(self) -> int:
        return sum(t.rows_rejected for t in self.tables.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "extracted_at": self.extracted_at.isoformat(),
            "reconciles": self.reconciles,
            "tables": {
                name: {
                    "provided": t.provided,
                    "rows_in": t.rows_in,
                    "rows_used": t.rows_used,
                    "rows_rejected": t.rows_rejected,
                    "reconciles": t.reconciles,
                    "rejects": t.rejects,
                    "warnings": t.warnings,
                    "examples": t.examples,
                }
                for name, t in self.tables.items()
            },
        }

    def render(self) -> str:
        lines = [
            f"Validation report (rows dated after {self.extracted_at:%Y-%m-%d %H:%M} UTC"
            " count as late)",
            f"{'table':<14}{'rows in':>12}{'used':>12}{'rejected':>12}  reconciles",
        ]
        for t in self.tables.values():
            if not t.provided:
                lines.append(f"{t.table:<14}{'(not provided)':>36}")
                continue
            lines.append(
                f"{t.table:<14}{t.rows_in:>12,}{t.rows_used:>12,}{t.rows_rejected:>12,}"
                f"  {'yes' if t.reconciles else 'NO'}"
            )
        for t in self.tables.values():
            for reason, n in sorted(t.rejects.items()):
                example = t.examples.get(reason, "")
                lines.append(f"  rejected {t.table}: {reason} = {n:,}  e.g. {example}")
            for reason, n in sorted(t.warnings.items()):
                lines.append(f"  kept with a warning {t.table}: {reason} = {n:,}")
        return "\n".join(lines)


@dataclass
class Dataset:
    """The canonical tables, validated, plus the report and the rejected rows."""

    accounts: pd.DataFrame
    people: pd.DataFrame
    events: pd.DataFrame
    intent: pd.DataFrame
    opportunities: pd.DataFrame
    report: ValidationReport
    rejects: pd.DataFrame

    def table(self, name: str) -> pd.DataFrame:
        frame: pd.DataFrame = getattr(self, name)
        return frame


# ---------------------------------------------------------------- reading


def read_table_file(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    if name.endswith(".parquet") or path.is_dir():
        return pd.read_parquet(path)
    if name.endswith((".csv", ".csv.gz")):
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    raise ContractError(f"{path}: unsupported file type; use Parquet or CSV")


def iter_table_batches(path: Path, chunk_rows: int) -> Iterator[pa.Table]:
    """Read a table in Arrow chunks of about ``chunk_rows`` rows, each with its ``_row`` numbers.

    CSV arrives as text, the way ``read_table_file`` reads it."""
    name = path.name.lower()
    if name.endswith(".parquet") or path.is_dir():
        batches = (
            pq.ParquetFile(path).iter_batches(batch_size=chunk_rows)
            if path.is_file()
            else pads.dataset(path).to_batches(batch_size=chunk_rows)
        )
        tables: Iterable[pa.Table] = (pa.Table.from_batches([b]) for b in batches)
    elif name.endswith((".csv", ".csv.gz")):
        tables = (
            text_table(chunk)
            for chunk in pd.read_csv(
                path, dtype=str, keep_default_na=False, na_values=[""], chunksize=chunk_rows
            )
        )
    else:
        raise ContractError(f"{path}: unsupported file type; use Parquet or CSV")
    offset = 0
    for table in tables:
        yield table.append_column(_ROW, pa.array(np.arange(offset, offset + table.num_rows)))
        offset += table.num_rows


def text_table(frame: pd.DataFrame) -> pa.Table:
    """A pandas frame as Arrow, text columns as strings even when a chunk is all missing."""
    fields = []
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_datetime64_any_dtype(column):
            tz = getattr(column.dt, "tz", None)
            fields.append(pa.field(name, pa.timestamp("us", str(tz) if tz else None)))
        elif pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
            fields.append(pa.field(name, pa.from_numpy_dtype(column.dtype)))
        else:
            fields.append(pa.field(name, pa.large_string()))
    return pa.Table.from_pandas(frame, schema=pa.schema(fields), preserve_index=False)


def count_rows(path: Path) -> int:
    """Rows in a Parquet file (from its footer) or an estimate for CSV (from its size)."""
    if path.is_file() and path.name.lower().endswith(".parquet"):
        return int(pq.ParquetFile(path).metadata.num_rows)
    if path.is_dir():
        return int(pads.dataset(path).count_rows())
    return path.stat().st_size // 80


def find_table_file(folder: Path, table: str) -> Path | None:
    for candidate in (f"{table}.parquet", f"{table}.csv", f"{table}.csv.gz", table):
        path = folder / candidate
        if path.exists():
            return path
    return None


def locate_tables(folder: Path) -> dict[str, Path]:
    """The file of each canonical table in ``folder``; a missing required table stops here."""
    if not folder.is_dir():
        raise ContractError(f"{folder}: data folder not found")
    paths: dict[str, Path] = {}
    for table in TABLE_ORDER:
        path = find_table_file(folder, table)
        if path is not None:
            paths[table] = path
        elif table not in OPTIONAL_TABLES:
            found = sorted(p.name for p in folder.iterdir() if not p.name.startswith((".", "_")))
            raise ContractError(
                f"table '{table}' is missing: expected {table}.parquet or {table}.csv in "
                f"{folder}; found {found or 'nothing'}. Use a mapping file (--mapping) for "
                "exports with other file names."
            )
    return paths


def read_folder(folder: Path, tables: Iterable[str] = TABLE_ORDER) -> dict[str, list[RawSource]]:
    """Read ``<table>.parquet`` or ``<table>.csv`` for each canonical table in ``folder``."""
    wanted = set(tables)
    return {
        table: [RawSource(table, path.name, read_table_file(path))]
        for table, path in locate_tables(folder).items()
        if table in wanted
    }


def read_extracted_at(folder: Path) -> datetime | None:
    """The export time recorded beside the tables, if the exporter wrote one."""
    manifest = folder / EXTRACT_MANIFEST
    if not manifest.exists():
        return None
    stamp = json.loads(manifest.read_text(encoding="utf-8"))["extracted_at"]
    return _as_utc(datetime.fromisoformat(stamp))


def _as_utc(stamp: datetime) -> datetime:
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


# ---------------------------------------------------------------- value coercion


def normalise_label(values: pd.Series) -> pd.Series:
    """'Closed Won ' -> 'closed_won': lower case, runs of other characters become '_'.

    Labels repeat, so the work is done once per distinct value."""
    codes, uniques = pd.factorize(values)
    text = pd.Series(uniques, dtype="str").str.strip().str.lower()
    text = text.str.replace(r"[^0-9a-z]+", "_", regex=True).str.strip("_")
    return _take_labels(text.where(text.str.len() > 0), codes, values.index)


def _large_text(
    values: pd.Series | pd.Index | np.ndarray | list[str] | tuple[str, ...],
) -> pa.Array | pa.ChunkedArray:
    array = (
        pa.array(values, from_pandas=True)
        if not isinstance(values, pa.Array | pa.ChunkedArray)
        else values
    )
    return array if array.type == pa.large_string() else array.cast(pa.large_string())


def take_codes(values: np.ndarray, codes: np.ndarray, missing: object = None) -> np.ndarray:
    """``values[codes]``, with ``missing`` where a code is -1 (also when ``values`` is empty)."""
    out = np.full(len(codes), missing, dtype=values.dtype if missing is not None else object)
    found = codes >= 0
    out[found] = values[codes[found]]
    return out


def encode(
    values: pd.Series | np.ndarray, vocabulary: pd.Series | pd.Index | tuple[str, ...]
) -> np.ndarray:
    """Position of each value in ``vocabulary``; -1 where missing or unknown (hash lookup)."""
    vocab = _large_text(vocabulary)
    if isinstance(vocab, pa.ChunkedArray):
        vocab = vocab.combine_chunks()
    found = pc.index_in(_large_text(values), value_set=vocab)
    codes: np.ndarray = pc.fill_null(found, -1).to_numpy(zero_copy_only=False)
    return codes.astype(np.int64)


def domain_of(values: pd.Series) -> pd.Series:
    """An email address, URL or bare domain -> 'example.com' (once per distinct value)."""
    codes, uniques = pd.factorize(values)
    text = pd.Series(uniques, dtype="str").str.strip().str.lower()
    text = text.str.replace(r"^.*@", "", regex=True)
    text = text.str.replace(r"^[a-z][a-z0-9+.-]*://", "", regex=True)
    text = text.str.replace(r"^www\.", "", regex=True)
    text = text.str.replace(r"[/:?#].*$", "", regex=True)
    return _take_labels(text.where(text.str.len() > 0), codes, values.index)


def _take_labels(labels: pd.Series, codes: np.ndarray, index: pd.Index) -> pd.Series:
    """Spread per-distinct-value results back to the rows (code -1 = missing)."""
    if labels.empty:  # every value missing
        return pd.Series(pd.NA, index=index, dtype="str")
    taken = labels.take(np.maximum(codes, 0)).where(codes >= 0).set_axis(index)
    return taken.astype("str")


def _as_id(values: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(values):
        whole = values.dropna()
        if (whole == np.floor(whole)).all():
            values = values.astype("Int64")
    text = values.astype("str").str.strip()
    return text.where(text.str.len() > 0)


def _present(values: pd.Series) -> pd.Series:
    if pd.api.types.is_string_dtype(values) or values.dtype == object:
        return values.notna() & (values.astype("str").str.strip().str.len() > 0)
    return values.notna()


def _examples(values: pd.Series, k: int = 3) -> str:
    return ", ".join(repr(v) for v in values.drop_duplicates().head(k).tolist())


@dataclass
class _Context:
    table: str
    max_bad_share: float
    formats: dict[str, dict[str, str]]  # source file -> column -> format


def _guard_share(
    ctx: _Context,
    column: str,
    bad: pd.Series,
    present: pd.Series,
    raw: pd.Series,
    what: str,
    hint: str,
) -> None:
    n_bad, n_present = int(bad.sum()), int(present.sum())
    if n_bad and n_bad / max(n_present, 1) > ctx.max_bad_share:
        raise ContractError(
            f"{ctx.table}.{column}: {n_bad:,} of {n_present:,} values could not be read as "
            f"{what}, e.g. {_examples(raw[bad])}; {hint}"
        )


def _parse_times(
    ctx: _Context, frame: pd.DataFrame, column: str, *, dates: bool = False
) -> tuple[pd.Series, pd.Series]:
    """Parse one column to UTC timestamps; returns (parsed, unparsable mask)."""
    raw = frame[column]
    parsed = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us, UTC]")
    for source, rows in frame.groupby(_SOURCE, sort=False).groups.items():
        part = raw.loc[rows]
        fmt = ctx.formats.get(str(source), {}).get(column)
        if isinstance(part.dtype, pd.DatetimeTZDtype):
            values = part.dt.tz_convert("UTC")
        elif pd.api.types.is_datetime64_any_dtype(part):
            values = part.dt.tz_localize("UTC")
        else:
            text = part.astype("str").str.strip()
            values = pd.to_datetime(text, format=fmt or "ISO8601", utc=True, errors="coerce")
        parsed.loc[rows] = values.astype("datetime64[us, UTC]")
    present = _present(raw)
    bad = present & parsed.isna()
    hint = (
        f"set formats.{column} (e.g. '%m/%d/%Y') for this source in the mapping file"
        if not any(column in f for f in ctx.formats.values())
        else f"check formats.{column} in the mapping file"
    )
    _guard_share(ctx, column, bad, present, raw, "dates" if dates else "timestamps", hint)
    if dates:
        parsed = parsed.dt.floor("D")
    return parsed, bad


def _parse_numbers(ctx: _Context, frame: pd.DataFrame, column: str) -> tuple[pd.Series, pd.Series]:
    raw = frame[column]
    parsed = pd.to_numeric(raw, errors="coerce").astype("float64")
    parsed = parsed.where(np.isfinite(parsed))
    present = _present(raw)
    bad = present & parsed.isna()
    _guard_share(
        ctx, column, bad, present, raw, "numbers", "fix the file or map another column to it"
    )
    return parsed, bad


class _Rows:
    """Collects, for each row of one table, the first reason it is rejected."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.reason = pd.Series(pd.NA, index=frame.index, dtype="str")
        self.warnings: dict[str, int] = {}
        self.warning_examples: dict[str, str] = {}

    def reject(self, mask: pd.Series, reason: str) -> None:
        self.reason = self.reason.mask(mask.fillna(False).astype(bool) & self.reason.isna(), reason)

    def warn(self, mask: pd.Series, reason: str) -> None:
        n = int((mask.fillna(False).astype(bool) & self.reason.isna()).sum())
        if n:
            self.warnings[reason] = self.warnings.get(reason, 0) + n

    @property
    def kept(self) -> pd.Series:
        return self.reason.isna()


# ---------------------------------------------------------------- per-table rules


def _dedupe(rows: _Rows, keys: list[str], reason: str) -> None:
    present = rows.frame[keys].notna().all(axis=1)
    rows.reject(present & rows.frame.duplicated(keys, keep="first"), reason)


def _check_accounts(ctx: _Context, f: pd.DataFrame, rows: _Rows) -> pd.DataFrame:
    f["account_id"] = _as_id(f["account_id"])
    rows.reject(f["account_id"].isna(), "missing_account_id")
    _dedupe(rows, ["account_id"], "duplicate_account_id")
    f["name"] = f["name"].astype("str").str.strip()
    unnamed = ~_present(f["name"])
    rows.warn(unnamed, "missing_name_set_to_account_id")
    f["name"] = f["name"].where(~unnamed, f["account_id"])
    if "domain" in f:
        f["domain"] = domain_of(f["domain"])
    for column in ("industry", "region"):
        if column in f:
            f[column] = normalise_label(f[column])
    if "employee_count" in f:
        f["employee_count"], bad = _parse_numbers(ctx, f, "employee_count")
        rows.warn(bad, "employee_count_not_a_number_set_to_null")
    if "created_at" in f:
        f["created_at"], bad = _parse_times(ctx, f, "created_at")
        rows.warn(bad, "created_at_unparsable_set_to_null")
    return f


def _resolve_domain(f: pd.DataFrame, rows: _Rows, accounts: pd.DataFrame) -> None:
    """Fill a missing account_id from an email/URL domain matched to accounts.domain."""
    if DOMAIN_COLUMN not in f:
        return
    lookup = (
        accounts.dropna(subset=["domain"])
        .drop_duplicates("domain")
        .set_index("domain")["account_id"]
        if "domain" in accounts
        else pd.Series(dtype="str")
    )
    domains = domain_of(f[DOMAIN_COLUMN])
    resolved = domains.map(lookup)
    need = f["account_id"].isna()
    rows.reject(need & domains.notna() & resolved.isna(), "domain_matches_no_account")
    f["account_id"] = f["account_id"].where(~need, resolved)
    del f[DOMAIN_COLUMN]


def _check_people(
    ctx: _Context, f: pd.DataFrame, rows: _Rows, accounts: pd.DataFrame
) -> pd.DataFrame:
    f["person_id"] = _as_id(f["person_id"])
    f["account_id"] = _as_id(f["account_id"])
    rows.reject(f["person_id"].isna(), "missing_person_id")
    _resolve_domain(f, rows, accounts)
    rows.reject(f["account_id"].isna(), "missing_account_id")
    rows.reject(
        pd.Series(encode(f["account_id"], accounts["account_id"]) < 0, index=f.index),
        "unknown_account",
    )
    _dedupe(rows, ["person_id"], "duplicate_person_id")
    if "buying_role" in f:
        role = normalise_label(f["buying_role"])
        unknown = role.notna() & ~role.isin(BUYING_ROLES)
        rows.warn(unknown, "unknown_buying_role_set_to_null")
        f["buying_role"] = role.where(~unknown)
    for column in ("department", "seniority"):
        if column in f:
            f[column] = normalise_label(f[column])
    if "title" in f:
        f["title"] = f["title"].astype("str").str.strip()
    return f


def _check_events(
    ctx: _Context,
    f: pd.DataFrame,
    rows: _Rows,
    accounts: pd.DataFrame,
    people: pd.DataFrame,
    extracted_at: pd.Timestamp,
) -> pd.DataFrame:
    for column in ("account_id", "person_id", "event_id"):
        f[column] = (
            _as_id(f[column]) if column in f else pd.Series(pd.NA, index=f.index, dtype="str")
        )
    if f["event_id"].isna().all():
        f["event_id"] = f[_SOURCE].astype("str") + ":" + f[_ROW].astype("str")
    f["timestamp"], bad = _parse_times(ctx, f, "timestamp")
    rows.reject(f["timestamp"].isna() & ~bad, "missing_timestamp")
    rows.reject(bad, "unparsable_timestamp")
    rows.reject(f["timestamp"] > extracted_at, "timestamp_after_extract")
    f["event_type"] = normalise_label(f["event_type"])
    rows.reject(f["event_type"].isna(), "missing_event_type")

    _resolve_domain(f, rows, accounts)
    person = encode(f["person_id"], people["person_id"])
    of_person = pd.Series(
        take_codes(people["account_id"].to_numpy(dtype=object), person), index=f.index, dtype="str"
    )
    known_person = of_person.notna()
    no_account = f["account_id"].isna()
    rows.reject(no_account & f["person_id"].isna(), "no_account_or_person")
    rows.reject(no_account & ~known_person, "unknown_person")
    rows.warn(
        ~no_account & f["person_id"].notna() & ~known_person,
        "person_not_in_people_kept_with_account",
    )
    rows.warn(
        ~no_account & known_person & (of_person != f["account_id"]),
        "account_differs_from_persons_account_event_account_kept",
    )
    f["account_id"] = f["account_id"].where(~no_account, of_person)
    rows.reject(
        pd.Series(encode(f["account_id"], accounts["account_id"]) < 0, index=f.index),
        "unknown_account",
    )
    _dedupe(rows, ["event_id"], "duplicate_event_id")
    if "weight" in f:
        f["weight"], bad = _parse_numbers(ctx, f, "weight")
        rows.reject(bad | (f["weight"] < 0), "invalid_weight")
        f["weight"] = f["weight"].fillna(1.0)
    else:
        f["weight"] = 1.0
    for column in ("channel", "topic"):
        f[column] = (
            normalise_label(f[column])
            if column in f
            else pd.Series(pd.NA, index=f.index, dtype="str")
        )
    return f


def _check_intent(
    ctx: _Context, f: pd.DataFrame, rows: _Rows, accounts: pd.DataFrame, extracted_at: pd.Timestamp
) -> pd.DataFrame:
    f["account_id"] = _as_id(f["account_id"])
    _resolve_domain(f, rows, accounts)
    rows.reject(
        pd.Series(encode(f["account_id"], accounts["account_id"]) < 0, index=f.index),
        "unknown_account",
    )
    f["date"], bad = _parse_times(ctx, f, "date", dates=True)
    rows.reject(f["date"].isna() & ~bad, "missing_date")
    rows.reject(bad, "unparsable_date")
    rows.reject(f["date"] > extracted_at, "date_after_extract")
    f["topic"] = normalise_label(f["topic"])
    rows.reject(f["topic"].isna(), "missing_topic")
    f["score"], bad = _parse_numbers(ctx, f, "score")
    rows.reject(bad | f["score"].isna(), "score_not_a_number")
    rows.reject((f["score"] < 0) | (f["score"] > 100), "score_out_of_range")
    _dedupe(rows, ["account_id", "date", "topic"], "duplicate_account_date_topic")
    return f


def _check_opportunities(
    ctx: _Context, f: pd.DataFrame, rows: _Rows, accounts: pd.DataFrame, extracted_at: pd.Timestamp
) -> pd.DataFrame:
    f["opportunity_id"] = _as_id(f["opportunity_id"])
    f["account_id"] = _as_id(f["account_id"])
    rows.reject(f["opportunity_id"].isna(), "missing_opportunity_id")
    _resolve_domain(f, rows, accounts)
    rows.reject(
        pd.Series(encode(f["account_id"], accounts["account_id"]) < 0, index=f.index),
        "unknown_account",
    )
    f["created_at"], bad = _parse_times(ctx, f, "created_at")
    rows.reject(f["created_at"].isna() & ~bad, "missing_created_at")
    rows.reject(bad, "unparsable_created_at")
    rows.reject(f["created_at"] > extracted_at, "created_after_extract")
    f["status"] = normalise_label(f["status"])
    rows.reject(~f["status"].isin(OPPORTUNITY_STATUSES), "invalid_status")
    if "type" in f:
        f["type"] = normalise_label(f["type"])
        rows.reject(f["type"].notna() & ~f["type"].isin(OPPORTUNITY_TYPES), "invalid_type")
        rows.warn(f["type"].isna(), "missing_type_taken_as_new_business")
        f["type"] = f["type"].fillna("new_business")
    else:
        f["type"] = "new_business"
    if "closed_at" in f:
        f["closed_at"], bad = _parse_times(ctx, f, "closed_at")
        rows.reject(bad, "unparsable_closed_at")
        rows.reject(f["closed_at"] < f["created_at"], "closed_before_created")
        rows.warn(f["closed_at"] > extracted_at, "closed_after_extract_taken_as_open")
        late = f["closed_at"] > extracted_at
        f["status"] = f["status"].mask(late, "open")
        f["closed_at"] = f["closed_at"].mask(late)
    else:
        f["closed_at"] = pd.Series(pd.NaT, index=f.index, dtype="datetime64[us, UTC]")
    rows.warn(f["status"].isin(["won", "lost"]) & f["closed_at"].isna(), "closed_without_closed_at")
    rows.warn((f["status"] == "open") & f["closed_at"].notna(), "open_with_closed_at")
    if "amount" in f:
        f["amount"], bad = _parse_numbers(ctx, f, "amount")
        rows.warn(bad, "amount_not_a_number_set_to_null")
    _dedupe(rows, ["opportunity_id"], "duplicate_opportunity_id")
    return f


# ---------------------------------------------------------------- assembly


def _stack(table: str, sources: list[RawSource]) -> tuple[pd.DataFrame, dict[str, dict[str, str]]]:
    """Concatenate the sources of one table and check its required columns."""
    frames = []
    for source in sources:
        frame = source.frame.copy()
        frame.columns = [str(c).strip() for c in frame.columns]
        if DOMAIN_COLUMN in frame and "account_id" not in frame:
            frame["account_id"] = pd.Series(pd.NA, index=frame.index, dtype="str")
        missing = [c for c in required_columns(table) if c not in frame.columns]
        if table == "events" and not {"account_id", "person_id", DOMAIN_COLUMN} & set(frame):
            missing.append("account_id or person_id")
        if missing:
            raise ContractError(
                f"{table} ({source.file}): missing required column(s) {', '.join(missing)}; "
                f"found {list(frame.columns)}. Rename them or map them in a mapping file."
            )
        frame[_SOURCE] = source.file
        if _ROW not in frame:  # chunks of a large file arrive with their row numbers
            frame[_ROW] = np.arange(len(frame))
        frames.append(frame)
    stacked = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    formats = {s.file: s.formats for s in sources}
    return stacked, formats


def empty_table(table: str) -> pd.DataFrame:
    dtypes = {
        "id": "str",
        "text": "str",
        "number": "float64",
        "timestamp": "datetime64[us, UTC]",
        "date": "datetime64[us, UTC]",
    }
    return pd.DataFrame({c: pd.Series(dtype=dtypes[k]) for c, k in column_kinds(table).items()})


def _finish(
    table: str, f: pd.DataFrame, rows: _Rows
) -> tuple[pd.DataFrame, TableReport, pd.DataFrame]:
    kept = rows.kept
    rejected = f.loc[~kept, [_SOURCE, _ROW]].assign(table=table, reason=rows.reason[~kept])
    counts = rejected["reason"].value_counts()
    examples = rejected.groupby("reason")[[_SOURCE, _ROW]].first()
    report = TableReport(
        table=table,
        rows_in=len(f),
        rows_used=int(kept.sum()),
        rejects={str(k): int(v) for k, v in counts.items()},
        warnings=rows.warnings,
        examples={str(r): f"{e[_SOURCE]} row {int(e[_ROW]) + 1}" for r, e in examples.iterrows()},
    )
    canonical = [c for c in column_kinds(table) if c in f.columns]
    if table == "accounts":  # further firmographic columns are fit features
        canonical += [c for c in f.columns if c not in canonical and not c.startswith("_")]
    used = f.loc[kept, canonical].reset_index(drop=True)
    for column, kind in column_kinds(table).items():
        if column in used and kind in ("id", "text"):
            used[column] = used[column].astype("str")
    template = empty_table(table)
    for column in template.columns:
        if column not in used:
            used[column] = template[column].reindex(used.index)
    used = used[list(template.columns) + [c for c in used.columns if c not in template.columns]]
    return used, report, rejected[["table", _SOURCE, _ROW, "reason"]]


def validate(
    raw: dict[str, list[RawSource]],
    *,
    extracted_at: datetime | None = None,
    max_bad_share: float = 0.2,
    known: dict[str, pd.DataFrame] | None = None,
) -> Dataset:
    """Check raw canonical-named tables against the contract and account for every row.

    ``known`` holds tables validated before (e.g. accounts and people, when events are
    validated bucket by bucket); they are used as they are and not reported again.
    """
    stamp = pd.Timestamp(_as_utc(extracted_at or datetime.now(UTC)))
    results: dict[str, pd.DataFrame] = {}
    reports: dict[str, TableReport] = {}
    rejects: list[pd.DataFrame] = [pd.DataFrame(columns=["table", _SOURCE, _ROW, "reason"])]
    for table in TABLE_ORDER:
        sources = raw.get(table, [])
        if not sources and known is not None and table in known:
            results[table] = known[table]
            continue
        if not sources:
            if table not in OPTIONAL_TABLES:
                raise ContractError(f"table '{table}' is missing; it is required")
            results[table] = empty_table(table)
            reports[table] = TableReport(table, 0, 0, provided=False)
            continue
        frame, formats = _stack(table, sources)
        ctx = _Context(table, max_bad_share, formats)
        rows = _Rows(frame)
        if table == "accounts":
            checked = _check_accounts(ctx, frame, rows)
        elif table == "people":
            checked = _check_people(ctx, frame, rows, results["accounts"])
        elif table == "events":
            checked = _check_events(ctx, frame, rows, results["accounts"], results["people"], stamp)
        elif table == "intent":
            checked = _check_intent(ctx, frame, rows, results["accounts"], stamp)
        else:
            checked = _check_opportunities(ctx, frame, rows, results["accounts"], stamp)
        # later tables are checked against the used rows only: a rejected account resolves nothing
        results[table], reports[table], rejected = _finish(table, checked, rows)
        rejects.append(rejected)
    all_rejects = pd.concat(rejects, ignore_index=True).rename(
        columns={_SOURCE: "source_file", _ROW: "source_row"}
    )
    return Dataset(
        accounts=results["accounts"],
        people=results["people"],
        events=results["events"],
        intent=results["intent"],
        opportunities=results["opportunities"],
        report=ValidationReport(reports, stamp.to_pydatetime()),
        rejects=all_rejects,
    )


def load_dataset(
    folder: Path,
    *,
    mapping: Path | None = None,
    extracted_at: datetime | None = None,
    max_bad_share: float = 0.2,
) -> Dataset:
    """Read a folder of tables (directly or through a mapping file) and validate it."""
    folder = Path(folder)
    if mapping is not None:
        from features.mapping import Mapping

        raw = Mapping.load(mapping).read(folder)
    else:
        raw = read_folder(folder)
    return validate(
        raw, extracted_at=extracted_at or read_extracted_at(folder), max_bad_share=max_bad_share
    )


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write to a temporary file beside ``path``, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
