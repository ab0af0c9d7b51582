"""The account view (serving/account.py): what it shows, that a request only slices what the
run's load grouped, and the same JSON as the per-request pandas view it replaced (issue 31)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import TypeAdapter

from features.activity import ACTIVITY_COLUMNS, ACTIVITY_WEEKS
from features.settings import DataSettings, FeatureSettings
from serving.account import AccountViews
from serving.batch import PEOPLE_COLUMNS, score_batch
from serving.published import Scoring
from serving.review import LIST_COLUMNS, contacts_to_reach
from tests.serving.test_review import AS_OF, _activity, _crm_people, _ranked, _with_others
from tests.stores import client_of
from training.job import TrainResult
from training.registry import load_model

_EMPTY_HISTORY = pd.DataFrame(columns=["account_id", "as_of", "score", "stage", "probability"])
_NO_PEOPLE = pd.DataFrame(columns=list(PEOPLE_COLUMNS))
_ROUTE = TypeAdapter(dict[str, Any])  # the route's response field before (FastAPI)


def _view(views: AccountViews, account_id: str) -> dict[str, Any] | None:
    answer = views.answer(account_id)
    return None if answer is None else json.loads(answer)


def test_an_unscored_accounts_view_is_valid_json_with_nulls() -> None:
    # given a customer, listed but never scored, and no activity
    views = AccountViews(
        _with_others(),
        _EMPTY_HISTORY,
        pd.DataFrame(columns=ACTIVITY_COLUMNS),
        _EMPTY_HISTORY,
        _NO_PEOPLE,
    )
    # when its view is asked for
    view = _view(views, "C1")
    # then its score and probability are null, never NaN (the answer is strict JSON)
    assert view is not None
    assert view["account"]["probability"] is None and view["account"]["score"] is None
    assert len(view["weeks"]) == ACTIVITY_WEEKS and view["people"] == []


def test_account_view_fills_empty_weeks_and_shows_anonymous_visits() -> None:
    ranked = _ranked()
    week = pd.Timestamp("2026-06-15", tz="UTC")
    activity = pd.DataFrame(
        {
            "account_id": ["A1", "A1", "A2"],
            "week": [week, week, week],
            "person_id": ["P1", None, "P9"],
            "events": [4, 7, 1],
            "opens": [1, 0, 0],
            "high_intent": [2, 1, 0],
            "topics": ["pricing; crm", "crm", None],
            "title": ["VP Sales", None, "CFO"],
            "department": ["sales", None, "finance"],
            "seniority": ["vp", None, "c_level"],
            "buying_role": ["decision_maker", None, "finance"],
        }
    )
    history = pd.DataFrame(
        {"account_id": ["A1"], "as_of": [AS_OF], "score": [99], "stage": ["ready"]}
    ).assign(probability=0.5)
    opportunities = pd.DataFrame({"account_id": ["A2"], "opportunity_id": ["O1"]})
    views = AccountViews(ranked, history, activity, opportunities, _NO_PEOPLE)
    view = _view(views, "A1")
    assert view is not None
    assert len(view["weeks"]) == 13 and sum(w["anonymous"] for w in view["weeks"]) == 7
    mid = next(w for w in view["weeks"] if w["week"].startswith("2026-06-15"))
    assert (mid["known"], mid["anonymous"], mid["high_intent"]) == (4, 7, 3)
    people = {p["person_id"]: p for p in view["people"]}
    assert people[None]["anonymous"] and people[None]["interactions"] == 7
    assert people["P1"]["interactions"] == 3 and people["P1"]["opens"] == 1
    assert people["P1"]["topics"] == "pricing; crm"
    assert view["history"] == [
        {"as_of": AS_OF.isoformat(), "score": 99, "stage": "ready", "probability": 0.5}
    ]
    assert view["opportunities"] == []
    assert _view(views, "A2")["opportunities"] == [{"opportunity_id": "O1"}]  # type: ignore[index]
    assert views.answer("nope") is None


def test_account_view_names_who_engaged_and_who_to_reach_per_missing_role() -> None:
    # given A2 (missing champion and finance) and the CRM's people, Ed (a user) engaged
    activity = _activity({"P6": (3, 0)}).assign(account_id="A2")
    views = AccountViews(_ranked(), _EMPTY_HISTORY, activity, _EMPTY_HISTORY, _crm_people())
    # when its view is read
    view = _view(views, "A2")
    # then who engaged has a name and email, and each missing role lists its holders who have
    # not engaged (none for finance: nobody at A2 holds it)
    assert view is not None
    assert [(p["name"], p["email"]) for p in view["people"]] == [("Ed User", "ed@bluebank.com")]
    reach = {r["role"]: [p["person_id"] for p in r["people"]] for r in view["contacts_to_reach"]}
    assert reach == {"champion": ["P5"], "finance": []}
    assert view["contacts_to_reach"][0]["people"][0]["title"] == "Head of Ops"


def test_a_request_only_slices_what_the_load_grouped(monkeypatch: pytest.MonkeyPatch) -> None:
    """~90 ms of pandas per request was the page's bottleneck: the grouping is done per run."""
    # given the account views of a run, built
    activity = _activity({"P1": (3, 0), "P6": (2, 1)})
    ranked = _ranked()
    views = AccountViews(ranked, _EMPTY_HISTORY, activity, _EMPTY_HISTORY, _crm_people())

    # when every account's view is asked for with pandas' grouping, merging and sorting gone
    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("pandas work in a request")

    for method in ("groupby", "merge", "sort_values", "assign", "astype", "to_dict"):
        monkeypatch.setattr(pd.DataFrame, method, refused)
    answers = [views.answer(account) for account in ranked["account_id"].tolist()]
    # then each is answered
    assert all(answers)


# -- the same answer as before: the per-request view of serving/review.py (1e23550), verbatim --


def _records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    page = rows[list(LIST_COLUMNS)]
    page = page.assign(
        roles_engaged=page["roles_engaged"].map(list),
        roles_missing=page["roles_missing"].map(list),
    )
    result: list[dict[str, Any]] = (
        page.astype(object).where(page.notna(), None).to_dict(orient="records")
    )
    return result


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
    seen = dict.fromkeys(t for value in weekly.dropna() for t in str(value).split("; "))
    return "; ".join(list(seen)[:k])


def _view_before(scoring: Scoring, account_id: str) -> dict[str, Any] | None:
    ranked = scoring.ranked
    row = ranked[ranked["account_id"] == account_id]
    if row.empty:
        return None
    account = _records(row)[0]
    account["as_of"] = str(row["as_of"].iloc[0])
    probability = row["probability"].iloc[0]
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


@pytest.fixture(scope="module")
def dirty_run(
    trained: tuple[Path, TrainResult],
    dirty_world_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Scoring:
    """The dirty world scored (anonymous visits, people whose events name another account,
    names and emails missing), read back as the service reads it."""
    store, result = trained
    client_of(store)
    out = tmp_path_factory.mktemp("dirty-run") / "ranked.parquet"
    model = load_model(result.model_uri)
    score_batch(model, dirty_world_dir, out, DataSettings(), FeatureSettings())
    scoring = Scoring.read(out)
    assert scoring is not None
    return scoring


def _sample(ranked: pd.DataFrame, activity: pd.DataFrame, n: int = 30) -> list[str]:
    """Accounts of every kind: each status, with and without activity, anonymous visits, roles
    missing; the busiest and a seeded draw of the rest."""
    rng = np.random.default_rng(3)
    anonymous = activity.loc[activity["person_id"].isna(), "account_id"]
    kinds = [
        *(
            ranked.loc[ranked["status"] == s, "account_id"].head(5)
            for s in ranked["status"].unique()
        ),
        ranked.loc[~ranked["account_id"].isin(activity["account_id"]), "account_id"].head(5),
        anonymous.drop_duplicates().head(10),
        activity["account_id"].value_counts().index[:10].to_series(),
    ]
    drawn = rng.choice(ranked["account_id"].to_numpy(), size=n, replace=False)
    return list(dict.fromkeys([*pd.concat(kinds).astype(str), *drawn]))


@pytest.mark.slow
def test_every_view_is_the_json_the_route_answered_before(dirty_run: Scoring) -> None:
    # given a scored dirty world and accounts of every kind in it
    accounts = _sample(dirty_run.ranked, dirty_run.activity)
    assert len(accounts) > 50
    # when each account's view is made once per run (now) and per request (before)
    views = dirty_run.views()
    # then both are the same JSON text, byte for byte (what FastAPI wrote from the dict: its
    # response field's JSON-mode dump, NaN as null, then JSONResponse's json.dumps), but for
    # departments with as many events: by name now, in numpy's unstable quicksort order before
    for account in accounts:
        before = _ROUTE.dump_python(_view_before(dirty_run, account), mode="json")
        before["departments"].sort(key=lambda d: (-d["events"], d["department"]))
        expected = json.dumps(before, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        answer = views.answer(account)
        assert answer is not None and answer.decode("utf-8") == expected, account
