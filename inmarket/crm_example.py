"""A worked example of bringing your own data: a synthetic world re-shaped as a CRM export.

The export looks like what a CRM and a marketing-automation tool hand over: companies,
contacts (with a company id) and leads (email only), touches keyed by lead/contact id,
anonymous web sessions resolved to a company domain, weekly intent by domain, and deals with
CRM stage names and day-first dates. ``examples/crm_mapping.toml`` loads it into the contract.

``hubspot_export`` writes the harder shape users met: activities that carry only a page URL,
contacts that carry only a job title, deals keyed by a contact, US dates, and a few values no
mapping names. ``examples/hubspot_mapping.toml`` loads it through the shipped derivation rules.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from features.io import write_csv_atomic
from features.leftovers import scratch_dir
from inmarket.synthetic import WorldSpec, generate_world

MAPPING_NAME = "crm_mapping.toml"
HUBSPOT_MAPPING_NAME = "hubspot_mapping.toml"
VENDOR_SITE = "https://www.example-vendor.com"  # the seller's website, whose pages are visited
# the page each web event type was a visit to; page views land on one of BLOG_PAGES
PAGE_PATHS = {
    "pricing_page": "/pricing",
    "comparison_page": "/compare/example-vendor-vs-rival",
    "demo_request": "/demo",
    "trial_signup": "/free-trial",
    "case_study_view": "/case-studies/how-acme-grew",
    "content_download": "/resources/ebook-abm",
    "form_fill": "/contact-us",
}
BLOG_PAGES = np.array(["/", "/blog/intent-data-101", "/product/overview", "/about"], dtype=object)
HUBSPOT_ACTIVITIES = {
    "email_open": "Marketing Email Opened",
    "email_click": "Marketing Email Clicked",
    "webinar_attended": "Webinar Attended",
    "review_site_visit": "Review Site Visit",
    "ad_click": "Ad Interaction",
}
HUBSPOT_STAGES = {"won": "Closed Won", "lost": "Closed Lost"}
MEETING_SHARE = 0.3  # demo requests booked as a meeting: an activity type no mapping names
UNQUALIFIED_STAGE = "Qualified To Buy"  # an open stage the mapping leaves unmapped
DELETED_CONTACT_SHARE = 0.03  # deals whose contact was deleted from the CRM since
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
    _crm_companies_and_people(accounts, pd.read_parquet(world / "people.parquet"), out, rng)
    domains = accounts.set_index("account_id")["domain"]
    _crm_activity(
        pd.read_parquet(world / "events.parquet"),
        pd.read_parquet(world / "intent.parquet"),
        domains,
        out,
    )
    _crm_deals(pd.read_parquet(world / "opportunities.parquet"), out, rng)
    shutil.copy(world / "_extract.json", out / "_extract.json")


def _crm_companies_and_people(
    accounts: pd.DataFrame, people: pd.DataFrame, out: Path, rng: np.random.Generator
) -> None:
    """Companies, and people split into contacts (with a company id) and leads (email only)."""
    write_csv_atomic(
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
        ),
        out / "companies.csv",
    )
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
    write_csv_atomic(contacts[~is_lead], out / "contacts.csv")
    write_csv_atomic(leads[is_lead], out / "leads.csv")


def _crm_activity(
    events: pd.DataFrame, intent: pd.DataFrame, domains: pd.Series, out: Path
) -> None:
    """Touches of known people, anonymous web sessions by company domain, weekly intent."""
    known = events["person_id"].notna()
    touches = events[known]
    write_csv_atomic(
        pd.DataFrame(
            {
                "Touch ID": touches["event_id"],
                "Lead or Contact ID": touches["person_id"],
                "Touch Date": touches["timestamp"].dt.strftime("%m/%d/%Y %H:%M:%S"),
                "Touch Type": touches["event_type"].map(TOUCH_TYPES),
                "Channel": touches["channel"],
                "Campaign Topic": _title(touches["topic"]),
            }
        ),
        out / "touches.csv",
    )
    sessions = events[~known]
    write_csv_atomic(
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
        ),
        out / "web_sessions.csv",
    )
    write_csv_atomic(
        pd.DataFrame(
            {
                "Company Domain": intent["account_id"].map(domains),
                "Week": pd.to_datetime(intent["date"]).dt.strftime("%Y-%m-%d"),
                "Topic": _title(intent["topic"]),
                "Composite Score": intent["score"],
            }
        ),
        out / "intent_weekly.csv",
    )


def _crm_deals(deals: pd.DataFrame, out: Path, rng: np.random.Generator) -> None:
    """Deals with CRM stage names (open ones in a random open stage) and day-first dates."""
    open_stages = np.array(["Discovery", "Proposal", "Negotiation"], dtype=object)
    stage = (
        deals["status"]
        .map(STAGES)
        .fillna(pd.Series(open_stages[rng.integers(0, 3, len(deals))], index=deals.index))
    )
    write_csv_atomic(
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
        ),
        out / "deals.csv",
    )


def hubspot_export(world: Path, out: Path, seed: int = 0) -> None:
    """Write the world in ``world`` to ``out`` as a HubSpot-style export: companies; contacts
    with a job title only (no department, seniority or buying role); activities of contacts,
    web visits as "Page View" with the page's URL; deals keyed by a contact of their company
    (a few by a contact deleted since); US dates throughout."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    accounts = pd.read_parquet(world / "accounts.parquet")
    write_csv_atomic(
        pd.DataFrame(
            {
                "Record ID": accounts["account_id"],
                "Company name": accounts["name"],
                "Company Domain Name": accounts["domain"],
                "Create Date": accounts["created_at"].dt.strftime("%m/%d/%Y"),
            }
        ),
        out / "companies.csv",
    )

    people = pd.read_parquet(world / "people.parquet")
    write_csv_atomic(
        pd.DataFrame(
            {
                "Record ID": people["person_id"],
                "Associated Company ID": people["account_id"],
                "Job Title": people["title"],
                "Create Date": people["created_at"].dt.strftime("%m/%d/%Y %I:%M %p"),
            }
        ),
        out / "contacts.csv",
    )

    events = pd.read_parquet(world / "events.parquet")
    events = events[events["person_id"].notna()]
    kind = events["event_type"]
    page = kind.map(PAGE_PATHS)
    is_page = page.notna() | (kind == "page_view")
    page = page.fillna(
        pd.Series(BLOG_PAGES[rng.integers(0, len(BLOG_PAGES), len(events))], index=events.index)
    )
    meeting = (kind == "demo_request") & (rng.random(len(events)) < MEETING_SHARE)
    activity = (
        kind.map(HUBSPOT_ACTIVITIES).where(~is_page, "Page View").mask(meeting, "Meeting Booked")
    )
    write_csv_atomic(
        pd.DataFrame(
            {
                "Activity ID": events["event_id"],
                "Contact ID": events["person_id"],
                "Activity Date": events["timestamp"].dt.strftime("%m/%d/%Y %I:%M:%S %p"),
                "Activity Type": activity,
                "Page URL": (VENDOR_SITE + page).where(is_page & ~meeting),
            }
        ),
        out / "activities.csv",
    )

    deals = pd.read_parquet(world / "opportunities.parquet")
    first_contact = people.drop_duplicates("account_id").set_index("account_id")["person_id"]
    deleted = rng.random(len(deals)) < DELETED_CONTACT_SHARE
    contact = deals["account_id"].map(first_contact).where(~deleted)
    contact = contact.fillna("deleted-" + deals["opportunity_id"])
    stage = deals["status"].map(HUBSPOT_STAGES)
    open_stages = np.array(["Appointment Scheduled", UNQUALIFIED_STAGE], dtype=object)
    stage = stage.fillna(pd.Series(open_stages[rng.integers(0, 2, len(deals))], index=deals.index))
    write_csv_atomic(
        pd.DataFrame(
            {
                "Deal ID": deals["opportunity_id"],
                "Associated Contact ID": contact,
                "Create Date": deals["created_at"].dt.strftime("%m/%d/%Y"),
                "Close Date": deals["closed_at"].dt.strftime("%m/%d/%Y"),
                "Deal Stage": stage,
                "Deal Type": deals["type"].map(DEAL_TYPES),
            }
        ),
        out / "deals.csv",
    )
    shutil.copy(world / "_extract.json", out / "_extract.json")


def mapping_file(name: str = MAPPING_NAME) -> Path:
    """A shipped mapping file for an example export (the CRM one by default)."""
    return Path(str(resources.files("inmarket") / "examples" / name))


def write_crm_example(out: Path, *, accounts: int, seed: int) -> Path:
    """Generate a world, write it as a CRM export in ``out`` with the mapping beside it."""
    with scratch_dir("example-crm") as tmp:
        generate_world(WorldSpec(accounts=accounts, seed=seed), tmp)
        crm_export(tmp, out, seed=seed)
    target = out / MAPPING_NAME
    shutil.copy(mapping_file(), target)
    return target
