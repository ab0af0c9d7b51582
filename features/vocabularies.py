"""The vocabulary columns: the values each may hold and what becomes of any other value.

This is the one place the lists are defined; the checks (``features.validation``), the
validation report, ``inmarket validate --help`` and the tables in README.md and
docs/data-contract.md (kept equal by a test) all come from ``VOCABULARIES``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from features.contract import BUYING_ROLES, OPPORTUNITY_STATUSES, OPPORTUNITY_TYPES

EVENT_TYPES = (
    "page_view",
    "pricing_page",
    "comparison_page",
    "case_study_view",
    "content_download",
    "form_fill",
    "demo_request",
    "trial_signup",
    "review_site_visit",
    "ad_click",
    "email_open",
    "email_click",
    "webinar_attended",
)
CHANNELS = ("web", "email", "webinar", "review_site", "paid_social")
SENIORITY_LEVELS = ("individual_contributor", "manager", "director", "vp", "c_level")
DEPARTMENTS = (
    "executive",
    "marketing",
    "sales",
    "finance",
    "procurement",
    "it",
    "engineering",
    "product",
    "operations",
    "customer_success",
    "hr",
    "legal",
    "other",
)

Unknown = Literal["rejected", "set_to_null", "kept"]


@dataclass(frozen=True)
class Vocabulary:
    """One vocabulary column: its values, what an unknown value does, the counter that
    counts it (a reject reason or a warning) and why the product treats it so."""

    table: str
    column: str
    values: tuple[str, ...]
    unknown: Unknown
    counter: str
    effect: str

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"


VOCABULARIES = (
    Vocabulary(
        "people",
        "department",
        DEPARTMENTS,
        "kept",
        "unknown_department_kept",
        "kept as spelled: it still counts as a department of its own",
    ),
    Vocabulary(
        "people",
        "seniority",
        SENIORITY_LEVELS,
        "set_to_null",
        "unknown_seniority_set_to_null",
        "set to null: an unranked level cannot count as senior or junior",
    ),
    Vocabulary(
        "people",
        "buying_role",
        BUYING_ROLES,
        "set_to_null",
        "unknown_buying_role_set_to_null",
        "set to null: the person covers no role",
    ),
    Vocabulary(
        "events",
        "event_type",
        EVENT_TYPES,
        "kept",
        "unknown_event_type_counted_as_other",
        "kept: engagement of weight 1 in events_other_type_90d, in no type's count",
    ),
    Vocabulary(
        "events",
        "channel",
        CHANNELS,
        "kept",
        "unknown_channel_kept",
        "kept, in no channel count",
    ),
    Vocabulary(
        "opportunities",
        "status",
        OPPORTUNITY_STATUSES,
        "rejected",
        "invalid_status",
        "rejected: a deal of unknown outcome cannot make a label",
    ),
    Vocabulary(
        "opportunities",
        "type",
        OPPORTUNITY_TYPES,
        "rejected",
        "invalid_type",
        "rejected: labels count new business only (empty = new_business)",
    ),
)


def vocabulary(table: str, column: str) -> Vocabulary:
    return next(v for v in VOCABULARIES if (v.table, v.column) == (table, column))


def vocabulary_help() -> str:
    """The vocabularies as plain text, for ``inmarket validate --help``."""
    lines = [
        "Vocabulary columns (labels compared after normalisation: 'Closed Won' -> closed_won;",
        "map other spellings with values.<column> in the mapping file):",
    ]
    for v in VOCABULARIES:
        lines += [f"  {v.name}: {', '.join(v.values)}", f"    other values: {v.effect}"]
    return "\n".join(lines)


def vocabulary_markdown() -> str:
    """The vocabularies as the Markdown table in README.md and docs/data-contract.md."""
    lines = ["| column | values | any other value (counter) |", "|---|---|---|"]
    lines += [
        f"| `{v.name}` | {', '.join(v.values)} | {v.effect} (`{v.counter}`) |" for v in VOCABULARIES
    ]
    return "\n".join(lines)
