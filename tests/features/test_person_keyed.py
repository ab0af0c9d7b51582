"""Tables keyed by a lead or contact: deals (converted leads, deal-contact associations) get
their account through people, unknown people are counted, and nothing leaks from the future."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from features.families import build_features
from features.io import RawSource
from features.settings import DataSettings
from features.validation import Dataset, load_dataset, validate
from tests.features.test_validation import EXTRACT, _base


def _validate(tables: dict[str, pd.DataFrame]) -> Dataset:
    raw = {t: [RawSource(t, f"{t}.csv", f)] for t, f in tables.items()}
    return validate(raw, extracted_at=EXTRACT, max_bad_share=1.0)


def test_deals_keyed_by_contact_id_map_to_the_contacts_accounts(tmp_path: Path) -> None:
    # given a CRM export whose deals name a contact, not a company, one of them unknown
    pd.DataFrame({"Company ID": ["C1", "C2"], "Company": ["Acme", "Globex"]}).to_csv(
        tmp_path / "companies.csv", index=False
    )
    pd.DataFrame({"Contact ID": ["K1", "K2", "K3"], "Company ID": ["C1", "C2", "C2"]}).to_csv(
        tmp_path / "contacts.csv", index=False
    )
    pd.DataFrame(
        {"Contact ID": ["K1"], "Activity Date": ["05/02/2024"], "Activity": ["Web Visit"]}
    ).to_csv(tmp_path / "activities.csv", index=False)
    pd.DataFrame(
        {
            "Deal ID": ["D1", "D2", "D3"],
            "Associated Contact": ["K1", "K3", "K404"],
            "Create Date": ["06/01/2024", "07/15/2024", "08/01/2024"],
            "Deal Stage": ["Closed Won", "Open", "Open"],
        }
    ).to_csv(tmp_path / "deals.csv", index=False)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        """
[accounts]
file = "companies.csv"
columns = { account_id = "Company ID", name = "Company" }
[people]
file = "contacts.csv"
columns = { person_id = "Contact ID", account_id = "Company ID" }
[events]
file = "activities.csv"
columns = { person_id = "Contact ID", timestamp = "Activity Date", event_type = "Activity" }
formats = { timestamp = "%m/%d/%Y" }
values.event_type = { "Web Visit" = "page_view" }
[opportunities]
file = "deals.csv"
formats = { created_at = "%m/%d/%Y" }
values.status = { "Closed Won" = "won" }
[opportunities.columns]
opportunity_id = "Deal ID"
person_id = "Associated Contact"
created_at = "Create Date"
status = "Deal Stage"
""",
        encoding="utf-8",
    )
    # when it is validated through the mapping
    ds = load_dataset(tmp_path, DataSettings(mapping=mapping, extracted_at=EXTRACT))
    # then each deal has its contact's account, and the unknown contact's deal is counted
    assert ds.opportunities.set_index("opportunity_id")["account_id"].to_dict() == {
        "D1": "C1",
        "D2": "C2",
    }
    deals = ds.report.tables["opportunities"]
    assert deals.rejects == {"unknown_person": 1}
    assert deals.examples["unknown_person"] == "deals.csv row 3"
    assert deals.reconciles
    assert "rejected opportunities: unknown_person = 1  e.g. deals.csv row 3" in (
        ds.report.render()
    )


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda f: f.assign(person_id=[None, "P3"]), "no_account_or_person"),
        (lambda f: f.assign(person_id=["P404", "P3"]), "unknown_person"),
    ],
    ids=["neither", "unknown-person"],
)
def test_a_deal_with_no_account_and_no_known_person_is_rejected(
    mutate: Callable[[pd.DataFrame], pd.DataFrame], reason: str
) -> None:
    tables = _base()
    tables["opportunities"] = mutate(tables["opportunities"].drop(columns="account_id"))
    ds = _validate(tables)
    assert ds.report.tables["opportunities"].rejects == {reason: 1}


def _won_before(people_created: str, as_of: str, *, by_person: bool) -> int:
    """opportunities_won_before of account A1 at ``as_of``: deal O1 (won, closed 2024-08-01),
    keyed by its account or by contact P1 of A1, entered in the CRM at ``people_created``."""
    tables = _base()
    tables["people"]["created_at"] = [people_created, "2023-01-01", "2023-01-01"]
    if by_person:
        tables["opportunities"] = (
            tables["opportunities"].drop(columns="account_id").assign(person_id=["P1", "P3"])
        )
    ds = _validate(tables)
    assert ds.report.total_rejected == 0
    snapshots = pd.DataFrame({"account_id": ["A1"], "as_of": [pd.Timestamp(as_of, tz="UTC")]})
    features = build_features(
        snapshots, ds.accounts, ds.people, ds.events, ds.intent, ds.opportunities
    )
    return int(features["opportunities_won_before"].iloc[0])


def test_a_deal_through_a_contact_counts_once_the_contact_is_known() -> None:
    # given a won deal tied to its account only through a contact
    # then, with the contact known from before, it counts as a deal keyed by the account does
    assert _won_before("2023-01-01", "2024-09-01", by_person=True) == 1
    assert _won_before("2023-01-01", "2024-09-01", by_person=False) == 1
    # and a snapshot before the contact entered the CRM cannot place the deal at the account
    assert _won_before("2024-10-01", "2024-09-01", by_person=True) == 0
    assert _won_before("2024-10-01", "2024-11-01", by_person=True) == 1
    # while a deal keyed by its account is known from its own dates
    assert _won_before("2024-10-01", "2024-09-01", by_person=False) == 1
