"""Check the canonical tables against the contract and account for every row: ``validate``,
``load_dataset`` (read a source and validate it) and the ``Dataset`` they return.

Every input row is either used or counted in the rejects report with its reason, so that
rows in = rows used + rows rejected for each table, rows in being the rows the source counted
(``TableSource.count_rows``), not those that reached validation. A file that is wrong as a
whole (a missing table or column, a column whose values mostly do not parse) stops the run
with a ``ContractError`` naming the table, the column and what was found.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from features.checks import Context, Verdicts, check_table
from features.contract import (
    ACCOUNT_FROM_PERSON,
    DOMAIN_COLUMN,
    OPTIONAL_TABLES,
    TABLE_ORDER,
    column_kinds,
    empty_table,
    required_columns,
)
from features.errors import ContractError
from features.io import ROW_COLUMN, SOURCE_COLUMN, RawSource, as_utc
from features.report import CLOCK, GIVEN, SPAN_COLUMNS, TableReport, ValidationReport
from features.rules import DERIVED_PREFIX
from features.settings import DataSettings
from features.sources import TableSource, open_source

# tables whose rows may be keyed by a lead or contact instead of an account (events, deals)
PERSON_KEYED = frozenset(
    t
    for t in TABLE_ORDER
    if "person_id" in column_kinds(t) and "account_id" not in required_columns(t)
)


@dataclass
class Dataset:
    """The canonical tables, validated, plus the report and the rejected rows."""

    accounts: pd.DataFrame
    people: pd.DataFrame
    events: pd.DataFrame
    intent: pd.DataFrame
    opportunities: pd.DataFrame
    account_history: pd.DataFrame
    report: ValidationReport
    rejects: pd.DataFrame

    def table(self, name: str) -> pd.DataFrame:
        frame: pd.DataFrame = getattr(self, name)
        return frame


def _stack(table: str, sources: list[RawSource]) -> tuple[pd.DataFrame, dict[str, dict[str, str]]]:
    """Concatenate the sources of one table and check its required columns."""
    frames = []
    for source in sources:
        frame = source.frame.copy()
        frame.columns = [str(c).strip() for c in frame.columns]
        if DOMAIN_COLUMN in frame and "account_id" not in frame:
            frame["account_id"] = pd.Series(pd.NA, index=frame.index, dtype="str")
        missing = [c for c in required_columns(table) if c not in frame.columns]
        if table in PERSON_KEYED and not {"account_id", "person_id", DOMAIN_COLUMN} & set(frame):
            missing.append("account_id or person_id")
        if missing:
            raise ContractError(
                f"{table} ({source.file}): missing required column(s) {', '.join(missing)}; "
                f"found {list(frame.columns)}. Rename them or map them in a mapping file."
            )
        frame[SOURCE_COLUMN] = source.file
        if ROW_COLUMN not in frame:  # chunks of a large file arrive with their row numbers
            frame[ROW_COLUMN] = np.arange(len(frame))
        frames.append(frame)
    stacked = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    formats = {s.file: s.formats for s in sources}
    return stacked, formats


def _finish(
    table: str, f: pd.DataFrame, rows: Verdicts, rows_in: int
) -> tuple[pd.DataFrame, TableReport, pd.DataFrame]:
    kept = rows.kept
    rejected = f.loc[~kept, [SOURCE_COLUMN, ROW_COLUMN]].assign(
        table=table, reason=rows.reason[~kept]
    )
    counts = rejected["reason"].value_counts()
    examples = rejected.groupby("reason")[[SOURCE_COLUMN, ROW_COLUMN]].first()
    marks = f.loc[kept, [c for c in f.columns if c.startswith(DERIVED_PREFIX)]]
    derived = marks.melt()["value"].value_counts() if marks.shape[1] else pd.Series(dtype="int64")
    canonical = [c for c in column_kinds(table) if c in f.columns]
    extra = [c for c in f.columns if c not in canonical and not c.startswith("_")]
    report = TableReport(
        table=table,
        rows_in=rows_in,
        rows_used=int(kept.sum()),
        rejects={str(k): int(v) for k, v in counts.items()},
        warnings=rows.warnings,
        examples={
            str(r): f"{e[SOURCE_COLUMN]} row {int(e[ROW_COLUMN]) + 1}"
            for r, e in examples.iterrows()
        },
        extra_columns=extra,
        absent_columns=[c for c in column_kinds(table) if c not in f.columns],
        unknown_values=rows.unknown_values,
        derived={str(k): int(v) for k, v in sorted(derived.items())},
    )
    # further account columns stay: a feature declared static reads them (features.columns)
    internal = [ACCOUNT_FROM_PERSON] if ACCOUNT_FROM_PERSON in f else []
    used = f.loc[kept, canonical + (extra if table == "accounts" else []) + internal]
    used = used.reset_index(drop=True)
    for column, kind in column_kinds(table).items():
        if column in used and kind in ("id", "text"):
            used[column] = used[column].astype("str")
    template = empty_table(table)
    for column in template.columns:
        if column not in used:
            used[column] = template[column].reindex(used.index)
    used = used[list(template.columns) + [c for c in used.columns if c not in template.columns]]
    return used, report, rejected[["table", SOURCE_COLUMN, ROW_COLUMN, "reason"]]


def validate(
    raw: dict[str, list[RawSource]],
    *,
    extracted_at: datetime | None,
    max_bad_share: float,
    known: dict[str, pd.DataFrame] | None = None,
    extracted_from: str = GIVEN,
) -> Dataset:
    """Check raw canonical-named tables against the contract and account for every row.

    ``known`` holds tables validated before (e.g. accounts and people, when events are
    validated bucket by bucket); they are used as they are and not reported again. Without
    ``extracted_at`` the clock is the export time, and the report says so.
    """
    if extracted_at is None:
        extracted_from = CLOCK
    stamp = pd.Timestamp(as_utc(extracted_at or datetime.now(UTC)))
    results: dict[str, pd.DataFrame] = {}
    reports: dict[str, TableReport] = {}
    rejects = [pd.DataFrame(columns=["table", SOURCE_COLUMN, ROW_COLUMN, "reason"])]
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
        rows = Verdicts(frame)
        checked = check_table(Context(table, max_bad_share, formats, stamp, results), rows)
        # later tables are checked against the used rows only: a rejected account resolves nothing
        rows_in = sum(source.rows_in for source in sources)
        results[table], reports[table], rejected = _finish(table, checked, rows, rows_in)
        if table == "accounts" and results[table].empty:
            files = ", ".join(source.file for source in sources)
            why = (
                f"every account was rejected ({reports[table].rejects})"
                if len(frame)
                else "no rows"
            )
            raise ContractError(
                f"accounts ({files}): {why}; nothing can be scored. Each account needs an "
                "account_id and a name"
            )
        rejects.append(rejected)
    all_rejects = pd.concat(rejects, ignore_index=True).rename(
        columns={SOURCE_COLUMN: "source_file", ROW_COLUMN: "source_row"}
    )
    return Dataset(
        accounts=results["accounts"],
        people=results["people"],
        events=results["events"],
        intent=results["intent"],
        opportunities=results["opportunities"],
        account_history=results["account_history"],
        report=ValidationReport(
            reports, stamp.to_pydatetime(), extracted_from, _spans(results, reports)
        ),
        rejects=all_rejects,
    )


def _spans(
    results: dict[str, pd.DataFrame], reports: dict[str, TableReport]
) -> dict[str, list[str]]:
    """First and last date of the used rows of each dated table validated here."""
    spans: dict[str, list[str]] = {}
    for table, column in SPAN_COLUMNS.items():
        dates = results[table][column] if table in reports else None
        if dates is not None and dates.notna().any():
            spans[table] = [dates.min().isoformat(), dates.max().isoformat()]
    return spans


def load_dataset(data: TableSource | Path, settings: DataSettings) -> Dataset:
    """Read every table of ``data`` (a source, or a folder) and validate it."""
    source = open_source(data, settings)
    raw = source.read()
    stamp, extracted_from = source.export_time(settings.extracted_at)
    return validate(
        raw, extracted_at=stamp, max_bad_share=settings.max_bad_share, extracted_from=extracted_from
    )
