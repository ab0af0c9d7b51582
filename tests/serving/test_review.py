"""The review page's list, summary, contacts to reach and export as plain functions
(serving/review.py); the account view is tests/serving/test_account.py."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from features.activity import ACTIVITY_COLUMNS
from features.catalogue import MQL_THRESHOLD
from serving.report import card_in_words, comparison_table
from serving.review import (
    LIST_COLUMNS,
    ListQuery,
    contacts_to_reach,
    csv_text,
    export_name,
    records,
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
        owner=["Jane Park", "Omar Haddad", "Jane Park", None],
        status="prospect",
        model_version="3",
        # the previous period's: A1 rose from in-market to ready, A3 into in-market, A4 fell out
        stage_before=["in-market", "in-market", "engaged", "in-market"],
        score_before=pd.array([94, 96, 85, 91], dtype="Int64"),
        change=["rose", None, "rose", "fell"],
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
        (ListQuery(stages=("in-market",)), ["A2", "A3"]),
        (ListQuery(stages=("in-market", "ready")), ["A1", "A2", "A3"]),
        (ListQuery(owner="Jane Park"), ["A1", "A3"]),
        (ListQuery(stages=("ready", "aware"), owner="Jane Park"), ["A1"]),
        (ListQuery(region="emea", min_score=95), ["A1"]),
        (ListQuery(q="ACME"), ["A1", "A3"]),
        (ListQuery(new=True), ["A1", "A3"]),
        (ListQuery(new=True, stages=("ready",)), ["A1"]),
        (ListQuery(new=True, region="apac"), []),
        (ListQuery(q="bluebank.com"), ["A2"]),
        (ListQuery(q="a4"), ["A4"]),  # an exact account id
        (ListQuery(sort="trend", descending=True), ["A4", "A1", "A3", "A2"]),
        (ListQuery(sort="name"), ["A3", "A1", "A2", "A4"]),
        (ListQuery(descending=True), ["A4", "A3", "A2", "A1"]),
    ],
    ids=[
        "everything-by-rank",
        "stage",
        "several-stages",
        "owner",
        "stages-and-owner",
        "region-and-min-score",
        "search-name-any-case",
        "new-this-period",
        "new-this-period-and-stage",
        "new-this-period-and-region",
        "search-domain",
        "search-account-id",
        "trend-descending",
        "name",
        "rank-descending",
    ],
)
def test_filters_search_and_order(query: ListQuery, expected: list[str]) -> None:
    assert _ids(select(_ranked(), query)) == expected


def test_list_rows_are_the_json_they_were() -> None:
    """records() was ~20 ms a page of pandas (issue 31): the same JSON from column arrays."""
    # given the list with customers (no score, no probability), a category, a name missing and
    # roles as NumPy arrays (as read from Parquet)
    ranked = _with_others().assign(
        industry=lambda f: f["industry"].astype("category"),
        name=lambda f: f["name"].where(f["account_id"] != "A4"),
        roles_missing=lambda f: f["roles_missing"].map(np.array),
    )
    # when its rows are made JSON-ready
    rows = records(ranked)
    # then they are what pandas' astype(object) made of them before, value for value and type
    page = ranked[list(LIST_COLUMNS)]
    page = page.assign(
        roles_engaged=page["roles_engaged"].map(list), roles_missing=page["roles_missing"].map(list)
    )
    before = page.astype(object).where(page.notna(), None).to_dict(orient="records")
    assert json.dumps(rows, allow_nan=False) == json.dumps(before, allow_nan=False)
    assert rows[4]["score"] is None and rows[3]["name"] is None


@pytest.mark.parametrize("sort", ["trend", "name", "score", "mql_points_max_90d"])
@pytest.mark.parametrize("descending", [False, True], ids=["ascending", "descending"])
def test_the_order_is_a_stable_sort_with_missing_last_ties_by_rank(
    sort: str, descending: bool
) -> None:
    # given a list with many ties and missing values in the sort's column and in the rank
    rng = np.random.default_rng(5)
    ranked = pd.concat([_with_others()] * 8, ignore_index=True)
    ranked["trend"] = pd.array(rng.choice([1, -2, None], len(ranked)), dtype="Int64")
    ranked["rank"] = pd.array(rng.choice([3, 1, 2, None], len(ranked)), dtype="Int64")
    ranked["_name"] = rng.choice(["b", "a", ""], len(ranked))
    # when it is listed in that order
    listed = select(ranked, ListQuery(sort=sort, descending=descending))
    # then it is pandas' stable sort of the column, missing last, ties by rank
    key = "_name" if sort == "name" else sort
    expected = ranked.sort_values(
        [key, "rank"], ascending=[not descending, True], kind="stable", na_position="last"
    )
    assert listed.index.tolist() == expected.index.tolist()


def test_an_unknown_sort_is_refused() -> None:
    with pytest.raises(ValueError, match="sort: 'probability'"):
        select(_ranked(), ListQuery(sort="probability"))


def test_an_unknown_stage_is_refused_with_the_choices() -> None:
    with pytest.raises(
        ValueError, match="stage: 'hot' is not a stage; use any of ready, in-market, "
    ):
        ListQuery(stages=("ready", "hot"))


@pytest.mark.parametrize("field", ["stages", "sort"])
def test_a_refusal_names_a_long_value_without_echoing_it(field: str) -> None:
    """Found in review: an unknown stage or sort of 60 KB came back whole in the 422."""
    value = "x" * 60_000
    with pytest.raises(ValueError) as refused:
        ListQuery(**{field: (value,) if field == "stages" else value})  # type: ignore[arg-type]
    assert "xxx..." in str(refused.value) and len(str(refused.value)) < 300


def _crm_people() -> pd.DataFrame:
    """People of A1 (missing finance) and A2 (missing champion and finance)."""
    rows = [
        # person, account, name, email, title, department, buying role
        ("P1", "A1", "Zoe Finch", "zoe@acme.io", "CFO", "finance", "finance"),
        ("P2", "A1", "Al Bent", None, "Controller", "finance", "finance"),
        ("P3", "A1", "Cy Busy", "cy@acme.io", "Finance Manager", "finance", "finance"),
        ("P4", "A1", "Di Champ", "di@acme.io", "IT Lead", "it", "champion"),
        ("P5", "A2", None, "x@bluebank.com", "Head of Ops", "operations", "champion"),
        ("P6", "A2", "Ed User", "ed@bluebank.com", "Analyst", "operations", "user"),
    ]
    columns = ["person_id", "account_id", "name", "email", "title", "department", "buying_role"]
    return pd.DataFrame(rows, columns=columns).assign(owner="Jane Park")


def _activity(engaged: dict[str, tuple[int, int]]) -> pd.DataFrame:
    """Weekly activity of the given people: person -> (events, of which email opens)."""
    return pd.DataFrame(
        {
            "account_id": "A1",
            "week": pd.Timestamp("2026-06-15", tz="UTC"),
            "person_id": list(engaged),
            "events": [e for e, _ in engaged.values()],
            "opens": [o for _, o in engaged.values()],
            "high_intent": 0,
            "topics": None,
            "title": None,
            "department": None,
            "seniority": None,
            "buying_role": None,
        },
        columns=list(ACTIVITY_COLUMNS),
    )


def test_contacts_to_reach_hold_a_missing_role_and_have_not_engaged() -> None:
    # given A1 missing finance and A2 missing champion and finance; at A1, Cy (finance) has
    # engaged, Al (finance) only opened emails, Di holds a role A1 has
    rows = select(_ranked(), ListQuery(stages=("ready", "in-market")))
    activity = _activity({"P3": (4, 1), "P2": (2, 2)})
    # when the contacts to reach are listed
    contacts = contacts_to_reach(rows, _crm_people(), activity)
    # then: A1's finance people who have not engaged (opens are no engagement), by name, then
    # A2's champion; nobody holds A2's missing finance role; A3 misses nothing
    assert list(
        zip(contacts["account_id"], contacts["person_id"], contacts["role"], strict=True)
    ) == [
        ("A1", "P2", "finance"),
        ("A1", "P1", "finance"),
        ("A2", "P5", "champion"),
    ]
    assert contacts["email"].fillna("").tolist() == ["", "zoe@acme.io", "x@bluebank.com"]


def test_csv_has_owner_status_roles_in_one_cell_and_contacts_to_reach() -> None:
    # given the accounts to work now, with the CRM's people
    rows = select(_ranked(), ListQuery(stages=("ready", "in-market")))
    contacts = contacts_to_reach(rows, _crm_people(), _activity({"P3": (4, 1)}))
    # when they are exported
    exported = pd.read_csv(io.StringIO(csv_text(rows, contacts)), keep_default_na=False)
    # then one line per account with its owner and status, roles ;-joined in one column, and
    # who to reach for the missing roles (name, email and role; a contact without a name by
    # their title)
    assert exported["account_id"].tolist() == ["A1", "A2", "A3"]
    assert exported["owner"].tolist() == ["Jane Park", "Omar Haddad", "Jane Park"]
    assert exported["status"].tolist() == ["prospect"] * 3
    assert exported["roles_missing"].tolist() == ["finance", "champion; finance", ""]
    assert exported["contacts_to_reach"].tolist() == [
        "Al Bent (finance); Zoe Finch <zoe@acme.io> (finance)",
        "Head of Ops <x@bluebank.com> (champion)",
        "",
    ]


@pytest.mark.parametrize(
    ("query", "name"),
    [
        (ListQuery(), "in-market_2026-07-01.csv"),
        (
            ListQuery(stages=("ready", "in-market"), owner="Jane Park"),
            "in-market_stage-work-now_owner-jane-park_2026-07-01.csv",
        ),
        (
            ListQuery(stages=("engaged",), region="emea", owner="Lucía Romero", min_score=80),
            "in-market_stage-engaged_region-emea_owner-lucia-romero_min-score-80_2026-07-01.csv",
        ),
        (ListQuery(q='acme "robotics"'), "in-market_search-acme-robotics_2026-07-01.csv"),
    ],
    ids=["everything", "work-now-for-an-owner", "several-filters", "search"],
)
def test_the_export_is_named_after_its_filters(query: ListQuery, name: str) -> None:
    assert export_name(query, str(AS_OF)) == name


def test_stage_counts_follow_the_other_filters() -> None:
    # given the list filtered to EMEA, Jane Park's accounts and the ready stage
    query = ListQuery(stages=("ready",), region="emea", owner="Jane Park")
    # when the summary is asked for the same filters
    result = summary(_ranked(), query)
    # then the stages count Jane's EMEA accounts (A1 ready, A3 in-market), whatever stage is
    # picked, and so do the accounts to work now; the filters' choices are the whole list's
    assert result["stages"] == {"ready": 1, "in-market": 1, "engaged": 0, "aware": 0, "cold": 0}
    assert result["matching"] == 2 and result["worked_now"] == 2
    assert result["owners"] == ["Jane Park", "Omar Haddad"]
    assert result["regions"] == ["apac", "emea", "latam"]


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
    assert _ids(select(ranked, ListQuery(stages=("customer",)))) == ["C1"]
    assert _ids(select(ranked, ListQuery(min_score=1))) == ["A1", "A2", "A3", "A4"]
    customers = select(ranked, ListQuery(stages=("customer",)))
    no_activity = pd.DataFrame(columns=ACTIVITY_COLUMNS)
    assert ",customer," in csv_text(customers, contacts_to_reach(customers, None, no_activity))


def test_the_model_card_says_in_words_how_many_later_wins_were_flagged() -> None:
    # given a model's test figures: the later-won deals each method had in its top 10%
    card = {
        "test_metrics": {"recall_at_10": 0.8, "lift_at_10": 4.26},
        "mql_test_metrics": {"recall_at_10": 0.54, "lift_at_10": 2.1},
        "won_deals": {
            "deals": 120.0,
            "model": 86.0,
            "mql_rule": 51.0,
            "model_days": 34.2,
            "mql_rule_days": 12.0,
        },
    }
    # when the card is put in words, then a marketer reads counts of deals, not metrics
    assert card_in_words(card) == [
        "Of the 120 deals won in the test window, 86 were at accounts in our top 10% "
        "beforehand (a warning of 34 days a deal on average); the MQL rule had 51 of them "
        "(12 days).",
        "Accounts in our top 10% went on to win 4.3 times as often as the average account.",
    ]
    # and without the training run's deal counts, the shares of snapshots before a win
    assert card_in_words({**card, "won_deals": None})[0] == (
        "Of the snapshots before a later win, 80% had the account in our top 10%; 54% in the "
        "MQL rule's."
    )


def test_the_model_card_table_has_a_column_per_method_and_reads_older_models() -> None:
    # given a model with the whole comparison, and one trained before it was kept
    method = {
        "metrics": {"roc_auc": 0.8, "pr_auc": 0.2, "recall_at_10": 0.6, "lift_at_10": 6.0},
        "intervals": {"recall_at_10": [0.5, 0.7]},
        "vs_mql": 1.2,
        "vs_mql_interval": [1.05, 1.4],
        "lead_days": 37.4,
        "lead_days_interval": [29.0, 46.1],
        "deals_flagged": 30,
        "deals_found": 0.732,
        "deals_found_interval": [0.6, 0.85],
    }
    full = {"comparison": {"mql_rule": method, "model": method}, "lead_time_deals": 41}
    older = {"test_metrics": method["metrics"], "mql_test_metrics": method["metrics"]}
    # when the card's tables are made
    table, old = comparison_table(full), comparison_table(older)
    # then methods come in the comparison's order, each value with its interval, and the
    # later wins and lead days follow; an older model shows model and MQL rule only
    assert table["columns"] == ["model", "MQL rule"]
    rows = {row["name"]: row["cells"] for row in table["rows"]}
    assert rows["Recall in top 10%"] == ["0.600 [0.500–0.700]"] * 2
    assert rows["ROC AUC"] == ["0.800"] * 2
    assert rows["Lead days (mean over 41 later wins)"] == ["37.4 [29.0–46.1]"] * 2
    assert rows["Recall in top 10%, x the MQL rule's"] == ["1.20 [1.05–1.40]"] * 2
    assert rows["Later-won deals on the list beforehand"] == ["0.732 [0.600–0.850]"] * 2
    assert old["columns"] == ["model", "MQL rule"] and len(old["rows"]) == 4
