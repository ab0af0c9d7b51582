"""The rules of the data contract, table by table: each row of a table is kept, kept with a
warning, or rejected with its reason (``Verdicts``), and a column whose values mostly do not
parse stops the run (``ContractError``). ``features.validation`` stacks the tables and runs
these checks in the contract's order, each table against the used rows of those before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.contract import (
    ACCOUNT_FROM_PERSON,
    DOMAIN_COLUMN,
    EARLIEST_DATE,
    NORMALISED_ACCOUNT_COLUMNS,
)
from features.contract import column as contract_column
from features.encode import as_id, domain_of, encode, normalise_label, take_codes
from features.errors import ContractError
from features.io import ROW_COLUMN, SOURCE_COLUMN
from features.vocabularies import vocabulary

TOO_EARLY = f"date_before_{EARLIEST_DATE.year}"  # the reject reason of a placeholder date


def _outside(values: pd.Series, table: str, name: str) -> pd.Series:
    """Which numbers fall outside the bounds of the contract's column (a missing one does not)."""
    of = contract_column(table, name)
    low = -np.inf if of.low is None else of.low
    high = np.inf if of.high is None else of.high
    return (values < low) | (values > high)


def _present(values: pd.Series) -> pd.Series:
    if pd.api.types.is_string_dtype(values) or values.dtype == object:
        return values.notna() & (values.astype("str").str.strip().str.len() > 0)
    return values.notna()


def _examples(values: pd.Series, k: int = 3) -> str:
    return ", ".join(repr(v) for v in values.drop_duplicates().head(k).tolist())


@dataclass
class Context:
    """What checking one table needs besides its rows: its name, how strict to be, the date
    formats of its parts, the export time, and the used rows of the tables checked before it."""

    table: str
    max_bad_share: float
    formats: dict[str, dict[str, str]]  # source file -> column -> format
    extracted_at: pd.Timestamp
    checked: dict[str, pd.DataFrame]  # accounts first, then people (``TABLE_ORDER``)

    @property
    def accounts(self) -> pd.DataFrame:
        return self.checked["accounts"]

    @property
    def people(self) -> pd.DataFrame:
        return self.checked["people"]


def _guard_share(
    ctx: Context,
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
    ctx: Context, frame: pd.DataFrame, column: str, *, dates: bool = False
) -> tuple[pd.Series, pd.Series]:
    """Parse one column to UTC timestamps; returns (parsed, unparsable mask)."""
    raw = frame[column]
    parsed = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us, UTC]")
    for source, rows in frame.groupby(SOURCE_COLUMN, sort=False).groups.items():
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


def _require_time(
    ctx: Context,
    f: pd.DataFrame,
    rows: Verdicts,
    column: str,
    extracted_at: pd.Timestamp,
    late_reason: str,
    *,
    dates: bool = False,
    long_ago: bool = False,
) -> None:
    """A required time column: parsed to UTC; missing, unparsable, placeholder (before
    ``EARLIEST_DATE``) and late rows rejected. With ``long_ago`` a placeholder means "long
    before any snapshot" (a migrated deal's creation, a history table's 1900-01-01 "always
    valid"): it becomes ``EARLIEST_DATE``, counted, and the row is kept."""
    f[column], bad = _parse_times(ctx, f, column, dates=dates)
    rows.reject(f[column].isna() & ~bad, f"missing_{column}")
    rows.reject(bad, f"unparsable_{column}")
    early = f[column] < EARLIEST_DATE
    if long_ago:
        rows.warn(early, f"{column}_before_{EARLIEST_DATE.year}_set_to_{EARLIEST_DATE.year}")
        f[column] = f[column].mask(early, EARLIEST_DATE)
    else:
        rows.reject(early, TOO_EARLY)
    rows.reject(f[column] > extracted_at, late_reason)


def _null_placeholder_dates(f: pd.DataFrame, rows: Verdicts, column: str) -> None:
    """An optional time before ``EARLIEST_DATE`` is a placeholder, not a date: it becomes
    missing, as if not given, and is counted."""
    early = f[column] < EARLIEST_DATE
    rows.warn(early, f"{column}_before_{EARLIEST_DATE.year}_set_to_null")
    f[column] = f[column].mask(early)


def _parse_numbers(ctx: Context, frame: pd.DataFrame, column: str) -> tuple[pd.Series, pd.Series]:
    raw = frame[column]
    parsed = pd.to_numeric(raw, errors="coerce").astype("float64")
    parsed = parsed.where(np.isfinite(parsed))
    present = _present(raw)
    bad = present & parsed.isna()
    _guard_share(
        ctx, column, bad, present, raw, "numbers", "fix the file or map another column to it"
    )
    return parsed, bad


class Verdicts:
    """Collects, for each row of one table, the first reason it is rejected."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.reason = pd.Series(pd.NA, index=frame.index, dtype="str")
        self.warnings: dict[str, int] = {}
        self.unknown_values: dict[str, list[dict[str, object]]] = {}

    def reject(self, mask: pd.Series, reason: str) -> None:
        self.reason = self.reason.mask(mask.fillna(False).astype(bool) & self.reason.isna(), reason)

    def warn(self, mask: pd.Series, reason: str) -> None:
        n = int((mask.fillna(False).astype(bool) & self.reason.isna()).sum())
        if n:
            self.warnings[reason] = self.warnings.get(reason, 0) + n

    @property
    def kept(self) -> pd.Series:
        return self.reason.isna()

    def name_values(self, column: str, raw: pd.Series, mask: pd.Series) -> None:
        """Record the values of ``column`` on the rows in ``mask`` (not rejected before): each
        as first spelled, with its rows and first example row, the most frequent first."""
        mask = mask.fillna(False).astype(bool) & self.kept
        if not mask.any():
            return
        found = pd.DataFrame(
            {
                "label": normalise_label(raw[mask]),
                "value": raw[mask].astype("str").str.strip(),
                "example": self.frame.loc[mask, SOURCE_COLUMN].astype("str")
                + " row "
                + (self.frame.loc[mask, ROW_COLUMN].astype("int64") + 1).astype("str"),
            }
        )
        per_label = found.groupby("label", sort=False).agg(
            value=("value", "first"), rows=("value", "size"), example=("example", "first")
        )
        per_label = per_label.sort_values(["rows", "value"], ascending=[False, True])
        self.unknown_values[column] = [
            {"value": str(r.value), "rows": int(r.rows), "example": str(r.example)}
            for r in per_label.itertuples()
        ]


def _dedupe(rows: Verdicts, keys: list[str], reason: str) -> None:
    present = rows.frame[keys].notna().all(axis=1)
    rows.reject(present & rows.frame.duplicated(keys, keep="first"), reason)


def _check_vocabulary(
    f: pd.DataFrame, rows: Verdicts, table: str, column: str, label: pd.Series | None = None
) -> None:
    """Normalise a vocabulary column (or take its ``label``, normalised before); a value
    outside it is counted, named in the report and rejected, set to null or kept, as
    ``features.vocabularies`` says for the column."""
    v = vocabulary(table, column)
    label = normalise_label(f[column]) if label is None else label
    unknown = ~label.isin(v.values) & f[column].notna()
    blank = unknown & label.isna()  # given, but with no letter or digit ('???'), or empty
    if blank.any():
        unknown[blank] = _present(f.loc[blank, column])
    if unknown.any():
        rows.name_values(column, f[column], unknown)
    if v.unknown == "rejected":
        rows.reject(unknown, v.counter)
    else:
        rows.warn(unknown, v.counter)
    f[column] = label.where(~unknown) if v.unknown == "set_to_null" else label


def _reject_unknown_accounts(f: pd.DataFrame, rows: Verdicts, accounts: pd.DataFrame) -> None:
    unknown = encode(f["account_id"], accounts["account_id"]) < 0
    rows.reject(pd.Series(unknown, index=f.index), "unknown_account")


def _resolve_account(f: pd.DataFrame, rows: Verdicts, accounts: pd.DataFrame) -> None:
    """account_id as an id, else from an email/URL domain; rows of unknown accounts rejected."""
    f["account_id"] = as_id(f["account_id"])
    _resolve_domain(f, rows, accounts)
    _reject_unknown_accounts(f, rows, accounts)


def _check_accounts(ctx: Context, f: pd.DataFrame, rows: Verdicts) -> pd.DataFrame:
    f["account_id"] = as_id(f["account_id"])
    rows.reject(f["account_id"].isna(), "missing_account_id")
    _dedupe(rows, ["account_id"], "duplicate_account_id")
    f["name"] = f["name"].astype("str").str.strip()
    unnamed = ~_present(f["name"])
    rows.warn(unnamed, "missing_name_set_to_account_id")
    f["name"] = f["name"].where(~unnamed, f["account_id"])
    if "domain" in f:
        f["domain"] = domain_of(f["domain"])
    for column in NORMALISED_ACCOUNT_COLUMNS:
        if column in f:
            f[column] = normalise_label(f[column])
    if "employee_count" in f:
        f["employee_count"], bad = _parse_numbers(ctx, f, "employee_count")
        rows.warn(bad, "employee_count_not_a_number_set_to_null")
        # the contract's bounds, as /v1/score_events applies them: served = trained
        beyond = _outside(f["employee_count"], "accounts", "employee_count")
        rows.warn(beyond, "employee_count_out_of_range_set_to_null")
        f["employee_count"] = f["employee_count"].where(~beyond)
    if "created_at" in f:
        f["created_at"], bad = _parse_times(ctx, f, "created_at")
        rows.warn(bad, "created_at_unparsable_set_to_null")
        _null_placeholder_dates(f, rows, "created_at")
        # a clock ahead of the export: the account is kept, as created at the export
        late = f["created_at"] > ctx.extracted_at
        rows.warn(late, "created_at_after_extract_set_to_extract")
        f.loc[late, "created_at"] = ctx.extracted_at
    return f


def _resolve_domain(f: pd.DataFrame, rows: Verdicts, accounts: pd.DataFrame) -> None:
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


def _account_through_person(
    f: pd.DataFrame, rows: Verdicts, accounts: pd.DataFrame, people: pd.DataFrame, row: str
) -> None:
    """A row keyed by a lead or contact gets its account from people: the person's account as
    of the export, the same for every snapshot, as the contract has it. A row with its own
    account keeps it. Unknown people and accounts are rejected, and ``ACCOUNT_FROM_PERSON``
    marks the rows whose account only the person's record gives."""
    for column in ("account_id", "person_id"):
        f[column] = (
            as_id(f[column]) if column in f else pd.Series(pd.NA, index=f.index, dtype="str")
        )
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
        f"account_differs_from_persons_account_{row}_account_kept",
    )
    f["account_id"] = f["account_id"].where(~no_account, of_person)
    f[ACCOUNT_FROM_PERSON] = no_account.to_numpy(dtype=bool)
    _reject_unknown_accounts(f, rows, accounts)


def _check_people(ctx: Context, f: pd.DataFrame, rows: Verdicts) -> pd.DataFrame:
    f["person_id"] = as_id(f["person_id"])
    f["account_id"] = as_id(f["account_id"])
    rows.reject(f["person_id"].isna(), "missing_person_id")
    _resolve_domain(f, rows, ctx.accounts)
    rows.reject(f["account_id"].isna(), "missing_account_id")
    _reject_unknown_accounts(f, rows, ctx.accounts)
    _dedupe(rows, ["person_id"], "duplicate_person_id")
    for column in ("department", "seniority", "buying_role"):
        if column in f:
            _check_vocabulary(f, rows, "people", column)
    if "title" in f:
        f["title"] = f["title"].astype("str").str.strip()
    if "created_at" in f:
        f["created_at"], bad = _parse_times(ctx, f, "created_at")
        rows.warn(bad, "created_at_unparsable_set_to_null")
        _null_placeholder_dates(f, rows, "created_at")
    return f


def _check_events(ctx: Context, f: pd.DataFrame, rows: Verdicts) -> pd.DataFrame:
    f["event_id"] = (
        as_id(f["event_id"]) if "event_id" in f else pd.Series(pd.NA, index=f.index, dtype="str")
    )
    if f["event_id"].isna().all():
        f["event_id"] = f[SOURCE_COLUMN].astype("str") + ":" + f[ROW_COLUMN].astype("str")
    _require_time(ctx, f, rows, "timestamp", ctx.extracted_at, "timestamp_after_extract")
    event_type = normalise_label(f["event_type"])
    rows.reject(event_type.isna(), "missing_event_type")

    _account_through_person(f, rows, ctx.accounts, ctx.people, "event")
    _dedupe(rows, ["event_id"], "duplicate_event_id")
    if "weight" in f:
        f["weight"], bad = _parse_numbers(ctx, f, "weight")
        rows.reject(bad | _outside(f["weight"], "events", "weight"), "invalid_weight")
        f["weight"] = f["weight"].fillna(1.0)
    else:
        f["weight"] = 1.0
    _check_vocabulary(f, rows, "events", "event_type", event_type)
    f["topic"] = (
        normalise_label(f["topic"])
        if "topic" in f
        else pd.Series(pd.NA, index=f.index, dtype="str")
    )
    if "channel" in f:
        _check_vocabulary(f, rows, "events", "channel")
    else:
        f["channel"] = pd.Series(pd.NA, index=f.index, dtype="str")
    return f


def _check_intent(ctx: Context, f: pd.DataFrame, rows: Verdicts) -> pd.DataFrame:
    _resolve_account(f, rows, ctx.accounts)
    _require_time(ctx, f, rows, "date", ctx.extracted_at, "date_after_extract", dates=True)
    f["topic"] = normalise_label(f["topic"])
    rows.reject(f["topic"].isna(), "missing_topic")
    f["score"], bad = _parse_numbers(ctx, f, "score")
    rows.reject(bad | f["score"].isna(), "score_not_a_number")
    rows.reject((f["score"] < 0) | (f["score"] > 100), "score_out_of_range")
    _dedupe(rows, ["account_id", "date", "topic"], "duplicate_account_date_topic")
    return f


def _check_opportunities(ctx: Context, f: pd.DataFrame, rows: Verdicts) -> pd.DataFrame:
    f["opportunity_id"] = as_id(f["opportunity_id"])
    rows.reject(f["opportunity_id"].isna(), "missing_opportunity_id")
    if "person_id" in f:
        _account_through_person(f, rows, ctx.accounts, ctx.people, "opportunity")
    else:
        _resolve_account(f, rows, ctx.accounts)
    _require_time(
        ctx, f, rows, "created_at", ctx.extracted_at, "created_after_extract", long_ago=True
    )
    rows.reject(~_present(f["status"]), "missing_status")
    _check_vocabulary(f, rows, "opportunities", "status")
    if "type" in f:
        _check_vocabulary(f, rows, "opportunities", "type")
        rows.warn(f["type"].isna(), "missing_type_taken_as_new_business")
        f["type"] = f["type"].fillna("new_business")
    else:
        f["type"] = "new_business"
    if "closed_at" in f:
        f["closed_at"], bad = _parse_times(ctx, f, "closed_at")
        rows.reject(bad, "unparsable_closed_at")
        _null_placeholder_dates(f, rows, "closed_at")
        rows.reject(f["closed_at"] < f["created_at"], "closed_before_created")
        rows.warn(f["closed_at"] > ctx.extracted_at, "closed_after_extract_taken_as_open")
        late = f["closed_at"] > ctx.extracted_at
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


def _check_account_history(ctx: Context, f: pd.DataFrame, rows: Verdicts) -> pd.DataFrame:
    _resolve_account(f, rows, ctx.accounts)
    f["field"] = normalise_label(f["field"])
    rows.reject(f["field"].isna(), "missing_field")
    _require_time(
        ctx, f, rows, "valid_from", ctx.extracted_at, "valid_from_after_extract", long_ago=True
    )
    if "value" in f:
        f["value"] = f["value"].astype("str").str.strip()
    _dedupe(rows, ["account_id", "field", "valid_from"], "duplicate_account_field_valid_from")
    return f


def check_table(ctx: Context, rows: Verdicts) -> pd.DataFrame:
    """Check one stacked table (``ctx.table``, ``rows.frame``) against the used rows of the
    tables checked before it."""
    return _CHECKS[ctx.table](ctx, rows.frame, rows)


_CHECKS = {
    "accounts": _check_accounts,
    "people": _check_people,
    "events": _check_events,
    "intent": _check_intent,
    "opportunities": _check_opportunities,
    "account_history": _check_account_history,
}
