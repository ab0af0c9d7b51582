"""Derivation rules: event types from URLs, seniority, department and buying role from job
titles; shipped as a data file, extended in the mapping file, counted in the report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.errors import ConfigError
from features.mapping import Mapping
from features.rules import rules_markdown, shipped_rules
from features.settings import DataSettings
from features.validation import Dataset, load_dataset
from inmarket.crm_example import (
    BLOG_PAGES,
    HUBSPOT_MAPPING_NAME,
    UNQUALIFIED_STAGE,
    VENDOR_SITE,
    hubspot_export,
    mapping_file,
)
from tests.features.test_validation import EXTRACT

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hubspot_dir(world_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hubspot")
    hubspot_export(world_dir, out, seed=2)
    return out


@pytest.fixture(scope="module")
def hubspot(hubspot_dir: Path) -> Dataset:
    return load_dataset(hubspot_dir, DataSettings(mapping=mapping_file(HUBSPOT_MAPPING_NAME)))


def test_the_hubspot_export_says_only_urls_and_titles(hubspot_dir: Path) -> None:
    contacts = pd.read_csv(hubspot_dir / "contacts.csv")
    assert set(contacts.columns) == {
        "Record ID",
        "Associated Company ID",
        "Job Title",
        "Create Date",
    }
    activities = pd.read_csv(hubspot_dir / "activities.csv")
    assert "pricing_page" not in set(activities["Activity Type"])
    assert activities["Page URL"].str.endswith("/pricing").any()
    assert "Associated Contact ID" in pd.read_csv(hubspot_dir / "deals.csv").columns


def test_urls_give_the_event_types_the_world_had(world_dir: Path, hubspot: Dataset) -> None:
    # given a HubSpot-style export whose web visits are all "Page View" with a URL
    world = pd.read_parquet(world_dir / "events.parquet").set_index("event_id")
    mapped = hubspot.events.set_index("event_id")["event_type"]
    truth = world.loc[mapped.index, "event_type"]
    # then with the shipped rules pricing, comparison and demo pages are what they were
    for kind in ("pricing_page", "comparison_page", "trial_signup", "case_study_view"):
        assert (mapped[truth == kind] == kind).all(), kind
    demo = mapped[truth == "demo_request"]
    assert set(demo) == {"demo_request", "meeting_booked"}  # meetings: an unmapped activity
    assert (mapped[truth == "page_view"] == "page_view").all()


def test_titles_give_department_seniority_and_role(world_dir: Path, hubspot: Dataset) -> None:
    people = hubspot.people.set_index("person_id")
    cfo = people[people["title"] == "Chief Financial Officer"]
    assert len(cfo) > 0
    assert set(cfo["department"]) == {"finance"}
    assert set(cfo["seniority"]) == {"c_level"}
    assert set(cfo["buying_role"]) == {"finance"}
    # and the derived seniorities are the world's (its titles are made from them)
    world = pd.read_parquet(world_dir / "people.parquet").set_index("person_id")
    assert (people["seniority"] == world.loc[people.index, "seniority"]).all()


def test_the_report_counts_what_was_derived_and_names_what_is_left_unknown(
    hubspot_dir: Path, hubspot: Dataset
) -> None:
    activities = pd.read_csv(hubspot_dir / "activities.csv")
    contacts = pd.read_csv(hubspot_dir / "contacts.csv")
    deals = pd.read_csv(hubspot_dir / "deals.csv")
    people = hubspot.report.tables["people"]
    assert people.derived["seniority derived from Job Title"] == len(contacts)
    events = hubspot.report.tables["events"]
    pages = activities["Page URL"].dropna().str.removeprefix(VENDOR_SITE)
    assert events.derived["event_type derived from Page URL"] == (~pages.isin(BLOG_PAGES)).sum()
    # the values no mapping names: each with its rows, its first row and the allowed values
    meetings = activities.index[activities["Activity Type"] == "Meeting Booked"]
    assert events.unknown_values["event_type"] == [
        {
            "value": "Meeting Booked",
            "rows": len(meetings),
            "example": f"activities.csv row {meetings[0] + 1}",
        }
    ]
    stages = deals.index[deals["Deal Stage"] == UNQUALIFIED_STAGE]
    deals_report = hubspot.report.tables["opportunities"]
    assert deals_report.unknown_values["status"][0]["rows"] == len(stages)
    rendered = hubspot.report.render()
    assert f"people.seniority derived from Job Title: {len(contacts):,}" in rendered
    assert "'Meeting Booked'" in rendered and "allowed: page_view, pricing_page" in rendered
    assert hubspot.report.reconciles


def test_deals_keyed_by_contact_land_at_their_accounts(world_dir: Path, hubspot: Dataset) -> None:
    world = pd.read_parquet(world_dir / "opportunities.parquet").set_index("opportunity_id")
    mapped = hubspot.opportunities.set_index("opportunity_id")
    assert (mapped["account_id"] == world.loc[mapped.index, "account_id"]).all()
    deleted = (hubspot.rejects["reason"] == "unknown_person").sum()
    assert deleted > 0
    assert hubspot.report.tables["opportunities"].rejects["unknown_person"] == deleted


def _people_mapping(tmp_path: Path, extra: str = "") -> Path:
    """A tiny export: people with titles (one with a department given), events of a page view
    with a URL, and a mapping deriving from both, plus ``extra`` TOML."""
    pd.DataFrame({"Id": ["A1"], "Name": ["Acme"]}).to_csv(tmp_path / "accounts.csv", index=False)
    pd.DataFrame(
        {
            "Id": ["P1", "P2", "P3"],
            "Company": ["A1"] * 3,
            "Title": ["Chief Financial Officer", "Head of Sales", "Chief Financial Officer"],
            "Department": [None, None, "Sales"],
        }
    ).to_csv(tmp_path / "people.csv", index=False)
    pd.DataFrame(
        {
            "Contact": ["P1", "P1", "P1"],
            "When": ["2024-05-01"] * 3,
            "Type": ["Page View", "Pricing Page", "Page View"],
            "URL": ["https://v.com/pricing", "https://v.com/demo", "https://v.com/blog"],
        }
    ).to_csv(tmp_path / "events.csv", index=False)
    pd.DataFrame(
        {"Id": ["O1"], "Company": ["A1"], "Created": ["2024-06-01"], "Status": ["open"]}
    ).to_csv(tmp_path / "deals.csv", index=False)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        f"""
[accounts]
file = "accounts.csv"
columns = {{ account_id = "Id", name = "Name" }}
[people]
file = "people.csv"
columns = {{ person_id = "Id", account_id = "Company", title = "Title", department = "Department" }}
derive = {{ department = "Title", seniority = "Title", buying_role = "Title" }}
[events]
file = "events.csv"
columns = {{ person_id = "Contact", timestamp = "When", event_type = "Type" }}
derive = {{ event_type = "URL" }}
[opportunities]
file = "deals.csv"
columns = {{ opportunity_id = "Id", account_id = "Company", created_at = "Created" }}
constants = {{ status = "open" }}
{extra}
""",
        encoding="utf-8",
    )
    return mapping


def test_values_of_the_data_win_over_derived_ones(tmp_path: Path) -> None:
    ds = load_dataset(
        tmp_path, DataSettings(mapping=_people_mapping(tmp_path), extracted_at=EXTRACT)
    )
    people = ds.people.set_index("person_id")
    assert people.loc["P1", "department"] == "finance"  # derived: none given
    assert people.loc["P3", "department"] == "sales"  # given: kept
    assert people.loc["P3", "seniority"] == "c_level"
    # a page view's URL says which page it was; a type given otherwise stays
    assert ds.events["event_type"].tolist() == ["pricing_page", "pricing_page", "page_view"]
    assert ds.report.tables["people"].derived["department derived from Title"] == 2


def test_a_mapping_extends_and_overrides_the_shipped_rules(tmp_path: Path) -> None:
    # given the shipped rules, a "Head of" is a director
    shipped = load_dataset(
        tmp_path, DataSettings(mapping=_people_mapping(tmp_path), extracted_at=EXTRACT)
    )
    assert shipped.people.set_index("person_id").loc["P2", "seniority"] == "director"
    # when the mapping file says a head of is a VP, and turns the shipped pricing pattern off
    pricing = next(
        p
        for p, v in shipped_rules()[("events", "event_type")].patterns.items()
        if v == "pricing_page"
    )
    extra = f"""
[rules.people.seniority]
'\\bhead of\\b' = "vp"
[rules.events.event_type]
'{pricing}' = ""
"""
    ds = load_dataset(
        tmp_path, DataSettings(mapping=_people_mapping(tmp_path, extra), extracted_at=EXTRACT)
    )
    # then its patterns win, and the pattern turned off derives nothing
    assert ds.people.set_index("person_id").loc["P2", "seniority"] == "vp"
    assert ds.events["event_type"].tolist() == ["page_view", "pricing_page", "page_view"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            '[rules.people.seniority]\n"chief" = "boss"',
            r"'chief' gives 'boss', not one of individual_contributor",
        ),
        (
            '[rules.people.seniority]\n"chief(" = "c_level"',
            r"pattern 'chief\(' is not a regular expression",
        ),
        ('[rules.people.title]\n"x" = "y"', r"rules.people.title: not a vocabulary column"),
    ],
    ids=["value-outside-vocabulary", "bad-pattern", "not-a-vocabulary"],
)
def test_a_wrong_rule_is_a_config_error_naming_it(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Mapping.load(_people_mapping(tmp_path, extra))


def test_deriving_a_column_no_rule_derives_is_refused(tmp_path: Path) -> None:
    mapping = _people_mapping(tmp_path)
    text = mapping.read_text(encoding="utf-8").replace(
        'constants = { status = "open" }', 'derive = { status = "Created" }'
    )
    mapping.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"derive names \['status'\], which no rule derives"):
        Mapping.load(mapping)


@pytest.mark.parametrize(
    ("title", "seniority", "department", "role"),
    [
        ("Chief Financial Officer", "c_level", "finance", "finance"),
        ("Vice President, Finance", "vp", "finance", "finance"),
        ("President & CEO", "c_level", "executive", "decision_maker"),
        ("VP Marketing", "vp", "marketing", "decision_maker"),
        ("Director of Engineering", "director", "engineering", "technical_evaluator"),
        ("Marketing Operations Manager", "manager", "marketing", None),
        ("Account Executive", "individual_contributor", "sales", None),
        ("Board Member", None, None, None),
    ],
)
def test_shipped_title_rules(
    title: str, seniority: str | None, department: str | None, role: str | None
) -> None:
    rules, titles = shipped_rules(), pd.Series([title])
    derived = [
        rules[("people", c)].derive(titles).iloc[0]
        for c in ("seniority", "department", "buying_role")
    ]
    assert [None if pd.isna(v) else v for v in derived] == [seniority, department, role]


def test_the_docs_list_the_shipped_rules() -> None:
    assert rules_markdown() in (ROOT / "docs/data-contract.md").read_text(encoding="utf-8")
