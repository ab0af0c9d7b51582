"""What the review page and the static report show of the ranked list, as plain functions over
a scoring run's tables (``serving.published``): the list filtered, sorted and paged, its
summary, the contacts to reach and the CSV export. The account view is ``serving.account``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from features.catalogue import MQL_THRESHOLD
from features.io import csv_text as inert_csv
from serving.batch import CELL_SEPARATOR, PEOPLE_COLUMNS, RANKED_COLUMNS
from serving.changes import ROSE, WORKED_STAGES
from serving.errors import shortened
from serving.scoring import STAGES, STATUSES

# Columns a list can be sorted by; ties keep the rank order.
SORTABLE = (
    "rank",
    "score",
    "trend",
    "name",
    "domain",
    "people_engaged_90d",
    "departments_engaged_90d",
    "high_intent_people_30d",
    "mql_points_max_90d",
)
# The list's columns: the ranked file's, less what only the account view or the files need.
LIST_COLUMNS = tuple(
    c
    for c in RANKED_COLUMNS
    if c not in ("as_of", "probability", "reasons", "in_pipeline", "is_customer")
)
# what the list's stage filter takes: a stage, or the status of an account not scored
STAGE_CHOICES = (*(name for name, _ in reversed(STAGES)), *STATUSES[1:])
# the export's columns: the list's, then who to reach (roles joined by CELL_SEPARATOR)
EXPORT_COLUMNS = (*LIST_COLUMNS, "contacts_to_reach")


# the JSON FastAPI's JSONResponse writes; routes answering many rows send it as text made here,
# without FastAPI's encoder walking every value first (~2 ms of a 50-row list page)
JSON_TEXT = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


@dataclass(frozen=True)
class ListQuery:
    """Filters, order and page of the ranked list; every field optional. ``stages``: any of
    them (none: every stage); ``new``: only the accounts new this period (``serving.changes``:
    moved up into in-market or ready since the previous scoring run)."""

    stages: tuple[str, ...] = ()
    industry: str | None = None
    region: str | None = None
    owner: str | None = None
    min_score: int = 0
    q: str | None = None
    new: bool = False
    sort: str = "rank"
    descending: bool = False
    offset: int = 0
    limit: int = 50

    def __post_init__(self) -> None:
        if self.sort not in SORTABLE:
            raise ValueError(
                f"sort: '{shortened(self.sort)}' is not sortable; use one of {', '.join(SORTABLE)}"
            )
        unknown = [s for s in self.stages if s not in STAGE_CHOICES]
        if unknown:
            raise ValueError(
                f"stage: '{shortened(unknown[0])}' is not a stage; use any of "
                f"{', '.join(STAGE_CHOICES)}"
            )


def _matching(ranked: pd.DataFrame, query: ListQuery) -> np.ndarray:
    """Which rows pass the filters (its order and page aside)."""
    # accounts without a score (customers, in pipeline) pass only when no minimum is asked
    keep = (ranked["score"].astype("float64").fillna(-1).to_numpy() >= query.min_score) | (
        query.min_score == 0
    )
    if query.stages:
        keep &= ranked["stage"].isin(query.stages).to_numpy()
    if query.new:
        keep &= new_this_period(ranked)
    for column in ("industry", "region", "owner"):
        value = getattr(query, column)
        if value:
            keep &= (ranked[column].astype("str") == value).to_numpy()
    if query.q and query.q.strip():
        needle = query.q.strip().lower()
        keep &= (
            ranked["_name"].str.contains(needle, regex=False)
            | ranked["_domain"].str.contains(needle, regex=False)
            | (ranked["account_id"].str.lower() == needle)
        ).to_numpy()
    return np.asarray(keep, dtype=bool)


def new_this_period(ranked: pd.DataFrame) -> np.ndarray:
    """Which accounts are new this period (moved up into in-market or ready)."""
    return (ranked["change"] == ROSE).to_numpy(dtype=bool, na_value=False)


def _order(key: pd.Series, rank: pd.Series, descending: bool) -> np.ndarray:
    """A stable order by ``key`` (missing last), ties by rank: pandas' sort_values of the two
    columns, on their codes (a tenth of its time)."""
    codes = pd.factorize(key, sort=True)[0]
    ranks = pd.factorize(rank, sort=True)[0]
    by_key = np.where(codes < 0, 0, -codes if descending else codes)
    by_rank = np.where(ranks < 0, len(ranks), ranks)
    return np.lexsort((by_rank, by_key, codes < 0))


def ordered(ranked: pd.DataFrame, query: ListQuery) -> np.ndarray:
    """The places of the rows matching the filters, in the requested order (all of them, not
    one page), found on the sort's two columns alone."""
    places = np.flatnonzero(_matching(ranked, query))
    if query.sort != "rank":
        key = ranked["_name" if query.sort == "name" else query.sort].iloc[places]
        places = places[_order(key, ranked["rank"].iloc[places], query.descending)]
    elif query.descending:
        places = places[::-1]
    return places


def select(ranked: pd.DataFrame, query: ListQuery) -> pd.DataFrame:
    """The rows matching the filters, in the requested order, taken once."""
    return ranked.iloc[ordered(ranked, query)]


@dataclass(frozen=True)
class JsonColumn:
    """A column as an array whose ``tolist()`` is JSON-ready (times as ISO 8601 text, categories
    as their values), and where it is null; made once, then any of its rows taken cheaply."""

    values: np.ndarray
    nulls: np.ndarray | None

    @classmethod
    def of(cls, column: pd.Series) -> JsonColumn:
        nulls = column.isna().to_numpy()
        if column.dtype.kind == "M":  # a few distinct times: each written once
            codes, uniques = pd.factorize(column)
            text = np.array([*(stamp.isoformat() for stamp in uniques), None], dtype=object)
            values = text[codes]
        elif column.dtype.kind in "iufb":  # numbers, nullable or not (a null's value is unused)
            numbers = getattr(column.dtype, "numpy_dtype", column.dtype)
            values = column.to_numpy(dtype=numbers, na_value=0)
        else:
            values = column.to_numpy(dtype=object)
        return cls(values, nulls if nulls.any() else None)

    def take(self, start: int = 0, stop: int | None = None) -> list[Any]:
        """Rows ``start`` to ``stop`` as Python values, None where null."""
        values = self.values[start:stop].tolist()
        if self.nulls is None:
            return values
        nulls = self.nulls[start:stop].tolist()
        return [None if null else value for value, null in zip(values, nulls, strict=True)]


def records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """List rows as JSON-ready dicts (missing numbers as null, roles as lists), converted in
    one pass: pandas' own per-cell conversion was ~20 ms a page."""
    values = rows[list(LIST_COLUMNS)].to_numpy(dtype=object, na_value=None).tolist()
    result = [dict(zip(LIST_COLUMNS, row, strict=True)) for row in values]
    for row in result:
        row["roles_engaged"] = list(row["roles_engaged"])
        row["roles_missing"] = list(row["roles_missing"])
    return result


_JOINED_ON = ("account_id", "buying_role")


def contacts_to_reach(
    rows: pd.DataFrame, people: pd.DataFrame | None, activity: pd.DataFrame
) -> pd.DataFrame:
    """For each row's missing buying roles, the people in the CRM at its account who hold the
    role (people.buying_role) and have not engaged in the activity's weeks (an email open is
    no engagement): one line per person and role, in the rows' order, then by name."""
    columns = ["account_id", "role", *(c for c in PEOPLE_COLUMNS if c not in _JOINED_ON)]
    if people is None or people.empty or rows.empty:
        return pd.DataFrame(columns=columns)
    wanted = (
        rows[["account_id", "roles_missing"]]
        .assign(_row=np.arange(len(rows)))
        .explode("roles_missing")
        .dropna(subset=["roles_missing"])
        .rename(columns={"roles_missing": "role"})
    )
    engaged = activity.loc[activity["events"] > activity["opens"], "person_id"].dropna()
    holders = people[~people["person_id"].isin(engaged)].rename(columns={"buying_role": "role"})
    found = wanted.merge(holders, on=["account_id", "role"], how="inner")
    found = found.assign(_name=found["name"].fillna(found["person_id"]).str.lower())
    found = found.sort_values(["_row", "_name", "person_id"], kind="stable")
    return found[columns].reset_index(drop=True)


def contact_cells(rows: pd.DataFrame, contacts: pd.DataFrame) -> pd.Series:
    """One CSV cell per row: ``name <email> (role)`` of each contact to reach, ``; ``-joined."""
    who = contacts["name"].fillna(contacts["title"]).fillna(contacts["person_id"])
    email = (" <" + contacts["email"] + ">").fillna("")
    line = who + email + " (" + contacts["role"].str.replace("_", " ") + ")"
    cells = line.groupby(contacts["account_id"], sort=False).agg(CELL_SEPARATOR.join)
    return rows["account_id"].map(cells).astype(object).fillna("")


def csv_text(rows: pd.DataFrame, contacts: pd.DataFrame) -> str:
    """The rows as CSV: the list's columns, roles ``; ``-joined, and the contacts to reach
    (``contacts_to_reach`` of these rows)."""
    table = rows[list(LIST_COLUMNS)].assign(
        roles_engaged=rows["roles_engaged"].map(CELL_SEPARATOR.join),
        roles_missing=rows["roles_missing"].map(CELL_SEPARATOR.join),
        contacts_to_reach=contact_cells(rows, contacts),
    )
    return inert_csv(table[list(EXPORT_COLUMNS)])


def _slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-")


def export_name(query: ListQuery, as_of: str | None, crm: str | None = None) -> str:
    """The export's file name, saying for which CRM, what was filtered and the scoring's date,
    e.g. ``in-market_salesforce_stage-work-now_new_owner-jane-park_2026-12-03.csv``."""
    stages = (
        "work-now"
        if sorted(query.stages) == sorted(WORKED_STAGES)
        else "-or-".join(_slug(s) for s in query.stages)
    )
    parts = {
        "stage": stages,
        "industry": _slug(query.industry or ""),
        "region": _slug(query.region or ""),
        "owner": _slug(query.owner or ""),
        "min-score": str(query.min_score) if query.min_score else "",
        "search": _slug(query.q or "")[:40],
    }
    named = [f"{key}-{value}" for key, value in parts.items() if value]
    said = [*([crm] if crm else []), *(["new"] if query.new else []), *named]
    return "_".join(["in-market", *said, *([as_of[:10]] if as_of else [])]) + ".csv"


def filter_choices(ranked: pd.DataFrame) -> dict[str, list[str]]:
    """The values each filter of the list can take (the same for every query of a run)."""
    named = {"industries": "industry", "regions": "region", "owners": "owner"}
    return {
        plural: sorted({str(value) for value in ranked[column].dropna().unique()})
        for plural, column in named.items()
    }


def summary(
    ranked: pd.DataFrame,
    query: ListQuery = ListQuery(),
    choices: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Stage counts of the accounts matching ``query``'s other filters (its stages aside), how
    many of them are new this period (its ``new`` aside too), the choices of each filter
    (``filter_choices``, given when kept per run), and what the MQL rule would have missed among
    those accounts: the ones worth working now (in-market or ready) in which nobody has reached
    the MQL threshold of lead points."""
    keep = _matching(ranked, replace(query, stages=()))
    fresh = _matching(ranked, replace(query, stages=(), new=False))
    stage = ranked["stage"].to_numpy(dtype=object)[keep]
    stages = Counter(stage.tolist())
    statuses = Counter(ranked["status"].to_numpy(dtype=object)[keep].tolist())
    worked = np.isin(stage, WORKED_STAGES)
    points = ranked["mql_points_max_90d"].to_numpy(dtype="float64", na_value=0.0)[keep]
    no_mql = worked & (points < MQL_THRESHOLD)
    return {
        "as_of": str(ranked["as_of"].max()) if len(ranked) else None,
        "accounts": len(ranked),
        "matching": int(keep.sum()),
        "stages": {name: int(stages.get(name, 0)) for name, _ in reversed(STAGES)},
        "statuses": {name: int(statuses.get(name, 0)) for name in STATUSES},
        **(filter_choices(ranked) if choices is None else choices),
        "new_this_period": int((fresh & new_this_period(ranked)).sum()),
        "worked_now": int(worked.sum()),
        "worked_now_without_mql": int(no_mql.sum()),
        "mql_threshold": MQL_THRESHOLD,
    }
