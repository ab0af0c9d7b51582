"""What the features weigh (high-intent types, engagement weights), the classic lead-points
rule, and the feature catalogue: every feature ``build_features`` returns, its family and what
it measures. The vocabularies they count over are in ``features.vocabularies``.

``inmarket features --list`` prints the catalogue; docs/features.md explains the families.
"""

from __future__ import annotations

from typing import NamedTuple

from features.contract import BUYING_ROLES
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
    """One feature: its column name, family, a one-line description, the tables (and, for
    declared account columns, how) its value comes from at a snapshot, and its reason's words."""

    name: str
    family: str
    description: str
    source: str = ""
    words: Words | None = None


# What each family reads at a snapshot: only rows dated before as_of, except where said.
FAMILY_SOURCES = {
    "breadth": "events before as_of, people known by then",
    "depth": "events before as_of",
    "concentration": "events before as_of, people known by then",
    "recency": "events before as_of",
    "momentum": "events before as_of",
    "intent": "intent records published before as_of (and events before as_of)",
    "fit": "accounts (firmographics of the contract, taken as static)",
    "history": "opportunities created, and outcomes closed, before as_of (a deal keyed by a lead "
    "or contact: once that person is known)",
    "lead_baseline": "events before as_of, people known by then",
}
_DECLARED_SOURCES = {
    "static": "accounts.{name}: declared static, its export value used at every snapshot",
    "dated": "account_history (field {name}): declared dated, the value valid at as_of",
}


def _words(name: str) -> str:
    return name.replace("_", " ")


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
FIT_FAMILIES = ("fit", "history")  # what an account is and has done, not why it buys now
COUNT = "{v:,.0f}"  # a count in a reason's words (Words.some)


def _reason_words(spec: FeatureSpec) -> dict[str, Words]:
    """The words of every feature's reason (``Feature.words``)."""
    windows, new_days, roles = spec.windows, spec.new_people_days, len(TRACKED_ROLES)
    none_in = "in the last {d} days"
    # fmt: off
    return {
        **{f"people_engaged_{d}d": Words(f"{COUNT} people engaged in the last {d} days", f"nobody engaged {none_in.format(d=d)}") for d in windows},
        **{k: w for d in (30, 90) for k, w in (
            (f"anonymous_events_{d}d", Words(f"{COUNT} anonymous visits from the account in the last {d} days", f"no anonymous visit in the last {d} days", None)),
            (f"departments_engaged_{d}d", Words(f"people from {COUNT} departments engaged in the last {d} days", f"no department engaged in the last {d} days")),
        )},
        "anonymous_share_90d": Words("{v:.0%} of the last 90 days' activity was anonymous", "no anonymous activity in the last 90 days", None),
        "seniorities_engaged_90d": Words(f"people of {COUNT} seniority levels engaged in the last 90 days", "nobody engaged in the last 90 days"),
        "senior_people_engaged_90d": Words(f"{COUNT} senior people (directors, VPs, C-level) engaged in the last 90 days", "no director, VP or C-level person engaged in the last 90 days"),
        "buying_roles_engaged_90d": Words(f"{COUNT} of {roles} buying roles engaged in the last 90 days", "no buying role engaged in the last 90 days"),
        **{f"role_{r}_engaged_90d": Words(f"{'an' if r[0] in 'aeiou' else 'a'} {_words(r)} engaged in the last 90 days", f"no {_words(r)} engaged in the last 90 days", flag=True) for r in TRACKED_ROLES},
        f"new_people_{new_days}d": Words(f"{COUNT} people new to us engaged only in the last {new_days} days", f"nobody new engaged in the last {new_days} days"),
        "contacts_added_90d": Words(f"{COUNT} contacts added to the CRM in the last 90 days", "no contact added to the CRM in the last 90 days"),
        "buying_roles_engaged_30d": Words(f"{COUNT} of {roles} buying roles engaged in the last 30 days", "no buying role engaged in the last 30 days"),
        "buying_roles_new_30d": Words(f"{COUNT} buying roles newly engaged in the last 30 days", "no buying role newly engaged in the last 30 days"),
        "departments_new_30d": Words(f"{COUNT} departments newly engaged in the last 30 days", "no department newly engaged in the last 30 days"),
        "seniority_max_30d": Words("the most senior person engaged in the last 30 days is {level}", "nobody engaged in the last 30 days", missing_is_none=True),
        "seniority_climb_30d": Words("the most senior person engaged is {v:+,.0f} levels from the 60 days before", "no change in the seniority engaged over the last 30 days"),
        "senior_people_new_30d": Words(f"{COUNT} senior people (directors, VPs, C-level) engaged for the first time in the last 30 days", "no director, VP or C-level person newly engaged in the last 30 days"),
        "new_people_30d": Words(f"{COUNT} people engaged for the first time in the last 30 days", "nobody newly engaged in the last 30 days"),
        "new_people_acceleration_30d": Words("people are joining {v:.1f}x as fast in the last 30 days as in the 60 before", "nobody newly engaged in the last 30 days"),
        "anonymous_and_known_weeks_56d": Words(f"{COUNT} of the last 8 weeks had anonymous visits and known people engaged together", "no week of the last 8 had anonymous visits and known people together"),
        **{k: w for d in windows for k, w in (
            (f"events_{d}d", Words(f"{COUNT} interactions in the last {d} days", f"no interaction in the last {d} days")),
            (f"high_intent_events_{d}d", Words(f"{COUNT} pricing, demo, comparison or trial visits in the last {d} days", f"no pricing, demo, comparison or trial visit in the last {d} days")),
        )},
        **{f"events_{t}_90d": Words(f"{COUNT} {noun} in the last 90 days", f"no {noun} in the last 90 days") for t, noun in EVENT_NOUNS.items()},
        "events_other_type_90d": Words(f"{COUNT} other interactions in the last 90 days", "no other interaction in the last 90 days"),
        **{f"events_channel_{c}_90d": Words(f"{COUNT} interactions {place} in the last 90 days", f"no interaction {place} in the last 90 days") for c, place in CHANNEL_PLACES.items()},
        **{f"engagement_score_{d}d": Words(f"engagement worth {COUNT} points (weighted by kind) in the last {d} days", f"no engagement in the last {d} days") for d in (30, 90)},
        "high_intent_people_30d": Words(f"{COUNT} people visited pricing, demo, comparison or trial pages in the last 30 days", "nobody visited pricing, demo, comparison or trial pages in the last 30 days"),
        "high_intent_departments_30d": Words(f"pricing, demo, comparison or trial visits from {COUNT} departments in the last 30 days", "no pricing, demo, comparison or trial visit in the last 30 days"),
        "top_person_share_90d": Words("{v:.0%} of known people's activity in the last 90 days came from one person", "no known person engaged in the last 90 days", False, missing_is_none=True),
        "days_since_last_event": Words(f"last interaction {COUNT} days ago", "no interaction in the last 90 days", False, missing_is_none=True),
        "days_since_last_high_intent_event": Words(f"last pricing, demo, comparison or trial visit {COUNT} days ago", "no pricing, demo, comparison or trial visit in the last 90 days", False, missing_is_none=True),
        "momentum_7d_vs_prior_28d": Words("last week's activity is {v:.1f}x the weekly rate of the 4 weeks before", "no activity last week"),
        "momentum_30d_vs_prior_60d": Words("last month's activity is {v:.1f}x the monthly rate of the 2 months before", "no activity last month"),
        "intent_max_score_28d": Words(f"off-site research on our topics peaked at {COUNT} of 100 in the last 4 weeks", "no off-site research on our topics in the last 4 weeks", missing_is_none=True),
        "intent_max_score_90d": Words(f"off-site research on our topics peaked at {COUNT} of 100 in the last 90 days", "no off-site research on our topics in the last 90 days", missing_is_none=True),
        "intent_mean_score_90d": Words(f"off-site research on our topics averaged {COUNT} of 100 in the last 90 days", "no off-site research on our topics in the last 90 days", missing_is_none=True),
        "intent_topics_surging_28d": Words(f"{COUNT} topics of ours surging in off-site research in the last 4 weeks", "no topic surging in off-site research in the last 4 weeks"),
        "intent_weeks_surging_90d": Words(f"off-site research surged in {COUNT} of the last 13 weeks", "no off-site research surge in the last 13 weeks"),
        "intent_weeks_surging_with_visits_90d": Words(f"off-site research surged while the account visited us in {COUNT} of the last 13 weeks", "no off-site research surge while the account visited us in the last 13 weeks"),
        **{c: Words(f"{_words(c)}: {{text}}", buying=None) for c in FIT_CATEGORIES},
        "employee_count": Words(f"{COUNT} employees", buying=None),
        "account_age_days": Words(f"in the CRM for {COUNT} days (counted up to a year)", "new to the CRM", None),
        **{c: Words(f"{_words(c)}: {{text}}", buying=None) for c in spec.columns},
        "opportunities_won_before": Words(f"{COUNT} deals won before", "no deal won before", None),
        "opportunities_lost_before": Words(f"{COUNT} deals lost before", "no deal lost before", None),
        "new_business_lost_before": Words(f"{COUNT} new-business deals lost before", "no new-business deal lost before", None),
        "days_since_last_closed_opportunity": Words(f"last deal closed {COUNT} days ago", "no deal closed in the last year", None, missing_is_none=True),
        "is_customer": Words("a customer", "not a customer", None),
        "is_former_customer": Words("a former customer", "never a customer", None),
        "mql_points_max_90d": Words(f"the most active person has {COUNT} lead points (the MQL rule's)", "nobody has lead points in the last 90 days"),
        "mql_people_90d": Words(f"{COUNT} marketing-qualified leads in the last 90 days", "no marketing-qualified lead in the last 90 days"),
    }
    # fmt: on


def catalogue(spec: FeatureSpec = FeatureSpec()) -> list[Feature]:
    """Every feature ``build_features`` returns, in its column order, with family, meaning and
    source."""
    windows, new_days, surge = spec.windows, spec.new_people_days, INTENT_SURGE_SCORE
    # fmt: off
    rows: list[tuple[str, str, str]] = [
        *((f"people_engaged_{d}d", "breadth", f"distinct known people engaged (any event but an email open) in the last {d} days") for d in windows),
        *(row for d in (30, 90) for row in (
            (f"anonymous_events_{d}d", "breadth", f"events by anonymous visitors resolved to the account, last {d} days"),
            (f"departments_engaged_{d}d", "breadth", f"distinct departments of engaged known people, last {d} days"),
        )),
        ("anonymous_share_90d", "breadth", "share of the last 90 days' events that are anonymous"),
        ("seniorities_engaged_90d", "breadth", "distinct seniority levels engaged, last 90 days"),
        ("senior_people_engaged_90d", "breadth", "directors, VPs and C-level people engaged, last 90 days"),
        ("buying_roles_engaged_90d", "breadth", f"how many of the {len(TRACKED_ROLES)} buying roles have an engaged person, last 90 days"),
        *((f"role_{role}_engaged_90d", "breadth", f"1 if a {_words(role)} engaged in the last 90 days") for role in TRACKED_ROLES),
        (f"new_people_{new_days}d", "breadth", f"known people whose every event of the last 90 days is in the last {new_days} days"),
        ("contacts_added_90d", "breadth", "people who entered the CRM at the account in the last 90 days (missing: people.created_at not given)"),
        ("buying_roles_engaged_30d", "breadth", f"how many of the {len(TRACKED_ROLES)} buying roles have a person engaged in the last 30 days"),
        ("buying_roles_new_30d", "breadth", "buying roles engaged in the last 30 days and not in the 60 days before"),
        ("departments_new_30d", "breadth", "departments engaged in the last 30 days and not in the 60 days before (multi-threading)"),
        ("seniority_max_30d", "breadth", "highest seniority engaged in the last 30 days, 0 (individual contributor) to 4 (C-level) (missing: none)"),
        ("seniority_climb_30d", "breadth", "highest seniority engaged in the last 30 days minus the highest in the 60 days before (missing: none in either)"),
        ("senior_people_new_30d", "breadth", "directors, VPs and C-level people first engaged (within 90 days) in the last 30 days"),
        ("new_people_30d", "breadth", "known people first engaged (within 90 days) in the last 30 days"),
        ("new_people_acceleration_30d", "breadth", "people first engaged in the last 30 days over the 30-day rate of those engaged in the 60 days before (smoothed)"),
        ("anonymous_and_known_weeks_56d", "breadth", "weeks of the last 8 with both anonymous visits and known people engaged"),
        *(row for d in windows for row in (
            (f"events_{d}d", "depth", f"all events, last {d} days"),
            (f"high_intent_events_{d}d", "depth", f"pricing, demo, comparison and trial events, last {d} days"),
        )),
        *((f"events_{t}_90d", "depth", f"{_words(t)} events, last 90 days") for t in EVENT_TYPES),
        ("events_other_type_90d", "depth", "events of types outside the known list, last 90 days"),
        *((f"events_channel_{c}_90d", "depth", f"events on the {_words(c)} channel, last 90 days") for c in CHANNELS),
        *((f"engagement_score_{d}d", "depth", f"events weighted by type and weight, last {d} days") for d in (30, 90)),
        ("high_intent_people_30d", "depth", "distinct known people with a high-intent event, last 30 days"),
        ("high_intent_departments_30d", "depth", "distinct departments with a high-intent event, last 30 days"),
        ("top_person_share_90d", "concentration", "share of known people's events from the single most active person, last 90 days"),
        ("days_since_last_event", "recency", "days from the last event to as_of (missing: none in the last 90 days)"),
        ("days_since_last_high_intent_event", "recency", "days from the last high-intent event to as_of (missing: none in 90 days)"),
        ("momentum_7d_vs_prior_28d", "momentum", "events in the last 7 days over the weekly rate of the 28 days before (smoothed)"),
        ("momentum_30d_vs_prior_60d", "momentum", "events in the last 30 days over the 30-day rate of the 60 days before (smoothed)"),
        ("intent_max_score_28d", "intent", "highest third-party intent score published in the last 28 days"),
        ("intent_max_score_90d", "intent", "highest third-party intent score published in the last 90 days"),
        ("intent_mean_score_90d", "intent", "mean third-party intent score published in the last 90 days"),
        ("intent_topics_surging_28d", "intent", f"distinct topics scoring {surge:.0f}+ in the last 28 days"),
        ("intent_weeks_surging_90d", "intent", f"weeks with any topic scoring {surge:.0f}+ in the last 90 days"),
        ("intent_weeks_surging_with_visits_90d", "intent", f"weeks with any topic scoring {surge:.0f}+ in which the account was also active first-party (email opens aside), last 90 days"),
        *((c, "fit", f"firmographic: {_words(c)} (category)") for c in FIT_CATEGORIES),
        ("employee_count", "fit", "firmographic: number of employees"),
        ("account_age_days", "fit", "days since the account entered the CRM, up to 365"),
        *((c, "fit", f"declared {kind} account column: {c}") for c, kind in spec.columns.items()),
        ("opportunities_won_before", "history", "opportunities won and closed before as_of"),
        ("opportunities_lost_before", "history", "opportunities lost and closed before as_of"),
        ("new_business_lost_before", "history", "new-business opportunities lost before as_of"),
        ("days_since_last_closed_opportunity", "history", "days since the last opportunity closed (missing: none in the last 365 days)"),
        ("is_customer", "history", "1 if the account has won a deal and not lost its latest renewal"),
        ("is_former_customer", "history", "1 if the account was a customer and lost its latest renewal"),
        ("mql_points_max_90d", "lead_baseline", "lead points of the account's best person, last 90 days (the MQL rule)"),
        ("mql_people_90d", "lead_baseline", f"people at {MQL_THRESHOLD}+ lead points, last 90 days (MQLs)"),
    ]
    # fmt: on
    sources = {
        "contacts_added_90d": "people added in the last 90 days",
        **{c: _DECLARED_SOURCES[kind].format(name=c) for c, kind in spec.columns.items()},
    }
    words = _reason_words(spec)
    return [
        Feature(*row, sources.get(row[0], FAMILY_SOURCES[row[1]]), words.get(row[0]))
        for row in rows
    ]
