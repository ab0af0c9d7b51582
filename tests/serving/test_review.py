"""The review page's list, summary and account view as plain functions (serving/review.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from features.activity import ACTIVITY_COLUMNS
from features.catalogue import MQL_THRESHOLD
from serving.review import (
    ListQuery,
    Scoring,
    ScoringCache,
    account_view,
    csv_text,
    select,
    summary,
)

AS_OF = pd.Timestamp("2026-07-01", tz="UTC")


def _ranked() -> pd.DataFrame:
    rows = [
        # account, name, domain, industry, region, score, stage, trend, mql points
        ("A1", "Acme Robotics", "acme.io", "software", "emea", 99, "ready", 3, 40.0),
        (
            "A2",
            "Blue Bank",
            "bluebank.com",
            "financial_services",
            "apac",
            95,
            "in-market",
            -2,
            120.0,
        ),
        ("A3", "acme foods", "acmefoods.com", "retail", "emea", 93, "in-market", 0, None),
        ("A4", "Zed", "zed.org", "software", "latam", 50, "aware", 10, 5.0),
    ]
    frame = pd.DataFrame(
        rows,
        columns=[
            "account_id", "name", "domain", "industry", "region", "score", "stage", "trend",
            "mql_points_max_90d",
        ],
    )  # fmt: skip
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame.assign(
        employee_band="51-200",
        as_of=AS_OF,
        probability=[0.5, 0.3, 0.2, 0.01],
        people_engaged_90d=[5.0, 3.0, 2.0, 0.0],
        departments_engaged_90d=[3.0, 2.0, 1.0, 0.0],
        high_intent_people_30d=[2.0, 1.0, 0.0, 0.0],
        top_reasons="r",
        reasons='{"positive": [], "negative": []}',
        roles_engaged=[["champion"], [], [], []],
        roles_missing=[["finance"], ["champion", "finance"], [], []],
        buying_group_gap="g",
        status="prospect",
        model_version="3",
        _name=lambda f: f["name"].str.lower(),
        _domain=lambda f: f["domain"].str.lower(),
    )


def _with_others() -> pd.DataFrame:
    """The four prospects, then a customer and an account in pipeline: listed, never scored."""
    ranked = _ranked()
    others = ranked.iloc[[0, 3]].assign(
        account_id=["C1", "P1"],
        name=["Current Customer", "Deal Open"],
        _name=["current customer", "deal open"],
        status=["customer", "in-pipeline"],
        stage=["customer", "in-pipeline"],
        probability=float("nan"),
        mql_points_max_90d=500.0,
    )
    ranked = pd.concat([ranked, others], ignore_index=True)
    ranked["rank"] = pd.array([1, 2, 3, 4, None, None], dtype="Int64")
    ranked["score"] = pd.array([99, 95, 93, 50, None, None], dtype="Int64")
    return ranked


def _ids(rows: pd.DataFrame) -> list[str]:
    return rows["account_id"].tolist()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (ListQuery(), ["A1", "A2", "A3", "A4"]),
        (ListQuery(stage="in-market"), ["A2", "A3"]),
        (ListQuery(region="emea", min_score=95), ["A1"]),
        (ListQuery(q="ACME"), ["A1", "A3"]),
        (ListQuery(q="bluebank.com"), ["A2"]),
        (ListQuery(q="a4"), ["A4"]),  # an exact account id
        (ListQuery(sort="trend", descending=True), ["A4", "A1", "A3", "A2"]),
        (ListQuery(sort="name"), ["A3", "A1", "A2", "A4"]),
        (ListQuery(descending=True), ["A4", "A3", "A2", "A1"]),
    ],
    ids=[
        "everything-by-rank",
        "stage",
        "region-and-min-score",
        "search-name-any-case",
        "search-domain",
        "search-account-id",
        "trend-descending",
        "name",
        "rank-descending",
    ],
)
def test_filters_search_and_order(query: ListQuery, expected: list[str]) -> None:
    assert _ids(select(_ranked(), query)) == expected


def test_an_unknown_sort_is_refused() -> None:
    with pytest.raises(ValueError, match="sort: 'probability'"):
        select(_ranked(), ListQuery(sort="probability"))


def test_csv_has_the_rows_and_roles_as_words() -> None:
    text = csv_text(select(_ranked(), ListQuery(stage="in-market")))
    lines = text.strip().splitlines()
    assert lines[0].startswith("rank,account_id,name")
    assert len(lines) == 3 and ",champion finance," in lines[1]


def test_summary_counts_what_the_mql_rule_misses() -> None:
    result = summary(_ranked())
    assert result["stages"] == {"ready": 1, "in-market": 2, "engaged": 0, "aware": 1, "cold": 0}
    assert result["worked_now"] == 3
    # A2 has a person at the threshold; A1 (40 points) and A3 (no points) have nobody
    assert MQL_THRESHOLD <= 120 and result["worked_now_without_mql"] == 2
    assert result["regions"] == ["apac", "emea", "latam"]


def test_customers_and_pipeline_are_listed_but_never_counted_as_prospects() -> None:
    ranked = _with_others()
    result = summary(ranked)
    assert result["statuses"] == {"prospect": 4, "in-pipeline": 1, "customer": 1, "new": 0}
    # unchanged by the two others, although both would be "ready" by points and score
    assert result["stages"] == {"ready": 1, "in-market": 2, "engaged": 0, "aware": 1, "cold": 0}
    assert result["worked_now"] == 3
    assert _ids(select(ranked, ListQuery())) == ["A1", "A2", "A3", "A4", "C1", "P1"]
    assert _ids(select(ranked, ListQuery(stage="customer"))) == ["C1"]
    assert _ids(select(ranked, ListQuery(min_score=1))) == ["A1", "A2", "A3", "A4"]
    assert ",customer," in csv_text(select(ranked, ListQuery(stage="customer")))
    # and a customer's account view is valid JSON (no score: null, never NaN)
    empty = pd.DataFrame(columns=["account_id", "as_of", "score", "stage", "probability"])
    scoring = Scoring(ranked, empty, pd.DataFrame(columns=ACTIVITY_COLUMNS), empty, None)
    view = account_view(scoring, "C1")
    assert view is not None
    assert view["account"]["probability"] is None and view["account"]["score"] is None
    json.dumps(view, allow_nan=False)


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
    view = account_view(Scoring(ranked, history, activity, opportunities, None), "A1")
    assert view is not None
    assert len(view["weeks"]) == 13 and sum(w["anonymous"] for w in view["weeks"]) == 7
    mid = next(w for w in view["weeks"] if w["week"].startswith("2026-06-15"))
    assert (mid["known"], mid["anonymous"], mid["high_intent"]) == (4, 7, 3)
    people = {p["person_id"]: p for p in view["people"]}
    assert people[None]["anonymous"] and people[None]["interactions"] == 7
    assert people["P1"]["interactions"] == 3 and people["P1"]["opens"] == 1
    assert view["opportunities"] == []
    assert account_view(Scoring(ranked, history, activity, opportunities, None), "nope") is None


def test_the_service_takes_a_batch_scoring_whole_once_its_manifest_lands(tmp_path: Path) -> None:
    # given a scoring by version 3, read by the cache
    out = tmp_path / "ranked.parquet"

    def write(version: str, manifest: bool) -> None:
        _ranked().assign(model_version=version).drop(columns=["_name", "_domain"]).to_parquet(out)
        if manifest:
            body = {"model_version": version, "as_of": str(AS_OF), "written_at": "now"}
            out.with_name("ranked.manifest.json").write_text(json.dumps(body))

    write("3", manifest=True)
    cache = ScoringCache(out)
    first = cache.get()
    assert first is not None and first.manifest == {
        "model_version": "3",
        "as_of": str(AS_OF),
        "written_at": "now",
    }
    # when version 4's ranked file is written but not yet its manifest
    write("4", manifest=False)
    half = cache.get()
    # then the cache keeps version 3's scoring, whole; and takes version 4's once it lands
    assert half is first and set(half.ranked["model_version"]) == {"3"}
    write("4", manifest=True)
    done = cache.get()
    assert done is not None and set(done.ranked["model_version"]) == {"4"}
    assert done.manifest is not None and done.manifest["model_version"] == "4"
    # and when it looks next only once version 5 has landed and version 6's list is being
    # written, the manifest (5) does not match the list (6): it keeps version 4's scoring
    write("5", manifest=True)
    write("6", manifest=False)
    caught = cache.get()
    assert caught is done
    write("6", manifest=True)
    latest = cache.get()
    assert latest is not None and set(latest.ranked["model_version"]) == {"6"}
