"""Vocabulary columns: an unknown value is never silently kept, nulled or turned into `other`;
it is counted, named with its rows and an example row, and the allowed values are listed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.io import RawSource
from features.validation import Dataset, validate
from features.vocabularies import VOCABULARIES, Vocabulary, vocabulary_markdown
from tests.features.test_validation import EXTRACT, _base

ROOT = Path(__file__).resolve().parents[2]


def _validate(tables: dict[str, pd.DataFrame]) -> Dataset:
    raw = {t: [RawSource(t, f"{t}.csv", f)] for t, f in tables.items()}
    return validate(raw, extracted_at=EXTRACT, max_bad_share=1.0)


def _hubspot_like() -> dict[str, pd.DataFrame]:
    """The values users met: a seniority 'Executive', an activity 'Meeting Booked', a role
    'Economic Buyer' twice, a deal stage 'Qualified To Buy'."""
    tables = _base()
    tables["people"]["seniority"] = ["Executive", "Manager", "Executive"]
    tables["people"]["buying_role"] = ["Economic Buyer", "champion", "economic buyer"]
    tables["events"].loc[1, "event_type"] = "Meeting Booked"
    tables["opportunities"].loc[1, "status"] = "Qualified To Buy"
    return tables


def test_unknown_values_are_counted_named_and_treated_as_documented() -> None:
    # given an export with values outside the vocabularies
    # when it is validated
    ds = _validate(_hubspot_like())
    people = ds.report.tables["people"]
    # then an unknown seniority is not kept as if it were a level: null, counted, named
    assert ds.people["seniority"].isna().tolist() == [True, False, True]
    assert people.warnings["unknown_seniority_set_to_null"] == 2
    assert people.unknown_values["seniority"] == [
        {"value": "Executive", "rows": 2, "example": "people.csv row 1"}
    ]
    # spellings of one value are one entry, shown as first spelled
    assert people.unknown_values["buying_role"] == [
        {"value": "Economic Buyer", "rows": 2, "example": "people.csv row 1"}
    ]
    # an unknown activity is kept for events_other_type_90d, but said
    events = ds.report.tables["events"]
    assert events.warnings == {"unknown_event_type_counted_as_other": 1}
    assert events.unknown_values["event_type"][0]["value"] == "Meeting Booked"
    assert "meeting_booked" in ds.events["event_type"].tolist()
    # an unknown deal status rejects the deal, and the report names the status
    deals = ds.report.tables["opportunities"]
    assert deals.rejects == {"invalid_status": 1}
    assert deals.unknown_values["status"] == [
        {"value": "Qualified To Buy", "rows": 1, "example": "opportunities.csv row 2"}
    ]
    assert ds.report.reconciles


def test_the_printed_report_names_values_counts_examples_and_allowed_list() -> None:
    rendered = _validate(_hubspot_like()).report.render()
    assert (
        "unknown opportunities.status (invalid_status): 'Qualified To Buy' 1 "
        "(opportunities.csv row 2)"
    ) in rendered
    assert "allowed: open, won, lost; other values are rejected" in rendered
    assert "'Executive' 2 (people.csv row 1)" in rendered
    assert "allowed: individual_contributor, manager, director, vp, c_level" in rendered
    assert "'Meeting Booked' 1 (events.csv row 2)" in rendered
    assert "map a spelling with values.event_type in the mapping file" in rendered


def test_unknown_values_of_parts_add_up() -> None:
    # given the same export validated as two parts (as events are, bucket by bucket)
    first, second = _validate(_hubspot_like()), _validate(_hubspot_like())
    # when the reports are merged
    merged = first.report.merge(second.report).tables["people"]
    # then each value's rows add up, keeping the first example
    assert merged.unknown_values["seniority"] == [
        {"value": "Executive", "rows": 4, "example": "people.csv row 1"}
    ]
    assert (
        type(first.report).from_dict(first.report.to_dict()).tables["people"].unknown_values
        == first.report.tables["people"].unknown_values
    )


@pytest.mark.parametrize("voc", VOCABULARIES, ids=[v.name for v in VOCABULARIES])
def test_a_value_of_every_vocabulary_passes_and_an_unknown_one_is_counted(
    voc: Vocabulary,
) -> None:
    tables = _base()
    frame = tables[voc.table]
    frame[voc.column] = voc.values[0]
    frame.loc[0, voc.column] = "Not A Value"
    ds = _validate(tables)
    report = ds.report.tables[voc.table]
    counted = report.rejects if voc.unknown == "rejected" else report.warnings
    assert counted == {voc.counter: 1}
    assert report.unknown_values[voc.column][0]["value"] == "Not A Value"


@pytest.mark.parametrize("doc", ["README.md", "docs/data-contract.md"])
def test_the_docs_list_the_vocabularies_as_defined(doc: str) -> None:
    assert vocabulary_markdown() in (ROOT / doc).read_text(encoding="utf-8")
