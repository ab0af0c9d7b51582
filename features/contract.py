"""The data contract: canonical tables, their columns, kinds and allowed values.

docs/data-contract.md explains each table and rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

Kind = Literal["id", "text", "timestamp", "date", "number"]


@dataclass(frozen=True)
class Column:
    """One canonical column: its name, kind, whether it is required, what it holds and, for a
    number, the values it may take (``low`` to ``high``; the HTTP service refuses others)."""

    name: str
    kind: Kind
    required: bool = False
    description: str = ""
    low: float | None = None
    high: float | None = None


# past a billion, a count is an input error, not a big company (a feature's bound too)
MAX_COUNT = 1e9
# an event's weight multiplies its engagement: past a thousand one row would outweigh any
# account's real history (50 events of weight 1e308 moved a score from 93 to 97)
MAX_WEIGHT = 1000.0


BUYING_ROLES = (
    "decision_maker",
    "champion",
    "influencer",
    "technical_evaluator",
    "finance",
    "user",
    "other",
)
# the roles without which a buying group has a gap: the deal needs them all
KEY_ROLES = ("decision_maker", "champion", "technical_evaluator", "finance")
OPPORTUNITY_STATUSES = ("open", "won", "lost")
OPPORTUNITY_TYPES = ("new_business", "renewal", "expansion")

# who to reach and who reaches them: carried to the ranked list, never a model feature
_NOT_A_FEATURE = "%s; shown to the people who act on a score, never a feature"

TABLES: dict[str, tuple[Column, ...]] = {
    "accounts": (
        Column("account_id", "id", True, "the company's key"),
        Column("name", "text", True, "company name"),
        Column("domain", "text", description="web domain, used to resolve emails and visits"),
        Column("industry", "text"),
        Column("employee_count", "number", low=0, high=MAX_COUNT),
        Column("employee_band", "text"),
        Column("region", "text"),
        Column("created_at", "timestamp", description="when the account entered the CRM"),
        Column("owner", "text", description=_NOT_A_FEATURE % "the account's owner in the CRM"),
    ),
    "people": (
        Column("person_id", "id", True),
        Column("account_id", "id", True),
        Column("name", "text", description=_NOT_A_FEATURE % "full name"),
        Column("email", "text", description=_NOT_A_FEATURE % "email address"),
        Column("owner", "text", description=_NOT_A_FEATURE % "the contact's owner in the CRM"),
        Column("title", "text"),
        Column("department", "text"),
        Column("seniority", "text"),
        Column("buying_role", "text", description=" / ".join(BUYING_ROLES)),
        Column(
            "created_at",
            "timestamp",
            description="when the person entered the CRM; a snapshot before it does not know them",
        ),
    ),
    "events": (
        Column("timestamp", "timestamp", True),
        Column("account_id", "id", description="required unless person_id is given"),
        Column("event_type", "text", True),
        Column("event_id", "id"),
        Column("person_id", "id", description="null = anonymous visitor resolved to the account"),
        Column("channel", "text"),
        Column("topic", "text"),
        Column("weight", "number", low=0, high=MAX_WEIGHT),
    ),
    "intent": (
        Column("account_id", "id", True),
        Column("date", "date", True),
        Column("topic", "text", True),
        Column("score", "number", True, "0-100 third-party research score", low=0, high=100),
    ),
    "opportunities": (
        Column("opportunity_id", "id", True),
        Column("account_id", "id", description="required unless person_id is given"),
        Column(
            "person_id",
            "id",
            description="a lead or contact of the deal (converted lead, deal-contact association); "
            "without account_id the account comes from people",
        ),
        Column("created_at", "timestamp", True),
        Column("status", "text", True, " / ".join(OPPORTUNITY_STATUSES)),
        Column("closed_at", "timestamp"),
        Column("amount", "number"),
        Column("type", "text", description=" / ".join(OPPORTUNITY_TYPES)),
    ),
    "account_history": (
        Column("account_id", "id", True),
        Column("field", "text", True, "the account column this row dates, e.g. lifecycle_stage"),
        Column("value", "text", description="its value from valid_from on (empty: unknown)"),
        Column("valid_from", "timestamp", True, "when the value took effect"),
    ),
}

# Accounts and people first: events, intent and opportunities are checked against them.
TABLE_ORDER = ("accounts", "people", "events", "intent", "opportunities", "account_history")
OPTIONAL_TABLES = frozenset({"intent", "account_history"})
# The earliest plausible time in any table: CRMs and marketing automation (and the web visits,
# emails and deals they record) do not predate 1990, so an earlier date is a placeholder or a
# default (0001-01-01, 1900-01-01, a zero epoch day), not when something happened.
EARLIEST_DATE = pd.Timestamp("1990-01-01", tz="UTC")
# account columns whose spellings are normalised ('Retail ' -> 'retail'), online as in batch
NORMALISED_ACCOUNT_COLUMNS = ("industry", "region")
DOMAIN_COLUMN = "_domain"  # internal: an email/URL/domain from which the account is resolved
# internal, on validated events: the account came from the person's record, not the event
ACCOUNT_FROM_PERSON = "_account_from_person"
_DTYPES = {
    "id": "str",
    "text": "str",
    "number": "float64",
    "timestamp": "datetime64[us, UTC]",
    "date": "datetime64[us, UTC]",
}


def required_columns(table: str) -> list[str]:
    return [c.name for c in TABLES[table] if c.required]


def column(table: str, name: str) -> Column:
    """The contract's column ``name`` of ``table``."""
    return next(c for c in TABLES[table] if c.name == name)


def column_kinds(table: str) -> dict[str, Kind]:
    return {c.name: c.kind for c in TABLES[table]}


def empty_table(table: str) -> pd.DataFrame:
    """A canonical table with no rows and every column in its canonical dtype."""
    return pd.DataFrame({c: pd.Series(dtype=_DTYPES[k]) for c, k in column_kinds(table).items()})
