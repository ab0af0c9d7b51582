"""CRM import files of the ranked list: a plain CSV, one header row, whose columns are named as
each CRM's import maps them, so the scores land in account fields sales already works in.

- ``salesforce``: the Account object's API field names, as Data Loader, ``sf data update bulk``
  (Bulk API 2.0) and the Data Import Wizard map them. The match key is the account's record
  ``Id`` (the CRM export's account id): an update, so an id Salesforce does not hold fails
  rather than creating a duplicate account. No standard field is written (the name and domain
  go to ``InMarket_Account_Name__c`` and ``InMarket_Domain__c``, for people to check against),
  so an import never overwrites what the CRM holds. The scores go to custom fields
  (``InMarket_Score__c`` ...) an admin creates once (docs/alerts-and-exports.md lists them).
- ``hubspot``: company property internal names, as HubSpot's import maps column headers; the
  company domain name (``domain``) is the key HubSpot deduplicates companies by, and
  ``inmarket_account_id`` a custom property that can be made a unique identifier.

The owner is a text field of its own, never the CRM's owner (``OwnerId``,
``hubspot_owner_id``): an import of scores must not reassign accounts. Every text cell is inert
(``features.io.csv_text``); numbers stay numbers.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import pandas as pd

from features.io import csv_text

Crm = Literal["salesforce", "hubspot"]
CRMS: tuple[str, ...] = get_args(Crm)
# what each column holds -> its name in each CRM's import, in the file's order
FIELDS: dict[str, dict[str, str]] = {
    "salesforce": {
        "account_id": "Id",
        "domain": "InMarket_Domain__c",
        "name": "InMarket_Account_Name__c",
        "score": "InMarket_Score__c",
        "stage": "InMarket_Stage__c",
        "trend": "InMarket_Trend__c",
        "new_this_period": "InMarket_New_This_Period__c",
        "top_reasons": "InMarket_Top_Reasons__c",
        "roles_missing": "InMarket_Missing_Roles__c",
        "contacts_to_reach": "InMarket_Contacts_To_Reach__c",
        "owner": "InMarket_Owner__c",
        "as_of": "InMarket_Scored_On__c",
    },
    "hubspot": {
        "account_id": "inmarket_account_id",
        "domain": "domain",
        "name": "name",
        "score": "inmarket_score",
        "stage": "inmarket_stage",
        "trend": "inmarket_trend",
        "new_this_period": "inmarket_new_this_period",
        "top_reasons": "inmarket_top_reasons",
        "roles_missing": "inmarket_missing_roles",
        "contacts_to_reach": "inmarket_contacts_to_reach",
        "owner": "inmarket_owner",
        "as_of": "inmarket_scored_on",
    },
}
# the key each import matches existing records on: said when a file is written
MATCH_KEYS = {
    "salesforce": "update matched on the account's record Id",
    "hubspot": "companies matched on their domain (domain)",
}


def crm_table(rows: pd.DataFrame, contacts: pd.DataFrame, crm: Crm) -> pd.DataFrame:
    """The list's ``rows`` (in their order) as ``crm``'s import columns: scores and trends as
    whole numbers, the scoring's date as YYYY-MM-DD, new this period as true/false, missing
    roles in words, the contacts to reach (``serving.review.contacts_to_reach`` of the rows)."""
    # imported here: `inmarket` takes this module's CRMS for its --format choices, and the
    # review's imports (the model's) would slow every command's start by seconds
    from serving.batch import CELL_SEPARATOR
    from serving.review import contact_cells, new_this_period

    if crm not in FIELDS:
        raise ValueError(f"format: '{crm}' is not a CRM import; use one of {', '.join(CRMS)}")
    table = pd.DataFrame(
        {
            "account_id": rows["account_id"].astype("str"),
            "domain": rows["domain"],
            "name": rows["name"],
            "score": rows["score"].astype("Float64").round().astype("Int64"),
            "stage": rows["stage"],
            "trend": rows["trend"].astype("Float64").round().astype("Int64"),
            "new_this_period": np.where(new_this_period(rows), "true", "false"),
            "top_reasons": rows["top_reasons"],
            "roles_missing": rows["roles_missing"].map(CELL_SEPARATOR.join).str.replace("_", " "),
            "contacts_to_reach": contact_cells(rows, contacts),
            "owner": rows["owner"],
            "as_of": pd.to_datetime(rows["as_of"], utc=True).dt.strftime("%Y-%m-%d"),
        }
    )
    return table.rename(columns=FIELDS[crm])[list(FIELDS[crm].values())]


def crm_csv(rows: pd.DataFrame, contacts: pd.DataFrame, crm: Crm) -> str:
    """``crm_table`` as CSV text, one header row, every text cell inert."""
    return csv_text(crm_table(rows, contacts, crm))
