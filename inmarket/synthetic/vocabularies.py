"""The synthetic world's fixed tables: vocabularies, event mixes, seasonality, output schemas."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

INDUSTRIES = {  # name: (share of accounts, fit effect)
    "software": (0.18, 0.8),
    "financial_services": (0.12, 0.6),
    "healthcare": (0.12, 0.1),
    "manufacturing": (0.16, 0.0),
    "retail": (0.12, -0.2),
    "professional_services": (0.14, 0.3),
    "education": (0.08, -0.6),
    "government": (0.08, -0.8),
}
REGIONS = {
    "north_america": (0.45, 0.2),
    "emea": (0.33, 0.0),
    "apac": (0.15, -0.2),
    "latam": (0.07, -0.4),
}
TOPICS = (
    "account_based_marketing",
    "intent_data",
    "marketing_automation",
    "sales_engagement",
    "revenue_analytics",
    "data_enrichment",
    "customer_data_platform",
    "lead_scoring",
)
SENIORITIES = ("individual_contributor", "manager", "director", "vp", "c_level")
# The world's assumption: the roles whose engagement makes a buying cycle likely to win, held by
# the first four people of a buying group. Deliberately not the product's KEY_ROLES
# (features.contract): what the page calls a missing role must not change the world it is
# measured on.
DECIDING_ROLES = ("decision_maker", "champion", "technical_evaluator", "finance")
# role -> (seniority probabilities in SENIORITIES order, departments and their probabilities)
ROLE_PROFILES: dict[str, tuple[tuple[float, ...], dict[str, float]]] = {
    "decision_maker": (
        (0, 0, 0.15, 0.5, 0.35),
        {"marketing": 0.45, "sales": 0.35, "executive": 0.2},
    ),
    "champion": (
        (0.05, 0.45, 0.45, 0.05, 0),
        {"marketing": 0.55, "sales": 0.25, "operations": 0.2},
    ),
    "technical_evaluator": ((0.4, 0.45, 0.15, 0, 0), {"it": 0.6, "engineering": 0.4}),
    "finance": ((0, 0.3, 0.4, 0.2, 0.1), {"finance": 0.85, "procurement": 0.15}),
    "influencer": (
        (0.2, 0.45, 0.3, 0.05, 0),
        {"marketing": 0.35, "sales": 0.35, "operations": 0.15, "customer_success": 0.15},
    ),
    "user": ((0.7, 0.3, 0, 0, 0), {"marketing": 0.5, "sales": 0.5}),
    "other": (
        (0.6, 0.35, 0.05, 0, 0),
        {"hr": 0.25, "legal": 0.25, "operations": 0.25, "customer_success": 0.25},
    ),
}
C_LEVEL_TITLES = {
    "marketing": "Chief Marketing Officer",
    "sales": "Chief Revenue Officer",
    "executive": "Chief Executive Officer",
    "finance": "Chief Financial Officer",
    "it": "Chief Information Officer",
    "engineering": "Chief Technology Officer",
    "operations": "Chief Operating Officer",
    "procurement": "Chief Procurement Officer",
}
EVENT_CHANNELS = {
    "page_view": "web",
    "pricing_page": "web",
    "comparison_page": "web",
    "case_study_view": "web",
    "content_download": "web",
    "form_fill": "web",
    "demo_request": "web",
    "trial_signup": "web",
    "review_site_visit": "review_site",
    "ad_click": "paid_social",
    "email_open": "email",
    "email_click": "email",
    "webinar_attended": "webinar",
}
WEB_CHANNELS = ("web", "review_site", "paid_social")
# event mixes: type -> probability
BACKGROUND_MIX = {
    "email_open": 0.42,
    "email_click": 0.08,
    "page_view": 0.27,
    "content_download": 0.05,
    "webinar_attended": 0.03,
    "form_fill": 0.02,
    "pricing_page": 0.03,
    "case_study_view": 0.04,
    "review_site_visit": 0.02,
    "ad_click": 0.04,
}
RESEARCH_MIX = {
    "page_view": 0.38,
    "content_download": 0.12,
    "case_study_view": 0.1,
    "review_site_visit": 0.1,
    "webinar_attended": 0.05,
    "email_click": 0.1,
    "email_open": 0.1,
    "ad_click": 0.05,
}
BUYING_MIX = {
    "pricing_page": 0.38,
    "comparison_page": 0.22,
    "demo_request": 0.1,
    "trial_signup": 0.08,
    "case_study_view": 0.12,
    "form_fill": 0.1,
}
TIRE_KICKER_MIX = {
    "content_download": 0.32,
    "form_fill": 0.18,
    "webinar_attended": 0.14,
    "page_view": 0.16,
    "email_click": 0.1,
    "email_open": 0.05,
    "pricing_page": 0.03,
    "demo_request": 0.02,
}
MONTH_FACTOR = np.array([0.9, 1.0, 1.05, 1.0, 1.0, 0.95, 0.85, 0.7, 1.05, 1.1, 1.05, 0.6])
WEEKDAY_FACTOR = np.array([1.0, 1.05, 1.05, 1.0, 0.9, 0.2, 0.15])  # Monday first
FIT_MEAN = 0.57  # approximate mean fit, so the in-market share matches the configured rate
# The intent provider (docs/world.md): it sees research only at the accounts it covers, which
# are fewer among small companies (their research resolves to a company less often); at a
# covered account a buying cycle shows a surge only some of the time; and most surges lead
# nowhere, yet look like the genuine ones (same scores, same lengths).
INTENT_COVERAGE_BY_BAND = (  # (employees below, share of accounts covered)
    (50, 0.35),
    (200, 0.55),
    (1000, 0.7),
    (5000, 0.8),
    (np.inf, 0.9),
)
INTENT_LEAD_DAYS = (14.0, 56.0)  # a genuine surge starts this long before the first visits
INTENT_SURGE_SHOWS = 0.7  # share of a covered account's buying cycles with a visible surge
INTENT_SPURIOUS_SHARE = 2 / 3  # share of all surges at covered prospects that are spurious
INTENT_PEAK_RANGE = (55.0, 100.0)  # a surge's peak score, genuine or spurious alike
FIRST_NAMES = (
    "ana",
    "ben",
    "chen",
    "dana",
    "eli",
    "fatima",
    "gustav",
    "hana",
    "ivan",
    "jia",
    "kofi",
    "lena",
    "mateo",
    "nadia",
    "omar",
    "priya",
    "quinn",
    "rosa",
    "sam",
    "tara",
    "uma",
    "victor",
    "wen",
    "ximena",
    "yusuf",
    "zoe",
    "noah",
    "emma",
    "liam",
    "mia",
)
LAST_NAMES = (
    "garcia",
    "smith",
    "kim",
    "nguyen",
    "muller",
    "rossi",
    "silva",
    "khan",
    "cohen",
    "okafor",
    "tanaka",
    "larsen",
    "dubois",
    "novak",
    "patel",
    "lopez",
    "brown",
    "wang",
    "ivanova",
    "jensen",
    "costa",
    "ali",
    "fischer",
    "moreau",
    "sato",
    "walsh",
    "reyes",
    "berg",
    "horvat",
    "mensah",
)
NAME_FIRST = (
    "North",
    "Blue",
    "Summit",
    "Bright",
    "Iron",
    "Silver",
    "Pacific",
    "Granite",
    "Clear",
    "Swift",
    "Apex",
    "Harbor",
    "Cedar",
    "Atlas",
    "Nova",
    "Vertex",
    "Pioneer",
    "Crescent",
    "Evergreen",
    "Lumen",
    "Polar",
    "Quantum",
    "Red",
    "Stone",
    "True",
    "Union",
    "Vista",
    "Wild",
    "Orbit",
    "Meridian",
)
NAME_SECOND = (
    "Analytics",
    "Systems",
    "Logistics",
    "Health",
    "Capital",
    "Foods",
    "Robotics",
    "Software",
    "Energy",
    "Labs",
    "Partners",
    "Networks",
    "Retail",
    "Bank",
    "Insurance",
    "Media",
    "Motors",
    "Pharma",
    "Solutions",
    "Works",
)

# the sales team: each account (and its contacts) is owned by one of them, in turn
OWNERS = ("Jane Park", "Omar Haddad", "Lucía Romero", "Tom Becker", "Priya Nair", "Sam Olsen")

# the Parquet schema of every table written; ``truth_`` tables go to the hidden truth folder
SCHEMAS = {
    "accounts": pa.schema(
        [
            ("account_id", pa.string()),
            ("name", pa.string()),
            ("domain", pa.string()),
            ("industry", pa.string()),
            ("employee_count", pa.int64()),
            ("employee_band", pa.string()),
            ("region", pa.string()),
            ("created_at", pa.timestamp("us", "UTC")),
            ("owner", pa.string()),
        ]
    ),
    "people": pa.schema(
        [
            ("person_id", pa.string()),
            ("account_id", pa.string()),
            ("name", pa.string()),
            ("email", pa.string()),
            ("owner", pa.string()),
            ("title", pa.string()),
            ("department", pa.string()),
            ("seniority", pa.string()),
            ("buying_role", pa.string()),
            ("created_at", pa.timestamp("us", "UTC")),
        ]
    ),
    "events": pa.schema(
        [
            ("event_id", pa.string()),
            ("timestamp", pa.timestamp("us", "UTC")),
            ("account_id", pa.string()),
            ("person_id", pa.string()),
            ("event_type", pa.string()),
            ("channel", pa.string()),
            ("topic", pa.string()),
        ]
    ),
    "intent": pa.schema(
        [
            ("account_id", pa.string()),
            ("date", pa.date32()),
            ("topic", pa.string()),
            ("score", pa.float64()),
        ]
    ),
    "opportunities": pa.schema(
        [
            ("opportunity_id", pa.string()),
            ("account_id", pa.string()),
            ("created_at", pa.timestamp("us", "UTC")),
            ("closed_at", pa.timestamp("us", "UTC")),
            ("status", pa.string()),
            ("type", pa.string()),
            ("amount", pa.float64()),
        ]
    ),
    "truth_accounts": pa.schema(
        [
            ("account_id", pa.string()),
            ("fit", pa.float64()),
            ("customer_since", pa.timestamp("us", "UTC")),
            ("is_tire_kicker", pa.bool_()),
            ("intent_covered", pa.bool_()),
            ("tire_kicker_person_id", pa.string()),
        ]
    ),
    "truth_episodes": pa.schema(
        [
            ("account_id", pa.string()),
            ("kind", pa.string()),
            ("start", pa.timestamp("us", "UTC")),
            ("opportunity_at", pa.timestamp("us", "UTC")),
            ("dark", pa.bool_()),
            ("strength", pa.float64()),
            ("engaged_people", pa.int64()),
            ("role_coverage", pa.float64()),
            ("has_intent", pa.bool_()),
            ("opportunity_id", pa.string()),
            ("won", pa.bool_()),
        ]
    ),
}
