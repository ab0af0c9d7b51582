"""The feature families of DESIGN §4 as one pure function: tables in, one row per snapshot out.

``build_features(snapshots, tables)`` is the only entry point. It serves the CLI (local and
Spark engines) and the HTTP service alike. It is point in time: a snapshot at ``as_of`` sees
events with ``timestamp < as_of``, intent records published before ``as_of`` (a weekly record
dated ``d`` is published at ``d + intent_delay_days``), and opportunities created before
``as_of`` whose outcome counts only once ``closed_at < as_of``. ``as_of`` is taken to whole
seconds.

The work is vectorised: each table is sorted once by (account, time), and every snapshot finds
its rows with a binary search; aggregates are numpy ``bincount``/``reduceat`` over the
(snapshot, row) pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from features.contract import BUYING_ROLES
from features.tables import encode

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
HIGH_INTENT_TYPES = ("pricing_page", "demo_request", "comparison_page", "trial_signup")
# Opens are mostly machine-generated (mail privacy proxies): they earn lead points, but a person
# whose only events are opens is not counted as engaged in the breadth features.
LOW_SIGNAL_TYPES = ("email_open",)
CHANNELS = ("web", "email", "webinar", "review_site", "paid_social")
SENIOR_LEVELS = ("director", "vp", "c_level")
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
# The classic lead-scoring rule, as marketing automation tools are commonly set up (DESIGN §5):
# points per known person over the last 90 days; a person at MQL_THRESHOLD or more is an MQL.
# Review sites and ads are off-site or anonymous to a MAP and earn nothing. Never weaken it.
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
_DAY = 86_400
_FOREVER_DAYS = 365 * 200


@dataclass(frozen=True)
class FeatureConfig:
    windows: tuple[int, ...] = (7, 30, 90)
    intent_delay_days: int = 7
    new_people_days: int = 14
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)


class Feature(NamedTuple):
    name: str
    family: str
    description: str


def catalogue(
    config: FeatureConfig = FeatureConfig(), extra_fit: tuple[str, ...] = ()
) -> list[Feature]:
    """Every feature ``build_features`` returns, with its family and a one-line description."""
    w = config.windows
    f: list[Feature] = []
    add = f.append
    for d in w:
        add(
            Feature(
                f"people_engaged_{d}d",
                "breadth",
                f"distinct known people engaged (any event but an email open) in the last {d} days",
            )
        )
    for d in (30, 90):
        add(
            Feature(
                f"anonymous_events_{d}d",
                "breadth",
                f"events by anonymous visitors resolved to the account, last {d} days",
            )
        )
        add(
            Feature(
                f"departments_engaged_{d}d",
                "breadth",
                f"distinct departments of engaged known people, last {d} days",
            )
        )
    add(
        Feature(
            "anonymous_share_90d", "breadth", "share of the last 90 days' events that are anonymous"
        )
    )
    add(
        Feature(
            "seniorities_engaged_90d", "breadth", "distinct seniority levels engaged, last 90 days"
        )
    )
    add(
        Feature(
            "senior_people_engaged_90d",
            "breadth",
            "directors, VPs and C-level people engaged, last 90 days",
        )
    )
    add(
        Feature(
            "buying_roles_engaged_90d",
            "breadth",
            f"how many of the {len(TRACKED_ROLES)} buying roles have an engaged person, last 90 days",
        )
    )
    for role in TRACKED_ROLES:
        add(
            Feature(
                f"role_{role}_engaged_90d",
                "breadth",
                f"1 if a {role.replace('_', ' ')} engaged in the last 90 days",
            )
        )
    add(
        Feature(
            f"new_people_{config.new_people_days}d",
            "breadth",
            f"known people whose every event of the last 90 days is in the last "
            f"{config.new_people_days} days",
        )
    )
    add(Feature("contacts_known", "breadth", "people known at the account (contacts and leads)"))
    for d in w:
        add(Feature(f"events_{d}d", "depth", f"all events, last {d} days"))
        add(
            Feature(
                f"high_intent_events_{d}d",
                "depth",
                f"pricing, demo, comparison and trial events, last {d} days",
            )
        )
    for t in EVENT_TYPES:
        add(Feature(f"events_{t}_90d", "depth", f"{t.replace('_', ' ')} events, last 90 days"))
    add(
        Feature(
            "events_other_type_90d", "depth", "events of types outside the known list, last 90 days"
        )
    )
    for c in CHANNELS:
        add(
            Feature(
                f"events_channel_{c}_90d",
                "depth",
                f"events on the {c.replace('_', ' ')} channel, last 90 days",
            )
        )
    for d in (30, 90):
        add(
            Feature(
                f"engagement_score_{d}d",
                "depth",
                f"events weighted by type and weight, last {d} days",
            )
        )
    add(
        Feature(
            "high_intent_people_30d",
            "depth",
            "distinct known people with a high-intent event, last 30 days",
        )
    )
    add(
        Feature(
            "high_intent_departments_30d",
            "depth",
            "distinct departments with a high-intent event, last 30 days",
        )
    )
    add(
        Feature(
            "top_person_share_90d",
            "concentration",
            "share of known people's events from the single most active person, last 90 days",
        )
    )
    add(
        Feature(
            "days_since_last_event",
            "recency",
            "days from the last event to as_of (missing: none in the last 90 days)",
        )
    )
    add(
        Feature(
            "days_since_last_high_intent_event",
            "recency",
            "days from the last high-intent event to as_of (missing: none in 90 days)",
        )
    )
    add(
        Feature(
            "momentum_7d_vs_prior_28d",
            "momentum",
            "events in the last 7 days over the weekly rate of the 28 days before (smoothed)",
        )
    )
    add(
        Feature(
            "momentum_30d_vs_prior_60d",
            "momentum",
            "events in the last 30 days over the 30-day rate of the 60 days before (smoothed)",
        )
    )
    add(
        Feature(
            "intent_max_score_28d",
            "intent",
            "highest third-party intent score published in the last 28 days",
        )
    )
    add(
        Feature(
            "intent_max_score_90d",
            "intent",
            "highest third-party intent score published in the last 90 days",
        )
    )
    add(
        Feature(
            "intent_mean_score_90d",
            "intent",
            "mean third-party intent score published in the last 90 days",
        )
    )
    add(
        Feature(
            "intent_topics_surging_28d",
            "intent",
            f"distinct topics scoring {INTENT_SURGE_SCORE:.0f}+ in the last 28 days",
        )
    )
    add(
        Feature(
            "intent_weeks_surging_90d",
            "intent",
            f"weeks with any topic scoring {INTENT_SURGE_SCORE:.0f}+ in the last 90 days",
        )
    )
    for c in FIT_CATEGORIES:
        add(Feature(c, "fit", f"firmographic: {c.replace('_', ' ')} (category)"))
    add(Feature("employee_count", "fit", "firmographic: number of employees"))
    add(Feature("account_age_days", "fit", "days since the account entered the CRM"))
    for c in extra_fit:
        add(Feature(c, "fit", f"firmographic from the accounts table: {c}"))
    add(Feature("opportunities_won_before", "history", "opportunities won and closed before as_of"))
    add(
        Feature(
            "opportunities_lost_before", "history", "opportunities lost and closed before as_of"
        )
    )
    add(
        Feature(
            "new_business_lost_before", "history", "new-business opportunities lost before as_of"
        )
    )
    add(
        Feature(
            "days_since_last_closed_opportunity",
            "history",
            "days since the last opportunity closed",
        )
    )
    add(
        Feature(
            "is_customer",
            "history",
            "1 if the account has won a deal and not lost its latest renewal",
        )
    )
    add(
        Feature(
            "is_former_customer",
            "history",
            "1 if the account was a customer and lost its latest renewal",
        )
    )
    add(
        Feature(
            "mql_points_max_90d",
            "lead_baseline",
            "lead points of the account's best person, last 90 days (the MQL rule)",
        )
    )
    add(
        Feature(
            "mql_people_90d",
            "lead_baseline",
            f"people at {MQL_THRESHOLD}+ lead points, last 90 days (MQLs)",
        )
    )
    return f


# Columns returned beside the features, for labels and serving, never fed to a model.
META_COLUMNS = ("account_id", "as_of", "in_pipeline")


def segment_positions(sizes: np.ndarray) -> np.ndarray:
    """0..n-1 within each segment of the given sizes, concatenated."""
    sizes = np.asarray(sizes, dtype=np.int64)
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    positions: np.ndarray = np.arange(int(sizes.sum()), dtype=np.int64) - starts
    return positions


def _seconds(values: pd.Series) -> np.ndarray:
    """UTC timestamps -> whole seconds since 1970 (int64); missing -> int64 min."""
    stamps = pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")
    micros = stamps.to_numpy(dtype="datetime64[us]").astype(np.int64)
    seconds: np.ndarray = np.floor_divide(micros, 1_000_000)
    return seconds


class _Rows:
    """One table sorted by (account code, time) so snapshots can search their rows."""

    def __init__(self, code: np.ndarray, seconds: np.ndarray) -> None:
        valid = (code >= 0) & (seconds >= 0)  # missing times and times before 1970 are never seen
        self.order = np.flatnonzero(valid)[np.lexsort((seconds[valid], code[valid]))]
        self.key = (code[self.order] << 32) + seconds[self.order]
        self.seconds = seconds

    def pairs(
        self, snap_code: np.ndarray, snap_s: np.ndarray, lookback_days: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(snapshot index, row index, age in days) for rows in [as_of - lookback, as_of)."""
        snap_key = (snap_code << 32) + snap_s
        first = np.maximum(snap_s - int(lookback_days * _DAY), 0)
        lo = np.searchsorted(self.key, (snap_code << 32) + first, side="left")
        hi = np.searchsorted(self.key, snap_key, side="left")
        sizes = hi - lo
        snap_idx = np.repeat(np.arange(len(snap_key)), sizes)
        row_idx = self.order[np.repeat(lo, sizes) + segment_positions(sizes)]
        age = (snap_s[snap_idx] - self.seconds[row_idx]) / _DAY
        return snap_idx, row_idx, age


def _codes(values: pd.Series, index: pd.Index) -> np.ndarray:
    return encode(values, index)


def _lookup(values: pd.Series, vocabulary: tuple[str, ...]) -> np.ndarray:
    """Value -> position in vocabulary; unknown or missing -> len(vocabulary)."""
    codes = encode(values, vocabulary)
    return np.where(codes < 0, len(vocabulary), codes)


def _per_type(table: dict[str, float] | tuple[str, ...], other: float) -> np.ndarray:
    """A value per EVENT_TYPES code (the last for other types)."""
    if isinstance(table, tuple):
        return np.array([float(t in table) for t in EVENT_TYPES] + [other])
    return np.array([table[t] for t in EVENT_TYPES] + [other])


class _Groups:
    """Sorted unique (snapshot, key) groups of a pair table, for per-group reductions."""

    def __init__(self, snap_idx: np.ndarray, key: np.ndarray, n_keys: int) -> None:
        combined = snap_idx.astype(np.int64) * max(n_keys, 1) + key
        self.order = np.argsort(combined, kind="stable")
        ordered = combined[self.order]
        self.starts = (
            np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
            if len(ordered)
            else np.array([], dtype=np.int64)
        )
        self.snap = ordered[self.starts] // max(n_keys, 1)
        self.key = ordered[self.starts] % max(n_keys, 1)
        self.size = np.diff(np.r_[self.starts, len(ordered)])

    def min(self, values: np.ndarray) -> np.ndarray:
        if not len(self.starts):
            return np.array([], dtype=float)
        result: np.ndarray = np.minimum.reduceat(values[self.order], self.starts)
        return result

    def max(self, values: np.ndarray) -> np.ndarray:
        if not len(self.starts):
            return np.array([], dtype=float)
        result: np.ndarray = np.maximum.reduceat(values[self.order], self.starts)
        return result

    def sum(self, values: np.ndarray) -> np.ndarray:
        if not len(self.starts):
            return np.array([], dtype=float)
        result: np.ndarray = np.add.reduceat(values[self.order], self.starts)
        return result


def _count(
    snap_idx: np.ndarray, n: int, mask: np.ndarray | None = None, weights: np.ndarray | None = None
) -> np.ndarray:
    if mask is not None:
        snap_idx = snap_idx[mask]
        weights = None if weights is None else weights[mask]
    counts: np.ndarray = np.bincount(snap_idx, weights=weights, minlength=n)
    return counts.astype(float) if weights is not None else counts


def _distinct(snap_idx: np.ndarray, key: np.ndarray, n: int) -> np.ndarray:
    if not len(snap_idx):
        return np.zeros(n, dtype=np.int64)
    width = int(key.max()) + 1
    unique = np.unique(snap_idx.astype(np.int64) * width + key)
    counts: np.ndarray = np.bincount(unique // width, minlength=n)
    return counts


def _group_min(snap_idx: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    result = np.full(n, np.inf)
    np.minimum.at(result, snap_idx, values)
    return np.where(np.isposinf(result), np.nan, result)


def _group_max(snap_idx: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    result = np.full(n, -np.inf)
    np.maximum.at(result, snap_idx, values)
    return np.where(np.isneginf(result), np.nan, result)


def _event_features(
    out: dict[str, np.ndarray],
    snap_code: np.ndarray,
    snap_s: np.ndarray,
    events: pd.DataFrame,
    people: pd.DataFrame,
    account_index: pd.Index,
    config: FeatureConfig,
) -> None:
    n = len(snap_code)
    ev_code = _codes(events["account_id"], account_index)
    ev_s = _seconds(events["timestamp"])
    rows = _Rows(ev_code, ev_s)
    lookback = float(max(max(config.windows), 90))
    snap_idx, row_idx, age = rows.pairs(snap_code, snap_s, lookback)

    event_type = _lookup(events["event_type"], EVENT_TYPES)
    type_code = event_type[row_idx]
    channel_code = _lookup(events["channel"], CHANNELS)[row_idx]
    high = _per_type(HIGH_INTENT_TYPES, 0.0)[type_code] > 0
    weight = events["weight"].to_numpy(dtype=float)[row_idx]
    type_weight = _per_type(ENGAGEMENT_WEIGHTS, 1.0)[type_code]
    points = _per_type({k: float(v) for k, v in MQL_POINTS.items()}, 0.0)[type_code]

    event_person = encode(events["person_id"], people["person_id"])
    person_code = event_person[row_idx]
    anonymous = events["person_id"].isna().to_numpy()[row_idx]

    for d in config.windows:
        in_d = age < d
        out[f"events_{d}d"] = _count(snap_idx, n, in_d)
        out[f"high_intent_events_{d}d"] = _count(snap_idx, n, in_d & high)
    e90 = _count(snap_idx, n, age < 90)
    for d in (30, 90):
        out[f"anonymous_events_{d}d"] = _count(snap_idx, n, (age < d) & anonymous)
        out[f"engagement_score_{d}d"] = _count(snap_idx, n, age < d, weights=type_weight * weight)
    out["anonymous_share_90d"] = np.divide(
        out["anonymous_events_90d"], e90, out=np.full(n, np.nan), where=e90 > 0
    )
    in90 = age < 90
    by_type = np.bincount(
        snap_idx[in90] * (len(EVENT_TYPES) + 1) + type_code[in90],
        minlength=n * (len(EVENT_TYPES) + 1),
    ).reshape(n, len(EVENT_TYPES) + 1)
    for i, t in enumerate(EVENT_TYPES):
        out[f"events_{t}_90d"] = by_type[:, i]
    out["events_other_type_90d"] = by_type[:, -1]
    by_channel = np.bincount(
        snap_idx[in90] * (len(CHANNELS) + 1) + channel_code[in90], minlength=n * (len(CHANNELS) + 1)
    ).reshape(n, len(CHANNELS) + 1)
    for i, c in enumerate(CHANNELS):
        out[f"events_channel_{c}_90d"] = by_channel[:, i]

    prior28 = _count(snap_idx, n, (age >= 7) & (age < 35))
    out["momentum_7d_vs_prior_28d"] = (_count(snap_idx, n, age < 7) + 1) / (prior28 / 4 + 1)
    prior60 = _count(snap_idx, n, (age >= 30) & (age < 90))
    out["momentum_30d_vs_prior_60d"] = (_count(snap_idx, n, age < 30) + 1) / (prior60 / 2 + 1)

    # within the lookback only: every snapshot has that much history, so an account seen on
    # the first snapshot of the data and one seen years later mean the same thing
    out["days_since_last_event"] = _group_min(snap_idx, age, n)
    out["days_since_last_high_intent_event"] = _group_min(snap_idx[high], age[high], n)

    # one row per (snapshot, known person): the basis of breadth and concentration
    known = (person_code >= 0) & in90
    groups = _Groups(snap_idx[known], person_code[known], len(people))
    low_signal = _per_type(LOW_SIGNAL_TYPES, 0.0)[type_code[known]] > 0
    p_age = groups.min(np.where(low_signal, np.inf, age[known]))
    p_age_high = groups.min(np.where(high[known], age[known], np.inf))
    p_points = groups.sum(np.where(age[known] < MQL_WINDOW_DAYS, points[known], 0.0))
    engaged = p_age < 90
    p_snap, p_person = groups.snap, groups.key
    for d in config.windows:
        out[f"people_engaged_{d}d"] = _count(p_snap, n, p_age < d)
    department = people["department"].to_numpy()
    seniority = people["seniority"].to_numpy()
    role = people["buying_role"].to_numpy()
    dept_code = pd.factorize(department, use_na_sentinel=True)[0][p_person]
    sen_code = pd.factorize(seniority, use_na_sentinel=True)[0][p_person]
    for d in (30, 90):
        m = (p_age < d) & (dept_code >= 0)
        out[f"departments_engaged_{d}d"] = _distinct(p_snap[m], dept_code[m], n)
    m = engaged & (sen_code >= 0)
    out["seniorities_engaged_90d"] = _distinct(p_snap[m], sen_code[m], n)
    out["senior_people_engaged_90d"] = _count(
        p_snap, n, engaged & np.isin(seniority[p_person], SENIOR_LEVELS)
    )
    p_role = role[p_person]
    covered = np.zeros(n, dtype=np.int64)
    for r in TRACKED_ROLES:
        flag = (_count(p_snap, n, engaged & (p_role == r)) > 0).astype(np.int64)
        out[f"role_{r}_engaged_90d"] = flag
        covered += flag
    out["buying_roles_engaged_90d"] = covered
    high30 = p_age_high < 30
    out["high_intent_people_30d"] = _count(p_snap, n, high30)
    m = high30 & (dept_code >= 0)
    out["high_intent_departments_30d"] = _distinct(p_snap[m], dept_code[m], n)
    top = np.zeros(n)
    np.maximum.at(top, p_snap, groups.size.astype(float))
    known_events = _count(p_snap, n, None, weights=groups.size.astype(float))
    out["top_person_share_90d"] = np.divide(
        top, known_events, out=np.full(n, np.nan), where=known_events > 0
    )
    best = np.zeros(n)
    np.maximum.at(best, p_snap, p_points)
    out["mql_points_max_90d"] = best
    out["mql_people_90d"] = _count(p_snap, n, p_points >= MQL_THRESHOLD)

    # new: every event of the person in the 90-day window falls in the last few days
    p_oldest = groups.max(age[known])
    out[f"new_people_{config.new_people_days}d"] = _count(
        p_snap, n, p_oldest < config.new_people_days
    )
    person_account = encode(people["account_id"], account_index)
    contacts = np.bincount(person_account[person_account >= 0], minlength=len(account_index))
    out["contacts_known"] = contacts[snap_code]


def _intent_features(
    out: dict[str, np.ndarray],
    snap_code: np.ndarray,
    snap_s: np.ndarray,
    intent: pd.DataFrame,
    account_index: pd.Index,
    config: FeatureConfig,
) -> None:
    n = len(snap_code)
    published = _seconds(intent["date"]) + config.intent_delay_days * _DAY
    rows = _Rows(_codes(intent["account_id"], account_index), published)
    snap_idx, row_idx, age = rows.pairs(snap_code, snap_s, 90)
    score = intent["score"].to_numpy(dtype=float)[row_idx]
    in28 = age < 28
    out["intent_max_score_28d"] = _group_max(snap_idx[in28], score[in28], n)
    out["intent_max_score_90d"] = _group_max(snap_idx, score, n)
    total = _count(snap_idx, n, None, weights=score)
    records = _count(snap_idx, n)
    out["intent_mean_score_90d"] = np.divide(
        total, records, out=np.full(n, np.nan), where=records > 0
    )
    surging = score >= INTENT_SURGE_SCORE
    topic = pd.factorize(intent["topic"].to_numpy())[0][row_idx]
    m = surging & in28
    out["intent_topics_surging_28d"] = _distinct(snap_idx[m], topic[m], n)
    week = (published[row_idx] // (7 * _DAY)).astype(np.int64)
    out["intent_weeks_surging_90d"] = _distinct(
        snap_idx[surging], week[surging] - int(week.min(initial=0)), n
    )


def _history_features(
    out: dict[str, np.ndarray],
    snap_code: np.ndarray,
    snap_s: np.ndarray,
    opportunities: pd.DataFrame,
    account_index: pd.Index,
) -> None:
    n = len(snap_code)
    opps = opportunities
    rows = _Rows(_codes(opps["account_id"], account_index), _seconds(opps["created_at"]))
    snap_idx, row_idx, _ = rows.pairs(snap_code, snap_s, _FOREVER_DAYS)
    closed_s = _seconds(opps["closed_at"])[row_idx]
    has_closed = opps["closed_at"].notna().to_numpy()[row_idx]
    closed = has_closed & (closed_s < snap_s[snap_idx])
    status = opps["status"].to_numpy()[row_idx]
    kind = opps["type"].to_numpy()[row_idx]
    won = closed & (status == "won")
    lost = closed & (status == "lost")
    out["opportunities_won_before"] = _count(snap_idx, n, won)
    out["opportunities_lost_before"] = _count(snap_idx, n, lost)
    out["new_business_lost_before"] = _count(snap_idx, n, lost & (kind == "new_business"))
    last_closed = _group_max(snap_idx[closed], closed_s[closed].astype(float), n)
    out["days_since_last_closed_opportunity"] = (snap_s - last_closed) / _DAY
    # the latest closed renewal decides whether a past customer still is one
    renewal = closed & (kind == "renewal")
    latest = pd.DataFrame(
        {"snap": snap_idx[renewal], "closed": closed_s[renewal], "lost": status[renewal] == "lost"}
    )
    churned = np.zeros(n, dtype=bool)
    if len(latest):
        last = latest.sort_values(["snap", "closed"], kind="stable").groupby("snap").last()
        churned[last.index.to_numpy()] = last["lost"].to_numpy()
    ever_won = out["opportunities_won_before"] > 0
    out["is_customer"] = (ever_won & ~churned).astype(np.int64)
    out["is_former_customer"] = (ever_won & churned).astype(np.int64)
    out["in_pipeline"] = (_count(snap_idx, n, ~closed) > 0).astype(np.int64)


def fit_categories(accounts: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """The sorted category levels of every categorical fit column, to keep them stable."""
    return {
        c: tuple(sorted(accounts[c].dropna().astype("str").unique()))
        for c in (*FIT_CATEGORIES, *extra_fit_columns(accounts))
        if c in accounts and not pd.api.types.is_numeric_dtype(accounts[c])
    }


def extra_fit_columns(accounts: pd.DataFrame) -> tuple[str, ...]:
    """Firmographic columns beyond the contract's, used as fit features as they are."""
    known = {"account_id", "name", "domain", "created_at", "employee_count", *FIT_CATEGORIES}
    return tuple(c for c in accounts.columns if c not in known and not c.startswith("_"))


def _fit_features(
    frame: pd.DataFrame,
    accounts: pd.DataFrame,
    snap_code: np.ndarray,
    snap_s: np.ndarray,
    config: FeatureConfig,
) -> None:
    levels = config.categories or fit_categories(accounts)
    for column in (*FIT_CATEGORIES, *extra_fit_columns(accounts)):
        values = (
            accounts[column]
            if column in accounts
            else pd.Series(pd.NA, index=accounts.index, dtype="str")
        )
        if column in levels:
            taken = values.astype("str").to_numpy()[snap_code]
            frame[column] = pd.Categorical(taken, categories=list(levels[column]))
        else:
            frame[column] = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)[snap_code]
    count = (
        accounts["employee_count"]
        if "employee_count" in accounts
        else pd.Series(np.nan, index=accounts.index)
    )
    frame["employee_count"] = count.to_numpy(dtype=float)[snap_code]
    if "created_at" in accounts:
        created = _seconds(accounts["created_at"]).astype(float)
        created[accounts["created_at"].isna().to_numpy()] = np.nan
        frame["account_age_days"] = (snap_s - created[snap_code]) / _DAY
    else:
        frame["account_age_days"] = np.nan


def build_features(
    snapshots: pd.DataFrame,
    accounts: pd.DataFrame,
    people: pd.DataFrame,
    events: pd.DataFrame,
    intent: pd.DataFrame,
    opportunities: pd.DataFrame,
    config: FeatureConfig = FeatureConfig(),
) -> pd.DataFrame:
    """One feature row per (account_id, as_of) snapshot, in the snapshots' order.

    Tables are the validated canonical tables (``features.tables``); they may hold more
    accounts than the snapshots ask for. Snapshots of accounts missing from ``accounts`` raise.
    """
    account_index = pd.Index(accounts["account_id"])
    snap_code = _codes(snapshots["account_id"], account_index)
    if (snap_code < 0).any():
        missing = snapshots["account_id"].to_numpy()[snap_code < 0][:3].tolist()
        raise ValueError(f"snapshots.account_id: {missing} not in the accounts table")
    snap_s = _seconds(snapshots["as_of"])
    out: dict[str, np.ndarray] = {}
    _event_features(out, snap_code, snap_s, events, people, account_index, config)
    _intent_features(out, snap_code, snap_s, intent, account_index, config)
    _history_features(out, snap_code, snap_s, opportunities, account_index)
    frame = pd.DataFrame(
        {
            "account_id": snapshots["account_id"].astype("str").to_numpy(),
            "as_of": pd.to_datetime(snap_s, unit="s", utc=True).astype("datetime64[us, UTC]"),
        }
    )
    _fit_features(frame, accounts, snap_code, snap_s, config)
    names = [f.name for f in catalogue(config, extra_fit_columns(accounts))]
    numeric = pd.DataFrame({k: np.asarray(v, dtype=float) for k, v in out.items()})
    frame = pd.concat([frame, numeric], axis=1)
    return frame[["account_id", "as_of", "in_pipeline", *[c for c in names if c in frame.columns]]]
