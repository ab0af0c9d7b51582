"""The account view (``GET /v1/accounts/{id}``), built once per scoring run.

Loading a run groups each table the view shows by account in a few vectorised passes (score
history, the 13 weeks, people, departments, contacts to reach, opportunities); a request then
slices its account's rows and writes them as JSON. Grouping per request took ~90 ms of CPU, so one
worker served ~10 account views a second (issue 31; ``bench/page.py`` measures both).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from features.activity import ACTIVITY_WEEKS
from serving.review import JSON_TEXT, LIST_COLUMNS, JsonColumn, contacts_to_reach

_PERSON = ["account_id", "person_id"]
_TOPICS = 3  # distinct topics shown per person


class _Rows:
    """A table's rows grouped by account, kept as column arrays: ``of(i)`` holds the rows of the
    account at place ``i`` as JSON-ready dicts, in the table's order."""

    def __init__(self, frame: pd.DataFrame, place: np.ndarray, accounts: int) -> None:
        order = np.argsort(place, kind="stable")
        self._bounds: list[int] = np.searchsorted(place[order], np.arange(accounts + 1)).tolist()
        self._names = list(frame.columns)
        self._columns = [JsonColumn.of(frame[name].iloc[order]) for name in self._names]

    def of(self, i: int) -> list[dict[str, Any]]:
        start, stop = self._bounds[i], self._bounds[i + 1]
        if start == stop:
            return []
        columns = [column.take(start, stop) for column in self._columns]
        return [dict(zip(self._names, row, strict=True)) for row in zip(*columns, strict=True)]


class AccountViews:
    """Every account's view of one scoring run; ``answer(account_id)`` is its JSON text (None for
    an account not in the ranked list)."""

    def __init__(
        self,
        ranked: pd.DataFrame,
        history: pd.DataFrame,
        activity: pd.DataFrame,
        opportunities: pd.DataFrame,
        people: pd.DataFrame,
    ) -> None:
        ranked = ranked[~ranked["account_id"].duplicated()]
        accounts = pd.Index(ranked["account_id"])
        self._place: dict[str, int] = dict(zip(accounts, range(len(accounts)), strict=True))

        def grouped(frame: pd.DataFrame) -> _Rows:
            place = accounts.get_indexer(frame["account_id"])
            kept = place >= 0
            return _Rows(frame[kept].drop(columns="account_id"), place[kept], len(accounts))

        self._account = _Rows(_accounts(ranked), np.arange(len(accounts)), len(accounts))
        self._history = grouped(history[["account_id", "as_of", "score", "stage", "probability"]])
        self._weeks = grouped(_weeks(ranked, activity))
        self._people = grouped(_people(activity, people))
        self._contacts = grouped(_contacts(ranked, activity, people))
        self._departments = grouped(_departments(activity))
        self._opportunities = grouped(opportunities)

    def answer(self, account_id: str) -> bytes | None:
        """The account view of ``account_id`` as JSON: the account, its score history, weekly
        engagement, people, contacts to reach per missing role, departments, opportunities."""
        i = self._place.get(account_id)
        if i is None:
            return None
        account = self._account.of(i)[0]
        account["reasons"] = json.loads(account["reasons"])
        contacts = self._contacts.of(i)
        reach = [
            {
                "role": role,
                "people": [
                    {k: v for k, v in person.items() if k != "role"}
                    for person in contacts
                    if person["role"] == role
                ],
            }
            for role in account["roles_missing"]
        ]
        view = {
            "account": account,
            "history": self._history.of(i),
            "weeks": self._weeks.of(i),
            "people": self._people.of(i),
            "contacts_to_reach": reach,
            "departments": self._departments.of(i),
            "opportunities": self._opportunities.of(i),
        }
        return JSON_TEXT.encode(view).encode("utf-8")


def _accounts(ranked: pd.DataFrame) -> pd.DataFrame:
    """The list's columns of each account, then its as_of as text, probability and reasons."""
    return ranked[list(LIST_COLUMNS)].assign(
        roles_engaged=ranked["roles_engaged"].map(list),
        roles_missing=ranked["roles_missing"].map(list),
        as_of=ranked["as_of"].astype(str),
        probability=ranked["probability"],
        reasons=ranked["reasons"],
    )


def _weeks(ranked: pd.DataFrame, activity: pd.DataFrame) -> pd.DataFrame:
    """Each account's weeks (Mondays) of the 13 before its as_of, engaged or not: events of
    known people, anonymous events and high-intent events."""
    known = activity["person_id"].notna().to_numpy()
    events = activity["events"].to_numpy()
    sums = (
        activity.assign(
            week=pd.to_datetime(activity["week"], utc=True).dt.as_unit("ns"),
            known=np.where(known, events, 0),
            anonymous=np.where(known, 0, events),
        )
        .groupby(["account_id", "week"])[["known", "anonymous", "high_intent"]]
        .sum()
        .reset_index()
    )
    grids = [sums[["account_id", "week"]].iloc[:0]]
    for as_of, ids in ranked.groupby("as_of")["account_id"]:  # one as_of per scoring
        monday = (as_of - pd.Timedelta(weeks=ACTIVITY_WEEKS)).floor("D")
        monday += pd.Timedelta(days=(7 - monday.day_of_week) % 7)
        weeks = pd.date_range(monday, as_of, freq="7D", inclusive="left").as_unit("ns")
        every = np.tile(np.arange(len(weeks)), len(ids))
        grids.append(
            pd.DataFrame(
                {"account_id": np.repeat(ids.to_numpy(), len(weeks)), "week": weeks[every]}
            )
        )
    weekly = pd.concat(grids, ignore_index=True).merge(sums, on=["account_id", "week"], how="left")
    counts = ["known", "anonymous", "high_intent"]
    return weekly.assign(**{c: weekly[c].fillna(0).astype("int64") for c in counts})


def _people(activity: pd.DataFrame, crm: pd.DataFrame) -> pd.DataFrame:
    """Who engaged at each account (anonymous visitors as one row), most interactions first,
    with their name and email from the CRM."""
    seen = activity.assign(person_id=activity["person_id"].fillna(""))
    by_person = seen.groupby(_PERSON, sort=False)
    people = pd.concat(
        [
            by_person[["events", "opens", "high_intent"]].sum(),
            by_person["week"].max().rename("last_week"),
            by_person[["title", "department", "buying_role"]].first(),  # the first known
        ],
        axis=1,
    ).join(_first_topics(seen))
    people = people.assign(
        topics=people["topics"].fillna(""), interactions=people["events"] - people["opens"]
    ).reset_index()
    people = people.sort_values(
        ["interactions", "events", "person_id"], ascending=[False, False, True]
    )
    people["anonymous"] = people["person_id"] == ""
    people["person_id"] = people["person_id"].replace("", None)
    return people.merge(
        crm[["person_id", "name", "email"]], on="person_id", how="left", validate="many_to_one"
    )


def _first_topics(seen: pd.DataFrame) -> pd.Series:
    """Up to three distinct topics of each person, in the order of their weekly top topics."""
    rows = seen[[*_PERSON, "topics"]].dropna(subset=["topics"])
    topics = rows.assign(topic=rows["topics"].astype(str).str.split("; ")).explode("topic")
    topics = topics.drop_duplicates([*_PERSON, "topic"])
    topics = topics.assign(nth=topics.groupby(_PERSON, sort=False).cumcount())
    wide = (
        topics[topics["nth"] < _TOPICS]
        .pivot(index=_PERSON, columns="nth", values="topic")
        .reindex(columns=range(_TOPICS))
        .astype("str")
    )
    joined = wide[0]
    for nth in range(1, _TOPICS):  # vectorised joins, no call per person
        joined = joined + ("; " + wide[nth]).fillna("")
    return joined.rename("topics")


def _contacts(ranked: pd.DataFrame, activity: pd.DataFrame, crm: pd.DataFrame) -> pd.DataFrame:
    """``contacts_to_reach`` of every account, counting as engaged only what a person did at
    their own account (the account view reads its own account's activity)."""
    account_of = crm.drop_duplicates("person_id").set_index("person_id")["account_id"]
    own = activity["account_id"].to_numpy() == activity["person_id"].map(account_of).to_numpy()
    return contacts_to_reach(ranked, crm, activity[own])


def _departments(activity: pd.DataFrame) -> pd.DataFrame:
    """Events by department at each account (anonymous visitors as one), most first."""
    events = (
        activity.assign(department=activity["department"].fillna("anonymous visitors"))
        .groupby(["account_id", "department"])["events"]
        .sum()
        .reset_index()
    )
    return events.sort_values(["events", "department"], ascending=[False, True], kind="stable")
