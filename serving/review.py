"""What the review page and the static report show, as plain functions over the files batch
scoring writes (``serving.batch``): the ranked list filtered, sorted and paged, its summary,
and one account's view. The service caches the files and reloads them when they change.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.activity import ACTIVITY_COLUMNS, ACTIVITY_WEEKS
from features.catalogue import MQL_THRESHOLD
from features.io import sidecar
from serving.batch import CELL_SEPARATOR, PEOPLE_COLUMNS, RANKED_COLUMNS
from serving.scoring import STAGES, STATUSES

log = logging.getLogger("inmarket.review")

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
WORKED_STAGES = ("in-market", "ready")
# what the list's stage filter takes: a stage, or the status of an account not scored
STAGE_CHOICES = (*(name for name, _ in reversed(STAGES)), *STATUSES[1:])
# the export's columns: the list's, then who to reach (roles joined by CELL_SEPARATOR)
EXPORT_COLUMNS = (*LIST_COLUMNS, "contacts_to_reach")


@dataclass(frozen=True)
class ListQuery:
    """Filters, order and page of the ranked list; every field optional. ``stages``: any of
    them (none: every stage)."""

    stages: tuple[str, ...] = ()
    industry: str | None = None
    region: str | None = None
    owner: str | None = None
    min_score: int = 0
    q: str | None = None
    sort: str = "rank"
    descending: bool = False
    offset: int = 0
    limit: int = 50

    def __post_init__(self) -> None:
        if self.sort not in SORTABLE:
            raise ValueError(
                f"sort: '{self.sort}' is not sortable; use one of {', '.join(SORTABLE)}"
            )
        unknown = [s for s in self.stages if s not in STAGE_CHOICES]
        if unknown:
            raise ValueError(
                f"stage: '{unknown[0]}' is not a stage; use any of {', '.join(STAGE_CHOICES)}"
            )


@dataclass
class Scoring:
    """One batch scoring's files, read once."""

    ranked: pd.DataFrame
    history: pd.DataFrame
    activity: pd.DataFrame
    opportunities: pd.DataFrame
    drift: dict[str, Any] | None
    manifest: dict[str, Any] | None = None  # model version, as_of, files (None: older files)
    people: pd.DataFrame | None = None  # the CRM's people (None: a scoring from before them)

    @classmethod
    def read(cls, ranked: Path) -> Scoring:
        def optional(kind: str, columns: tuple[str, ...]) -> pd.DataFrame:
            path = sidecar(ranked, kind)
            return pd.read_parquet(path) if path.exists() else pd.DataFrame(columns=columns)

        frame = pd.read_parquet(ranked)
        if "owner" not in frame:  # written before owners were carried
            frame.insert(frame.columns.get_loc("domain") + 1, "owner", None)
        frame = frame.assign(
            _name=frame["name"].fillna("").str.lower(),
            _domain=frame["domain"].fillna("").str.lower(),
        )
        drift_path = sidecar(ranked, "drift.json")
        manifest_path = sidecar(ranked, "manifest.json")
        return cls(
            frame,
            optional("history.parquet", ("account_id", "as_of", "score")),
            optional("activity.parquet", ACTIVITY_COLUMNS),
            optional("opportunities.parquet", ("account_id", "opportunity_id")),
            json.loads(drift_path.read_text(encoding="utf-8")) if drift_path.exists() else None,
            json.loads(manifest_path.read_text(encoding="utf-8"))
            if manifest_path.exists()
            else None,
            optional("people.parquet", PEOPLE_COLUMNS),
        )

    @property
    def whole(self) -> bool:
        """False while a new scoring is being written: its ranked file is not the manifest's."""
        if self.manifest is None or "model_version" not in self.ranked:
            return True
        versions = set(self.ranked["model_version"].dropna().unique())
        as_of = {str(a) for a in self.ranked["as_of"].unique()}
        return versions <= {self.manifest["model_version"]} and as_of <= {self.manifest["as_of"]}


class ScoringCache:
    """The newest batch scoring at ``path``, re-read when its manifest (written last) changes;
    a scoring caught half-written is not taken, the one before is kept. An unreadable file
    (not Parquet, columns missing) is not served either: the one before is kept, and ``error``
    says why for the routes to answer 503 when there is none."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: object = None
        self._scoring: Scoring | None = None
        self._lock = threading.Lock()
        self.error: str | None = None

    def get(self) -> Scoring | None:
        manifest = sidecar(self.path, "manifest.json")
        try:
            if manifest.exists():  # its text names when it was written: a rewrite always differs
                stamp: object = manifest.read_text(encoding="utf-8")
            else:
                stat = self.path.stat()
                stamp = (stat.st_mtime_ns, stat.st_size)
            with self._lock:
                if stamp != self._stamp or self._scoring is None:
                    scoring = Scoring.read(self.path)
                    if scoring.whole or self._scoring is None:
                        self._scoring, self._stamp = scoring, stamp
                    self.error = None
                return self._scoring
        except FileNotFoundError:
            return self._scoring
        except (OSError, ValueError, KeyError, TypeError) as exc:  # pyarrow's are among these
            if self.error is None:
                log.warning("cannot read the batch scoring %s: %s", self.path.name, exc)
            self.error = f"{self.path.name} cannot be read ({type(exc).__name__})"
            return self._scoring


def select(ranked: pd.DataFrame, query: ListQuery) -> pd.DataFrame:
    """The rows matching the filters, in the requested order (all of them, not one page)."""
    # accounts without a score (customers, in pipeline) pass only when no minimum is asked
    keep = (ranked["score"].astype("float64").fillna(-1).to_numpy() >= query.min_score) | (
        query.min_score == 0
    )
    if query.stages:
        keep &= ranked["stage"].isin(query.stages).to_numpy()
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
    rows = ranked[keep]
    if query.sort != "rank":
        key = "_name" if query.sort == "name" else query.sort
        rows = rows.sort_values(
            [key, "rank"], ascending=[not query.descending, True], kind="stable", na_position="last"
        )
    elif query.descending:
        rows = rows.iloc[::-1]
    return rows


def records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """List rows as JSON-ready dicts (missing numbers as null)."""
    page = rows[list(LIST_COLUMNS)]
    page = page.assign(
        roles_engaged=page["roles_engaged"].map(list),
        roles_missing=page["roles_missing"].map(list),
    )
    result: list[dict[str, Any]] = (
        page.astype(object).where(page.notna(), None).to_dict(orient="records")
    )
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


def _contact_cells(rows: pd.DataFrame, contacts: pd.DataFrame) -> pd.Series:
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
        contacts_to_reach=_contact_cells(rows, contacts),
    )
    text: str = table[list(EXPORT_COLUMNS)].to_csv(index=False)
    return text


def _slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-")


def export_name(query: ListQuery, as_of: str | None) -> str:
    """The export's file name, saying what was filtered and the scoring's date, e.g.
    ``in-market_stage-work-now_owner-jane-park_2026-12-03.csv``."""
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
    return "_".join(["in-market", *named, *([as_of[:10]] if as_of else [])]) + ".csv"


def summary(ranked: pd.DataFrame, query: ListQuery = ListQuery()) -> dict[str, Any]:
    """Stage counts of the accounts matching ``query``'s other filters (its stages aside), the
    choices of each filter, and what the MQL rule would have missed among those accounts: the
    ones worth working now (in-market or ready) in which nobody has reached the MQL threshold
    of lead points."""
    matching = select(ranked, replace(query, stages=(), sort="rank", descending=False))
    stages = matching["stage"].value_counts()
    statuses = (
        matching["status"].value_counts()
        if "status" in matching
        else pd.Series({"prospect": len(matching)})
    )
    worked = matching[matching["stage"].isin(WORKED_STAGES)]
    no_mql = worked["mql_points_max_90d"].fillna(0) < MQL_THRESHOLD
    return {
        "as_of": str(ranked["as_of"].max()) if len(ranked) else None,
        "accounts": len(ranked),
        "matching": len(matching),
        "stages": {name: int(stages.get(name, 0)) for name, _ in reversed(STAGES)},
        "statuses": {name: int(statuses.get(name, 0)) for name in STATUSES},
        "industries": sorted(ranked["industry"].dropna().astype("str").unique().tolist()),
        "regions": sorted(ranked["region"].dropna().astype("str").unique().tolist()),
        "owners": sorted(ranked["owner"].dropna().astype("str").unique().tolist()),
        "worked_now": len(worked),
        "worked_now_without_mql": int(no_mql.sum()),
        "mql_threshold": MQL_THRESHOLD,
    }


def _json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    text = frame.astype(object).where(frame.notna(), None)
    for column in text.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[column]):
            text[column] = [
                None if pd.isna(v) else pd.Timestamp(v).isoformat() for v in frame[column]
            ]
    rows: list[dict[str, Any]] = text.to_dict(orient="records")
    return rows


def _first_topics(weekly: pd.Series, k: int = 3) -> str:
    """Up to ``k`` distinct topics from a person's weekly top topics, newest weeks last."""
    seen = dict.fromkeys(t for value in weekly.dropna() for t in str(value).split("; "))
    return "; ".join(list(seen)[:k])


def account_view(scoring: Scoring, account_id: str) -> dict[str, Any] | None:
    """Everything the account view shows; None for an account not in the ranked list."""
    ranked = scoring.ranked
    row = ranked[ranked["account_id"] == account_id]
    if row.empty:
        return None
    account = records(row)[0]
    account["as_of"] = str(row["as_of"].iloc[0])
    probability = row["probability"].iloc[0]  # none for customers and accounts in pipeline
    account["probability"] = None if pd.isna(probability) else float(probability)
    account["reasons"] = json.loads(row["reasons"].iloc[0])
    history = scoring.history[scoring.history["account_id"] == account_id]
    activity = scoring.activity[scoring.activity["account_id"] == account_id]
    opportunities = scoring.opportunities[scoring.opportunities["account_id"] == account_id]
    known = activity["person_id"].notna()
    as_of = pd.Timestamp(row["as_of"].iloc[0])
    monday = (as_of - pd.Timedelta(weeks=ACTIVITY_WEEKS)).floor("D")
    monday += pd.Timedelta(days=(7 - monday.day_of_week) % 7)
    weeks = (
        activity.assign(
            known=np.where(known, activity["events"], 0),
            anonymous=np.where(known, 0, activity["events"]),
        )
        .groupby("week", sort=True)[["known", "anonymous", "high_intent"]]
        .sum()
        .reindex(pd.date_range(monday, as_of, freq="7D", inclusive="left"), fill_value=0)
        .rename_axis("week")
        .reset_index()
    )
    people = (
        activity.assign(person_id=activity["person_id"].fillna(""))
        .groupby("person_id", sort=False)
        .agg(
            events=("events", "sum"),
            opens=("opens", "sum"),
            high_intent=("high_intent", "sum"),
            last_week=("week", "max"),
            title=("title", "first"),
            department=("department", "first"),
            buying_role=("buying_role", "first"),
            topics=("topics", _first_topics),
        )
        .reset_index()
    )
    people["interactions"] = people["events"] - people["opens"]
    people = people.sort_values(
        ["interactions", "events", "person_id"], ascending=[False, False, True]
    )
    people["anonymous"] = people["person_id"] == ""
    people["person_id"] = people["person_id"].replace("", None)
    crm = scoring.people if scoring.people is not None else pd.DataFrame(columns=PEOPLE_COLUMNS)
    people = people.merge(
        crm[["person_id", "name", "email"]], on="person_id", how="left", validate="many_to_one"
    )
    contacts = contacts_to_reach(row, scoring.people, activity).drop(columns=["account_id"])
    reach = [
        {
            "role": role,
            "people": _json_rows(contacts[contacts["role"] == role].drop(columns="role")),
        }
        for role in row["roles_missing"].iloc[0]
    ]
    departments = (
        activity.assign(department=activity["department"].fillna("anonymous visitors"))
        .groupby("department")["events"]
        .sum()
        .sort_values(ascending=False)
        .reset_index()
    )
    return {
        "account": account,
        "history": _json_rows(history[["as_of", "score", "stage", "probability"]]),
        "weeks": _json_rows(weeks),
        "people": _json_rows(people),
        "contacts_to_reach": reach,
        "departments": _json_rows(departments),
        "opportunities": _json_rows(opportunities.drop(columns=["account_id"])),
    }
