"""CRM import files of the ranked list (serving/export.py): the columns each import maps, one
header row, text inert, numbers as numbers."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest

from serving.export import FIELDS, crm_csv, crm_table
from serving.review import ListQuery, contacts_to_reach, select
from tests.serving.test_review import _ranked

HYPERLINK = '=HYPERLINK("http://x","y")'


def _people() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "person_id": ["p1"],
            "account_id": ["A1"],
            "name": ["Ana Diaz"],
            "email": ["ana@acme.io"],
            "owner": [None],
            "title": ["CFO"],
            "department": ["finance"],
            "buying_role": ["finance"],
        }
    )


NO_ACTIVITY = pd.DataFrame({"person_id": [], "events": [], "opens": []})


def _rows(query: ListQuery | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    ranked = _ranked()
    ranked.loc[ranked["account_id"] == "A3", "name"] = HYPERLINK
    ranked.loc[ranked["account_id"] == "A3", "top_reasons"] = "-1+1|cmd"
    rows = select(ranked, query or ListQuery())
    return rows, contacts_to_reach(rows, _people(), NO_ACTIVITY)


@pytest.mark.parametrize("crm", ["salesforce", "hubspot"])
def test_the_columns_are_the_imports_and_the_rows_the_filtered_view(crm: str) -> None:
    # given the accounts new this period (A1 and A3)
    rows, contacts = _rows(ListQuery(new=True))
    # when exported for the CRM
    read = list(csv.reader(io.StringIO(crm_csv(rows, contacts, crm), newline="")))  # type: ignore[arg-type]
    # then one header row, named as the import maps them, then exactly those rows in order
    header, *body = read
    assert header == list(FIELDS[crm].values())
    key = FIELDS[crm]["account_id"]
    assert [dict(zip(header, row, strict=True))[key] for row in body] == ["A1", "A3"]


def test_salesforce_cells_are_typed_for_the_import_and_text_is_inert() -> None:
    rows, contacts = _rows()
    table = crm_table(rows, contacts, "salesforce").set_index("Id")
    a1, a2 = table.loc["A1"], table.loc["A2"]
    assert (a1["InMarket_Account_Name__c"], a1["InMarket_Domain__c"]) == (
        "Acme Robotics",
        "acme.io",
    )
    assert a1["InMarket_Score__c"] == 99
    assert (a1["InMarket_Stage__c"], a1["InMarket_New_This_Period__c"]) == ("ready", "true")
    assert a2["InMarket_New_This_Period__c"] == "false" and a2["InMarket_Trend__c"] == -2
    assert a1["InMarket_Missing_Roles__c"] == "finance"
    assert a1["InMarket_Contacts_To_Reach__c"] == "Ana Diaz <ana@acme.io> (finance)"
    assert a2["InMarket_Missing_Roles__c"] == "champion; finance"
    assert (a1["InMarket_Owner__c"], a1["InMarket_Scored_On__c"]) == ("Jane Park", "2026-07-01")
    # the file: the formula inert, the negative trend a number
    text = crm_csv(rows, contacts, "salesforce")
    lines = {line.split(",", 1)[0]: line for line in text.split("\r\n")[1:] if line}
    assert lines["A3"].startswith('A3,acmefoods.com,"\'=HYPERLINK(""http://x"",""y"")",93,')
    assert ",'-1+1|cmd," in lines["A3"] and ",95,in-market,-2,false," in lines["A2"]


def test_an_unknown_format_is_refused_by_name() -> None:
    rows, contacts = _rows()
    with pytest.raises(ValueError, match=r"format: 'pipedrive' is not a CRM import; use one of"):
        crm_table(rows, contacts, "pipedrive")  # type: ignore[arg-type]
