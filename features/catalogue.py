"""What the features weigh (high-intent types, engagement weights), the classic lead-points
rule, the feature families, and the feature catalogue: one row per feature ``build_features``
returns, which is the whole of its definition (family, kind, meaning, values, source, words).
The vocabularies they count over are in ``features.vocabularies``.

``inmarket features --list`` prints the catalogue; docs/features.md explains the families.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

from features.contract import BUYING_ROLES, MAX_COUNT
from features.settings import FeatureSpec
from features.vocabularies import CHANNELS, EVENT_TYPES, SENIORITY_LEVELS

HIGH_INTENT_TYPES = ("pricing_page", "demo_request", "comparison_page", "trial_signup")
# Opens are mostly machine-generated (mail privacy proxies): they earn lead points, but a person
# whose only events are opens is not counted as engaged in the breadth features.
LOW_SIGNAL_TYPES = ("email_open",)
SENIOR_LEVELS = SENIORITY_LEVELS[2:]
SENIORITY_WORDS = ("an individual contributor", "a manager", "a director", "a VP", "C-level")
TRACKED_ROLES = tuple(r for r in BUYING_ROLES if r != "other")
FIT_CATEGORIES = ("industry", "region", "employee_band")
# How much one event says about buying interest; multiplied by events.weight.
ENGAGEMENT_WEIGHTS = {
    "page_view": 1.0,
    "pricing_page": 5.0,
    "comparison_page": 5.0,
    "case_study_view": 2.0,
    "content_download": 3.0,
    "form_fill": 3.0,
    "demo_request": 10.0,
    "trial_signup": 10.0,
    "review_site_visit": 3.0,
    "ad_click": 0.5,
    "email_open": 0.2,
    "email_click": 1.0,
    "webinar_attended": 3.0,
}
# The classic lead-scoring rule, as marketing automation tools are commonly set up
# (docs/labels-and-evaluation.md): points per known person over the last 90 days; a person at
# MQL_THRESHOLD or more is an MQL. Review sites and ads are off-site or anonymous to a MAP and
# earn nothing. Never weaken it.
MQL_POINTS = {
    "demo_request": 30,
    "trial_signup": 30,
    "form_fill": 15,
    "webinar_attended": 15,
    "pricing_page": 10,
    "comparison_page": 10,
    "content_download": 10,
    "case_study_view": 5,
    "email_click": 3,
    "page_view": 1,
    "email_open": 1,
    "review_site_visit": 0,
    "ad_click": 0,
}
MQL_THRESHOLD = 100
MQL_WINDOW_DAYS = 90
INTENT_SURGE_SCORE = 60.0
# Columns returned beside the features, for labels and serving, never fed to a model.
META_COLUMNS = ("account_id", "as_of", "in_pipeline")


# reasons' nouns of the event types and channels, in the plural
EVENT_NOUNS = {
    "page_view": "page views",
    "pricing_page": "pricing page visits",
    "comparison_page": "comparison page visits",
    "case_study_view": "case study views",
    "content_download": "content downloads",
    "form_fill": "form fills",
    "demo_request": "demo requests",
    "trial_signup": "trial sign-ups",
    "review_site_visit": "review site visits",
    "ad_click": "ad clicks",
    "email_open": "email opens",
    "email_click": "email clicks",
    "webinar_attended": "webinars attended",
}
CHANNEL_PLACES = {
    "web": "on the website",
    "email": "by email",
    "webinar": "in webinars",
    "review_site": "on review sites",
    "paid_social": "from paid social ads",
}
COUNT = "{v:,.0f}"  # a count in a reason's words (Words.some)
# what a feature says about an account: why it may buy now, or what it is and has done
Kind = Literal["timing", "fit"]


class Family(NamedTuple):
    """A family of features: what its features say (``kind``), what it reads at a snapshot
    (only rows dated before as_of, except where said), and whether it is part of the buying
    group (the ablation that keeps only those families)."""

    name: str
    kind: Kind
    source: str
    buying_group: bool = False


_KNOWN_PEOPLE = "events before as_of, people known by then"
FAMILIES = {
    family.name: family
    for family in (
        Family("breadth", "timing", _KNOWN_PEOPLE, buying_group=True),
        Family("depth", "timing", "events before as_of"),
        Family("concentration", "timing", _KNOWN_PEOPLE, buying_group=True),
        Family("recency", "timing", "events before as_of"),
        Family("momentum", "timing", "events before as_of", buying_group=True),
        Family(
            "intent",
            "timing",
            "intent records published before as_of (and events before as_of)",
        ),
        Family("fit", "fit", "accounts (firmographics of the contract, taken as static)"),
        Family(
            "history",
            "fit",
            "opportunities created, and outcomes closed, before as_of (a deal keyed by a lead "
            "or contact: once that person is known)",
        ),
        Family("lead_baseline", "timing", _KNOWN_PEOPLE),
    )
}
BUYING_GROUP_FAMILIES = tuple(name for name, family in FAMILIES.items() if family.buying_group)


# A computed feature is a count, a share, a flag, a score or a number of days: never negative
# (but a change between two windows), and a value past a billion (MAX_COUNT) is an input error,
# not an account on fire (a probe's `events_30d: 1e308` scored 91). Generous on purpose: a row
# batch built must never be refused over HTTP.


class Bounds(NamedTuple):
    """The values a feature takes, as the HTTP schema enforces them: text when ``categorical``,
    else a number from ``low`` to ``high`` (infinite: no bound), a whole one when ``integer``."""

    low: float = 0.0
    high: float = MAX_COUNT
    integer: bool = False
    categorical: bool = False


WHOLE = Bounds(integer=True)  # a count or a level
NUMBER = Bounds()  # days, a weighted sum, a ratio
SHARE = Bounds(high=1.0)
FLAG = Bounds(high=1.0, integer=True)
SCORE = Bounds(high=100.0)  # a third-party intent score
CHANGE = Bounds(low=-100.0, integer=True)  # a level now minus a level before
CATEGORY = Bounds(categorical=True)
# a declared account column: any number, or a category when its values are text (which the
# data decides: a model knows its categories)
DECLARED = Bounds(-math.inf, math.inf)


class Words(NamedTuple):
    """How a reason says a feature's value to a marketer: ``some`` for a value (``{v}`` is the
    number, formatted in the template; ``{level}`` a seniority), ``none`` for zero, and for a
    missing value when ``missing_is_none``; ``buying``: True when more of it is a sign of
    buying, False when less is, None when neither (fit, history)."""

    some: str
    none: str = ""
    buying: bool | None = True
    missing_is_none: bool = False
    flag: bool = False  # 1 or 0, a sign of buying when set: read backwards against its sign


class Feature(NamedTuple):
    """One feature, whole: its column name, family and kind (its family's), a one-line
    description, the values it takes, how a reason words it, and the tables (and, for declared
    account columns, how) its value comes from at a snapshot."""

    name: str
    family: str
    kind: Kind
    description: str
    bounds: Bounds
    words: Words
    source: str


def _row(
    name: str, family: str, bounds: Bounds, description: str, words: Words, source: str = ""
) -> Feature:
    """A catalogue row; its kind, and its source unless given, are its family's."""
    of = FAMILIES[family]
    return Feature(name, family, of.kind, description, bounds, words, source or of.source)


def _words(name: str) -> str:
    return name.replace("_", " ")


_DECLARED_SOURCES = {
    "static": "accounts.{name}: declared static, its export value used at every snapshot",
    "dated": "account_history (field {name}): declared dated, the value valid at as_of",
}
_HIGH = "pricing, demo, comparison or trial"  # the high-intent events, in words


def _breadth(spec: FeatureSpec) -> list[Feature]:
    """Who engages: people, departments, seniority and buying roles, and how they change."""
    new_days, roles = spec.new_people_days, len(TRACKED_ROLES)
    senior = "senior people (directors, VPs, C-level)"
    # fmt: off
    return [
        *(_row(f"people_engaged_{d}d", "breadth", WHOLE, f"distinct known people engaged (any event but an email open) in the last {d} days",
               Words(f"{COUNT} people engaged in the last {d} days", f"nobody engaged in the last {d} days")) for d in spec.windows),
        *(row for d in (30, 90) for row in (
            _row(f"anonymous_events_{d}d", "breadth", WHOLE, f"events by anonymous visitors resolved to the account, last {d} days",
                 Words(f"{COUNT} anonymous visits from the account in the last {d} days", f"no anonymous visit in the last {d} days", None)),
            _row(f"departments_engaged_{d}d", "breadth", WHOLE, f"distinct departments of engaged known people, last {d} days",
                 Words(f"people from {COUNT} departments engaged in the last {d} days", f"no department engaged in the last {d} days")),
        )),
        _row("anonymous_share_90d", "breadth", SHARE, "share of the last 90 days' events that are anonymous",
             Words("{v:.0%} of the last 90 days' activity was anonymous", "no anonymous activity in the last 90 days", None)),
        _row("seniorities_engaged_90d", "breadth", WHOLE, "distinct seniority levels engaged, last 90 days",
             Words(f"people of {COUNT} seniority levels engaged in the last 90 days", "nobody engaged in the last 90 days")),
        _row("senior_people_engaged_90d", "breadth", WHOLE, "directors, VPs and C-level people engaged, last 90 days",
             Words(f"{COUNT} {senior} engaged in the last 90 days", "no director, VP or C-level person engaged in the last 90 days")),
        _row("buying_roles_engaged_90d", "breadth", WHOLE, f"how many of the {roles} buying roles have an engaged person, last 90 days",
             Words(f"{COUNT} of {roles} buying roles engaged in the last 90 days", "no buying role engaged in the last 90 days")),
        *(_row(f"role_{r}_engaged_90d", "breadth", FLAG, f"1 if a {_words(r)} engaged in the last 90 days",
               Words(f"{'an' if r[0] in 'aeiou' else 'a'} {_words(r)} engaged in the last 90 days", f"no {_words(r)} engaged in the last 90 days", flag=True)) for r in TRACKED_ROLES),
        _row(f"new_people_{new_days}d", "breadth", WHOLE, f"known people whose every event of the last 90 days is in the last {new_days} days",
             Words(f"{COUNT} people new to us engaged only in the last {new_days} days", f"nobody new engaged in the last {new_days} days")),
        _row("contacts_added_90d", "breadth", WHOLE, "people who entered the CRM at the account in the last 90 days (missing: people.created_at not given)",
             Words(f"{COUNT} contacts added to the CRM in the last 90 days", "no contact added to the CRM in the last 90 days"), "people added in the last 90 days"),
        _row("buying_roles_engaged_30d", "breadth", WHOLE, f"how many of the {roles} buying roles have a person engaged in the last 30 days",
             Words(f"{COUNT} of {roles} buying roles engaged in the last 30 days", "no buying role engaged in the last 30 days")),
        _row("buying_roles_new_30d", "breadth", WHOLE, "buying roles engaged in the last 30 days and not in the 60 days before",
             Words(f"{COUNT} buying roles newly engaged in the last 30 days", "no buying role newly engaged in the last 30 days")),
        _row("departments_new_30d", "breadth", WHOLE, "departments engaged in the last 30 days and not in the 60 days before (multi-threading)",
             Words(f"{COUNT} departments newly engaged in the last 30 days", "no department newly engaged in the last 30 days")),
        _row("seniority_max_30d", "breadth", WHOLE, "highest seniority engaged in the last 30 days, 0 (individual contributor) to 4 (C-level) (missing: none)",
             Words("the most senior person engaged in the last 30 days is {level}", "nobody engaged in the last 30 days", missing_is_none=True)),
        _row("seniority_climb_30d", "breadth", CHANGE, "highest seniority engaged in the last 30 days minus the highest in the 60 days before (missing: none in either)",
             Words("the most senior person engaged is {v:+,.0f} levels from the 60 days before", "no change in the seniority engaged over the last 30 days")),
        _row("senior_people_new_30d", "breadth", WHOLE, "directors, VPs and C-level people first engaged (within 90 days) in the last 30 days",
             Words(f"{COUNT} {senior} engaged for the first time in the last 30 days", "no director, VP or C-level person newly engaged in the last 30 days")),
        _row("new_people_30d", "breadth", WHOLE, "known people first engaged (within 90 days) in the last 30 days",
             Words(f"{COUNT} people engaged for the first time in the last 30 days", "nobody newly engaged in the last 30 days")),
        _row("new_people_acceleration_30d", "breadth", NUMBER, "people first engaged in the last 30 days over the 30-day rate of those engaged in the 60 days before (smoothed)",
             Words("people are joining {v:.1f}x as fast in the last 30 days as in the 60 before", "nobody newly engaged in the last 30 days")),
        _row("anonymous_and_known_weeks_56d", "breadth", WHOLE, "weeks of the last 8 with both anonymous visits and known people engaged",
             Words(f"{COUNT} of the last 8 weeks had anonymous visits and known people engaged together", "no week of the last 8 had anonymous visits and known people together")),
    ]
    # fmt: on


def _depth(spec: FeatureSpec) -> list[Feature]:
    """How much the account does: events by window, type and channel, weighted engagement."""
    # fmt: off
    return [
        *(row for d in spec.windows for row in (
            _row(f"events_{d}d", "depth", WHOLE, f"all events, last {d} days",
                 Words(f"{COUNT} interactions in the last {d} days", f"no interaction in the last {d} days")),
            _row(f"high_intent_events_{d}d", "depth", WHOLE, f"pricing, demo, comparison and trial events, last {d} days",
                 Words(f"{COUNT} {_HIGH} visits in the last {d} days", f"no {_HIGH} visit in the last {d} days")),
        )),
        *(_row(f"events_{t}_90d", "depth", WHOLE, f"{_words(t)} events, last 90 days",
               Words(f"{COUNT} {EVENT_NOUNS[t]} in the last 90 days", f"no {EVENT_NOUNS[t]} in the last 90 days")) for t in EVENT_TYPES),
        _row("events_other_type_90d", "depth", WHOLE, "events of types outside the known list, last 90 days",
             Words(f"{COUNT} other interactions in the last 90 days", "no other interaction in the last 90 days")),
        *(_row(f"events_channel_{c}_90d", "depth", WHOLE, f"events on the {_words(c)} channel, last 90 days",
               Words(f"{COUNT} interactions {CHANNEL_PLACES[c]} in the last 90 days", f"no interaction {CHANNEL_PLACES[c]} in the last 90 days")) for c in CHANNELS),
        *(_row(f"engagement_score_{d}d", "depth", NUMBER, f"events weighted by type and weight, last {d} days",
               Words(f"engagement worth {COUNT} points (weighted by kind) in the last {d} days", f"no engagement in the last {d} days")) for d in (30, 90)),
        _row("high_intent_people_30d", "depth", WHOLE, "distinct known people with a high-intent event, last 30 days",
             Words(f"{COUNT} people visited {_HIGH} pages in the last 30 days", f"nobody visited {_HIGH} pages in the last 30 days")),
        _row("high_intent_departments_30d", "depth", WHOLE, "distinct departments with a high-intent event, last 30 days",
             Words(f"{_HIGH} visits from {COUNT} departments in the last 30 days", f"no {_HIGH} visit in the last 30 days")),
    ]
    # fmt: on


def _when_and_intent() -> list[Feature]:
    """Who carries the activity, how recent and how fast it is, and third-party intent."""
    surge = f"{INTENT_SURGE_SCORE:.0f}+"
    research = "off-site research on our topics"
    # fmt: off
    return [
        _row("top_person_share_90d", "concentration", SHARE, "share of known people's events from the single most active person, last 90 days",
             Words("{v:.0%} of known people's activity in the last 90 days came from one person", "no known person engaged in the last 90 days", False, missing_is_none=True)),
        _row("days_since_last_event", "recency", NUMBER, "days from the last event to as_of (missing: none in the last 90 days)",
             Words(f"last interaction {COUNT} days ago", "no interaction in the last 90 days", False, missing_is_none=True)),
        _row("days_since_last_high_intent_event", "recency", NUMBER, "days from the last high-intent event to as_of (missing: none in 90 days)",
             Words(f"last {_HIGH} visit {COUNT} days ago", f"no {_HIGH} visit in the last 90 days", False, missing_is_none=True)),
        _row("momentum_7d_vs_prior_28d", "momentum", NUMBER, "events in the last 7 days over the weekly rate of the 28 days before (smoothed)",
             Words("last week's activity is {v:.1f}x the weekly rate of the 4 weeks before", "no activity last week")),
        _row("momentum_30d_vs_prior_60d", "momentum", NUMBER, "events in the last 30 days over the 30-day rate of the 60 days before (smoothed)",
             Words("last month's activity is {v:.1f}x the monthly rate of the 2 months before", "no activity last month")),
        _row("intent_max_score_28d", "intent", SCORE, "highest third-party intent score published in the last 28 days",
             Words(f"{research} peaked at {COUNT} of 100 in the last 4 weeks", f"no {research} in the last 4 weeks", missing_is_none=True)),
        _row("intent_max_score_90d", "intent", SCORE, "highest third-party intent score published in the last 90 days",
             Words(f"{research} peaked at {COUNT} of 100 in the last 90 days", f"no {research} in the last 90 days", missing_is_none=True)),
        _row("intent_mean_score_90d", "intent", SCORE, "mean third-party intent score published in the last 90 days",
             Words(f"{research} averaged {COUNT} of 100 in the last 90 days", f"no {research} in the last 90 days", missing_is_none=True)),
        _row("intent_topics_surging_28d", "intent", WHOLE, f"distinct topics scoring {surge} in the last 28 days",
             Words(f"{COUNT} topics of ours surging in off-site research in the last 4 weeks", "no topic surging in off-site research in the last 4 weeks")),
        _row("intent_weeks_surging_90d", "intent", WHOLE, f"weeks with any topic scoring {surge} in the last 90 days",
             Words(f"off-site research surged in {COUNT} of the last 13 weeks", "no off-site research surge in the last 13 weeks")),
        _row("intent_weeks_surging_with_visits_90d", "intent", WHOLE, f"weeks with any topic scoring {surge} in which the account was also active first-party (email opens aside), last 90 days",
             Words(f"off-site research surged while the account visited us in {COUNT} of the last 13 weeks", "no off-site research surge while the account visited us in the last 13 weeks")),
    ]
    # fmt: on


def _fit_and_history(spec: FeatureSpec) -> list[Feature]:
    """What the account is (firmographics, declared columns) and has done (deals, the lead
    points of the MQL rule)."""
    # fmt: off
    return [
        *(_row(c, "fit", CATEGORY, f"firmographic: {_words(c)} (category)", Words(f"{_words(c)}: {{text}}", buying=None)) for c in FIT_CATEGORIES),
        _row("employee_count", "fit", NUMBER, "firmographic: number of employees", Words(f"{COUNT} employees", buying=None)),
        _row("account_age_days", "fit", NUMBER, "days since the account entered the CRM, up to 365",
             Words(f"in the CRM for {COUNT} days (counted up to a year)", "new to the CRM", None)),
        *(_row(c, "fit", DECLARED, f"declared {kind} account column: {c}", Words(f"{_words(c)}: {{text}}", buying=None),
               _DECLARED_SOURCES[kind].format(name=c)) for c, kind in spec.columns.items()),
        _row("opportunities_won_before", "history", WHOLE, "opportunities won and closed before as_of",
             Words(f"{COUNT} deals won before", "no deal won before", None)),
        _row("opportunities_lost_before", "history", WHOLE, "opportunities lost and closed before as_of",
             Words(f"{COUNT} deals lost before", "no deal lost before", None)),
        _row("new_business_lost_before", "history", WHOLE, "new-business opportunities lost before as_of",
             Words(f"{COUNT} new-business deals lost before", "no new-business deal lost before", None)),
        _row("days_since_last_closed_opportunity", "history", NUMBER, "days since the last opportunity closed (missing: none in the last 365 days)",
             Words(f"last deal closed {COUNT} days ago", "no deal closed in the last year", None, missing_is_none=True)),
        _row("is_customer", "history", FLAG, "1 if the account has won a deal and not lost its latest renewal",
             Words("a customer", "not a customer", None)),
        _row("is_former_customer", "history", FLAG, "1 if the account was a customer and lost its latest renewal",
             Words("a former customer", "never a customer", None)),
        _row("mql_points_max_90d", "lead_baseline", WHOLE, "lead points of the account's best person, last 90 days (the MQL rule)",
             Words(f"the most active person has {COUNT} lead points (the MQL rule's)", "nobody has lead points in the last 90 days")),
        _row("mql_people_90d", "lead_baseline", WHOLE, f"people at {MQL_THRESHOLD}+ lead points, last 90 days (MQLs)",
             Words(f"{COUNT} marketing-qualified leads in the last 90 days", "no marketing-qualified lead in the last 90 days")),
    ]
    # fmt: on


def catalogue(spec: FeatureSpec = FeatureSpec()) -> list[Feature]:
    """Every feature ``build_features`` returns under ``spec``, in its column order, each row
    its whole definition."""
    return [*_breadth(spec), *_depth(spec), *_when_and_intent(), *_fit_and_history(spec)]
