"""A worked example of bringing your own data: a synthetic world re-shaped as a CRM export.

The export looks like what a CRM and a marketing-automation tool hand over: companies,
contacts (with a company id) and leads (email only), touches keyed by lead/contact id,
anonymous web sessions resolved to a company domain, weekly intent by domain, and deals with
CRM stage names and day-first dates. ``examples/crm_mapping.toml`` loads it into the contract.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from features.leftovers import scratch_dir
from inmarket.synthetic import WorldSpec, generate_world

MAPPING_NAME = "crm_mapping.toml"
TOUCH_TYPES = {
    "email_open": "Email Opened",
    "email_click": "Email Clicked",
    "webinar_attended": "Webinar Attended",
    "form_fill": "Form Submitted",
    "content_download": "Content Downloaded",
    "demo_request": "Demo Requested",
    "trial_signup": "Trial Started",
    "page_view": "Web Visit",
    "pricing_page": "Pricing Page Visit",
    "comparison_page": "Comparison Page Visit",
    "case_study_view": "Case Study Visit",
    "review_site_visit": "Review Site Visit",
    "ad_click": "Ad Clicked",
}
PAGE_CATEGORIES = {
    "page_view": "Blog / Product",
    "pricing_page": "Pricing",
    "comparison_page": "Comparison",
    "case_study_view": "Case Study",
    "content_download": "Gated Content",
    "form_fill": "Form",
    "demo_request": "Demo",
    "trial_signup": "Trial",
    "review_site_visit": "Review Site",
    "ad_click": "Paid Social",
}
ROLE_SPELLINGS = {
    "decision_maker": "Decision Maker",
    "champion": "Champion",
    "influencer": "Influencer",
    "technical_evaluator": "Technical Evaluator",
    "finance": "Finance",
    "user": "End User",
    "other": "Other",
}
STAGES = {"won": "Closed Won", "lost": "Closed Lost"}
DEAL_TYPES = {"new_business": "New Business", "renewal": "Renewal", "expansion": "Upsell"}


def _title(values: pd.Series) -> pd.Series:
    return values.str.replace("_", " ").str.title()


def crm_export(world: Path, out: Path, seed: int = 0) -> None:
    """Write the CRM-shaped export of the world in ``world`` to ``out``."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    accounts = pd.read_parquet(world / "accounts.parquet")
    pd.DataFrame(
        {
            "Company ID": accounts["account_id"],
            "Company Name": accounts["name"],
            "Website": "https://www." + accounts["domain"] + "/",
            "Industry": _title(accounts["industry"]),
            "Employees": accounts["employee_count"],
            "Region": _title(accounts["region"]),
            "Created Date": accounts["created_at"].dt.strftime("%m/%d/%Y"),
        }
    ).to_csv(out / "companies.csv", index=False)

    people = pd.read_parquet(world / "people.parquet")
    is_lead = rng.random(len(people)) < 0.4
    common = {
        "Job Title": people["title"],
        "Department": _title(people["department"]),
        "Seniority Level": _title(people["seniority"]),
        "Buying Role": people["buying_role"].map(ROLE_SPELLINGS),
        "Created Date": people["created_at"].dt.strftime("%m/%d/%Y"),
    }
    contacts = pd.DataFrame(
        {"Contact ID": people["person_id"], "Company ID": people["account_id"], **common}
    )
    leads = pd.DataFrame(
        {"Lead ID": people["person_id"], "Email": people["email"].str.upper(), **common}
    )
    contacts[~is_lead].to_csv(out / "contacts.csv", index=False)
    leads[is_lead].to_csv(out / "leads.csv", index=False)

    events = pd.read_parquet(world / "events.parquet")
    known = events["person_id"].notna()
    touches = events[known]
    pd.DataFrame(
        {
            "Touch ID": touches["event_id"],
            "Lead or Contact ID": touches["person_id"],
            "Touch Date": touches["timestamp"].dt.strftime("%m/%d/%Y %H:%M:%S"),
            "Touch Type": touches["event_type"].map(TOUCH_TYPES),
            "Channel": touches["channel"],
            "Campaign Topic": _title(touches["topic"]),
        }
    ).to_csv(out / "touches.csv", index=False)
    sessions = events[~known]
    domains = accounts.set_index("account_id")["domain"]
    pd.DataFrame(
        {
            "Session ID": sessions["event_id"],
            "Company Domain": sessions["account_id"].map(domains),
            "Session Start": sessions["timestamp"]
            .dt.tz_convert("Europe/Berlin")
            .dt.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "Page Category": sessions["event_type"].map(PAGE_CATEGORIES),
            "Source": sessions["channel"],
            "Content Topic": _title(sessions["topic"]),
        }
    ).to_csv(out / "web_sessions.csv", index=False)

    intent = pd.read_parquet(world / "intent.parquet")
    pd.DataFrame(
        {
            "Company Domain": intent["account_id"].map(domains),
            "Week": pd.to_datetime(intent["date"]).dt.strftime("%Y-%m-%d"),
            "Topic": _title(intent["topic"]),
            "Composite Score": intent["score"],
        }
    ).to_csv(out / "intent_weekly.csv", index=False)

    deals = pd.read_parquet(world / "opportunities.parquet")
    open_stages = np.array(["Discovery", "Proposal", "Negotiation"], dtype=object)
    stage = (
        deals["status"]
        .map(STAGES)
        .fillna(pd.Series(open_stages[rng.integers(0, 3, len(deals))], index=deals.index))
    )
    pd.DataFrame(
        {
            "Deal ID": deals["opportunity_id"],
            "Company ID": deals["account_id"],
            "Created Date": deals["created_at"].dt.strftime("%d.%m.%Y"),
            "Close Date": deals["closed_at"].dt.strftime("%d.%m.%Y"),
            "Stage": stage,
            "Deal Type": deals["type"].map(DEAL_TYPES),
            "Amount": deals["amount"],
        }
    ).to_csv(out / "deals.csv", index=False)
    shutil.copy(world / "_extract.json", out / "_extract.json")


def mapping_file() -> Path:
    """The shipped mapping file for the example export."""
    return Path(str(resources.files("inmarket") / "examples" / MAPPING_NAME))


def write_crm_example(out: Path, *, accounts: int = 300, seed: int = 7) -> Path:
    """Generate a world, write it as a CRM export in ``out`` with the mapping beside it."""
    with scratch_dir("example-crm") as tmp:
        generate_world(WorldSpec(accounts=accounts, seed=seed), tmp)
        crm_export(tmp, out, seed=seed)
    target = out / MAPPING_NAME
    shutil.copy(mapping_file(), target)
    return target
