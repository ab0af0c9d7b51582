"""The feature families (docs/features.md) as one pure function: tables in, one row per
snapshot out.

``build_features(snapshots, ...)`` is the only entry point. It serves the CLI (local and Spark
engines) and the HTTP service alike. It is point in time: a snapshot at ``as_of`` sees events
with ``timestamp < as_of``, intent records published before ``as_of`` (a weekly record dated
``d`` is published at ``d + intent_delay_days``), and opportunities created before ``as_of``
whose outcome counts only once ``closed_at < as_of``. ``as_of`` is taken to whole seconds.

Each family is a small function returning its columns (the fit family's are in
``features.fit``); the pairs of (snapshot, row) they aggregate come from ``features.windows``.
Every column is one the catalogue (``features.catalogue``) defines, in its order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.catalogue import (
    ENGAGEMENT_WEIGHTS,
    HIGH_INTENT_TYPES,
    INTENT_SURGE_SCORE,
    LOW_SIGNAL_TYPES,
    META_COLUMNS,
    MQL_POINTS,
    MQL_THRESHOLD,
    MQL_WINDOW_DAYS,
    SENIOR_LEVELS,
    TRACKED_ROLES,
    catalogue,
)
from features.contract import ACCOUNT_FROM_PERSON, empty_table
from features.encode import encode
from features.fit import HISTORY_CAP_DAYS, add_fit_columns, fit_categories
from features.settings import FeatureSpec
from features.vocabularies import CHANNELS, EVENT_TYPES, SENIORITY_LEVELS
from features.windows import (
    DAY_SECONDS,
    FOREVER_DAYS,
    Groups,
    TimeIndex,
    count,
    distinct,
    group_max,
    group_min,
    seconds,
)

Columns = dict[str, np.ndarray]
WEEK_SECONDS = 7 * DAY_SECONDS


def _vocabulary_codes(values: pd.Series, vocabulary: tuple[str, ...]) -> np.ndarray:
    """Value -> position in vocabulary; unknown or missing -> len(vocabulary)."""
    codes = encode(values, vocabulary)
    return np.where(codes < 0, len(vocabulary), codes)


def _per_event_type(table: dict[str, float] | tuple[str, ...], other: float) -> np.ndarray:
    """A value per EVENT_TYPES code (the last for other types): a weight table, or 1.0 for
    the types listed in a tuple."""
    if isinstance(table, tuple):
        return np.array([float(t in table) for t in EVENT_TYPES] + [other])
    return np.array([table[t] for t in EVENT_TYPES] + [other])


@dataclass
class _EventPairs:
    """Each snapshot's events within the lookback: one entry per (snapshot, event)."""

    n: int
    snap: np.ndarray
    age: np.ndarray
    type_code: np.ndarray
    channel_code: np.ndarray
    high_intent: np.ndarray
    weight: np.ndarray
    person_code: np.ndarray
    anonymous: np.ndarray
    week: np.ndarray  # the event's week since 1970

    @classmethod
    def find(
        cls,
        snap_code: np.ndarray,
        snap_s: np.ndarray,
        events: pd.DataFrame,
        people: pd.DataFrame,
        account_index: pd.Index,
        lookback_days: float,
    ) -> _EventPairs:
        index = TimeIndex(encode(events["account_id"], account_index), seconds(events["timestamp"]))
        snap, row, age = index.pairs(snap_code, snap_s, lookback_days)
        person = encode(events["person_id"], people["person_id"])[row]
        # a person not yet in the CRM at as_of is an unknown visitor to that snapshot
        not_yet = person >= 0
        not_yet[not_yet] = known_since(people)[person[not_yet]] >= snap_s[snap[not_yet]]
        if ACCOUNT_FROM_PERSON in events:
            # ... and when only that person's record ties the event to the account, the
            # snapshot could not have placed the visit at all
            unplaced = not_yet & events[ACCOUNT_FROM_PERSON].to_numpy(dtype=bool)[row]
            if unplaced.any():
                keep = ~unplaced
                snap, row, age, person, not_yet = (
                    a[keep] for a in (snap, row, age, person, not_yet)
                )
        type_code = _vocabulary_codes(events["event_type"], EVENT_TYPES)[row]
        return cls(
            n=len(snap_code),
            snap=snap,
            age=age,
            type_code=type_code,
            channel_code=_vocabulary_codes(events["channel"], CHANNELS)[row],
            high_intent=_per_event_type(HIGH_INTENT_TYPES, 0.0)[type_code] > 0,
            weight=events["weight"].to_numpy(dtype=float)[row],
            person_code=np.where(not_yet, -1, person),
            anonymous=events["person_id"].isna().to_numpy()[row] | not_yet,
            week=seconds(events["timestamp"])[row] // WEEK_SECONDS,
        )

    def count(
        self, mask: np.ndarray | None = None, weights: np.ndarray | None = None
    ) -> np.ndarray:
        return count(self.snap, self.n, mask, weights)

    def per_code(self, codes: np.ndarray, n_codes: int, mask: np.ndarray) -> np.ndarray:
        """(snapshots x codes) counts of the masked pairs."""
        flat = np.bincount(self.snap[mask] * n_codes + codes[mask], minlength=self.n * n_codes)
        return flat.reshape(self.n, n_codes)


def _depth(pairs: _EventPairs, windows: tuple[int, ...]) -> Columns:
    """Event counts by window, type and channel; anonymous and weighted engagement."""
    age, out = pairs.age, {}
    for d in windows:
        out[f"events_{d}d"] = pairs.count(age < d)
        out[f"high_intent_events_{d}d"] = pairs.count((age < d) & pairs.high_intent)
    type_weight = _per_event_type(ENGAGEMENT_WEIGHTS, 1.0)[pairs.type_code]
    for d in (30, 90):
        out[f"anonymous_events_{d}d"] = pairs.count((age < d) & pairs.anonymous)
        out[f"engagement_score_{d}d"] = pairs.count(age < d, weights=type_weight * pairs.weight)
    last90 = pairs.count(age < 90)
    out["anonymous_share_90d"] = np.divide(
        out["anonymous_events_90d"], last90, out=np.full(pairs.n, np.nan), where=last90 > 0
    )
    by_type = pairs.per_code(pairs.type_code, len(EVENT_TYPES) + 1, age < 90)
    for i, event_type in enumerate(EVENT_TYPES):
        out[f"events_{event_type}_90d"] = by_type[:, i]
    out["events_other_type_90d"] = by_type[:, -1]
    by_channel = pairs.per_code(pairs.channel_code, len(CHANNELS) + 1, age < 90)
    for i, channel in enumerate(CHANNELS):
        out[f"events_channel_{channel}_90d"] = by_channel[:, i]
    return out


def _recency_and_momentum(pairs: _EventPairs) -> Columns:
    """Days since the last (high-intent) event; recent activity over the rate before it."""
    age = pairs.age
    prior28 = pairs.count((age >= 7) & (age < 35))
    prior60 = pairs.count((age >= 30) & (age < 90))
    high = pairs.high_intent
    return {
        "momentum_7d_vs_prior_28d": (pairs.count(age < 7) + 1) / (prior28 / 4 + 1),
        "momentum_30d_vs_prior_60d": (pairs.count(age < 30) + 1) / (prior60 / 2 + 1),
        # within the lookback only: every snapshot has that much history, so an account seen
        # on the first snapshot of the data and one seen years later mean the same thing
        "days_since_last_event": group_min(pairs.snap, age, pairs.n),
        "days_since_last_high_intent_event": group_min(pairs.snap[high], age[high], pairs.n),
    }


def _buying_group(pairs: _EventPairs, people: pd.DataFrame, spec: FeatureSpec) -> Columns:
    """Breadth, concentration and lead points, from one row per (snapshot, known person)."""
    n = pairs.n
    known = (pairs.person_code >= 0) & (pairs.age < 90)
    age, high = pairs.age[known], pairs.high_intent[known]
    groups = Groups(pairs.snap[known], pairs.person_code[known], len(people))
    low_signal = _per_event_type(LOW_SIGNAL_TYPES, 0.0)[pairs.type_code[known]] > 0
    points = _per_event_type({k: float(v) for k, v in MQL_POINTS.items()}, 0.0)
    person_age = groups.min(np.where(low_signal, np.inf, age))  # last engaged, opens aside
    person_age_high = groups.min(np.where(high, age, np.inf))
    person_points = groups.sum(np.where(age < MQL_WINDOW_DAYS, points[pairs.type_code[known]], 0.0))
    engaged = person_age < 90
    snap, person = groups.snap, groups.key
    department = pd.factorize(people["department"].to_numpy(), use_na_sentinel=True)[0][person]
    seniority = people["seniority"].to_numpy()[person]
    seniority_code = pd.factorize(people["seniority"].to_numpy(), use_na_sentinel=True)[0][person]
    role = people["buying_role"].to_numpy()[person]

    out: Columns = {}
    for d in spec.windows:
        out[f"people_engaged_{d}d"] = count(snap, n, person_age < d)
    for d in (30, 90):
        m = (person_age < d) & (department >= 0)
        out[f"departments_engaged_{d}d"] = distinct(snap[m], department[m], n)
    m = engaged & (seniority_code >= 0)
    out["seniorities_engaged_90d"] = distinct(snap[m], seniority_code[m], n)
    out["senior_people_engaged_90d"] = count(snap, n, engaged & np.isin(seniority, SENIOR_LEVELS))
    covered = np.zeros(n, dtype=np.int64)
    for r in TRACKED_ROLES:
        flag = (count(snap, n, engaged & (role == r)) > 0).astype(np.int64)
        out[f"role_{r}_engaged_90d"] = flag
        covered += flag
    out["buying_roles_engaged_90d"] = covered
    high30 = person_age_high < 30
    out["high_intent_people_30d"] = count(snap, n, high30)
    m = high30 & (department >= 0)
    out["high_intent_departments_30d"] = distinct(snap[m], department[m], n)
    top = np.zeros(n)
    np.maximum.at(top, snap, groups.size.astype(float))
    known_events = count(snap, n, None, weights=groups.size.astype(float))
    out["top_person_share_90d"] = np.divide(
        top, known_events, out=np.full(n, np.nan), where=known_events > 0
    )
    best = np.zeros(n)
    np.maximum.at(best, snap, person_points)
    out["mql_points_max_90d"] = best
    out["mql_people_90d"] = count(snap, n, person_points >= MQL_THRESHOLD)
    # new: every event of the person in the 90-day window falls in the last few days
    oldest = groups.max(age)
    new_days = spec.new_people_days
    out[f"new_people_{new_days}d"] = count(snap, n, oldest < new_days)
    first_engaged = groups.max(np.where(low_signal, -np.inf, age))
    rank = _vocabulary_codes(people["seniority"], SENIORITY_LEVELS)[person]
    role_code = _vocabulary_codes(people["buying_role"], TRACKED_ROLES)[person]
    out.update(_group_change(snap, n, person_age, first_engaged, role_code, department, rank))
    return out


def _group_change(
    snap: np.ndarray,
    n: int,
    last_engaged: np.ndarray,
    first_engaged: np.ndarray,
    role_code: np.ndarray,
    department: np.ndarray,
    rank: np.ndarray,
) -> Columns:
    """How the buying group changes: the last 30 days against the 60 days before, from one
    row per (snapshot, known person) with the ages of their first and last engagement."""
    recent = last_engaged < 30  # engaged in the last 30 days
    prior = (first_engaged >= 30) & (first_engaged < 90)  # engaged in the 60 days before
    new = (first_engaged >= 0) & (first_engaged < 30)  # first engaged in the last 30 days
    tracked = role_code < len(TRACKED_ROLES)
    known_rank = rank < len(SENIORITY_LEVELS)
    climbed = group_max(snap[recent & known_rank], rank[recent & known_rank].astype(float), n)
    before = group_max(snap[prior & known_rank], rank[prior & known_rank].astype(float), n)
    new_prior = count(snap, n, prior)  # first engaged (within the 90 days) 30-90 days ago
    return {
        "buying_roles_engaged_30d": distinct(
            snap[recent & tracked], role_code[recent & tracked], n
        ),
        "buying_roles_new_30d": _new_keys(snap, role_code, recent & tracked, prior & tracked, n),
        "departments_new_30d": _new_keys(
            snap, department, recent & (department >= 0), prior & (department >= 0), n
        ),
        "seniority_max_30d": climbed,
        "seniority_climb_30d": climbed - before,
        "senior_people_new_30d": count(
            snap, n, new & (rank >= SENIORITY_LEVELS.index("director")) & known_rank
        ),
        "new_people_30d": count(snap, n, new),
        "new_people_acceleration_30d": (count(snap, n, new) + 1) / (new_prior / 2 + 1),
    }


def _new_keys(
    snap: np.ndarray, key: np.ndarray, recent: np.ndarray, prior: np.ndarray, n: int
) -> np.ndarray:
    """Per snapshot, distinct keys among the ``recent`` rows that no ``prior`` row has."""
    width = int(key.max(initial=0)) + 1
    now = np.unique(snap[recent].astype(np.int64) * width + key[recent])
    then = np.unique(snap[prior].astype(np.int64) * width + key[prior])
    fresh = np.setdiff1d(now, then, assume_unique=True)
    counts: np.ndarray = np.bincount(fresh // width, minlength=n)
    return counts


def _converging(pairs: _EventPairs) -> Columns:
    """Weeks of the last 8 in which anonymous visitors and known people (opens aside) were
    both active: the dark funnel and the known contacts of one account moving together."""
    weeks = 8
    low_signal = _per_event_type(LOW_SIGNAL_TYPES, 0.0)[pairs.type_code] > 0
    recent = pairs.age < 7 * weeks
    week = np.floor(pairs.age / 7).astype(np.int64)
    anonymous = recent & pairs.anonymous
    known = recent & ~pairs.anonymous & (pairs.person_code >= 0) & ~low_signal
    flat = pairs.snap * weeks + week
    both = (np.bincount(flat[anonymous], minlength=pairs.n * weeks) > 0) & (
        np.bincount(flat[known], minlength=pairs.n * weeks) > 0
    )
    return {"anonymous_and_known_weeks_56d": both.reshape(pairs.n, weeks).sum(axis=1)}


def known_since(people: pd.DataFrame) -> np.ndarray:
    """Seconds since 1970 from which each person is in the CRM (``people.created_at``); without
    a date (no column, or a missing value) a person is taken as known at every snapshot."""
    if "created_at" not in people:
        return np.zeros(len(people), dtype=np.int64)
    since: np.ndarray = np.maximum(seconds(people["created_at"]), 0)
    return since


def _contacts(
    snap_code: np.ndarray, snap_s: np.ndarray, people: pd.DataFrame, account_index: pd.Index
) -> Columns:
    """People who entered the CRM in the 90 days before as_of (missing when the export does not
    date its people). A count of all people known would grow with the calendar, not with
    anything the account does: a stable world would look like drift, and old accounts like
    busy ones."""
    if "created_at" not in people or people["created_at"].isna().all():
        return {"contacts_added_90d": np.full(len(snap_code), np.nan)}
    index = TimeIndex(encode(people["account_id"], account_index), known_since(people))
    before = index.count_before(snap_code, np.maximum(snap_s - 90 * DAY_SECONDS, 0))
    return {"contacts_added_90d": (index.count_before(snap_code, snap_s) - before).astype(float)}


def _intent(
    snap_code: np.ndarray,
    snap_s: np.ndarray,
    intent: pd.DataFrame,
    account_index: pd.Index,
    spec: FeatureSpec,
    pairs: _EventPairs,
) -> Columns:
    """Third-party intent published before as_of: peak, mean, surging topics and weeks, and
    the surging weeks in which the account was also active first-party (``pairs``)."""
    n = len(snap_code)
    published = seconds(intent["date"]) + spec.intent_delay_days * DAY_SECONDS
    index = TimeIndex(encode(intent["account_id"], account_index), published)
    snap, row, age = index.pairs(snap_code, snap_s, 90)
    score = intent["score"].to_numpy(dtype=float)[row]
    in28 = age < 28
    total, records = count(snap, n, None, weights=score), count(snap, n)
    surging = score >= INTENT_SURGE_SCORE
    topic = pd.factorize(intent["topic"].to_numpy())[0][row]
    week = (published[row] // WEEK_SECONDS).astype(np.int64)
    dated = (seconds(intent["date"])[row] // WEEK_SECONDS).astype(np.int64)
    active = _per_event_type(LOW_SIGNAL_TYPES, 0.0)[pairs.type_code] == 0
    return {
        "intent_max_score_28d": group_max(snap[in28], score[in28], n),
        "intent_max_score_90d": group_max(snap, score, n),
        "intent_mean_score_90d": np.divide(
            total, records, out=np.full(n, np.nan), where=records > 0
        ),
        "intent_topics_surging_28d": distinct(snap[surging & in28], topic[surging & in28], n),
        "intent_weeks_surging_90d": distinct(
            snap[surging], week[surging] - int(week.min(initial=0)), n
        ),
        "intent_weeks_surging_with_visits_90d": _shared_weeks(
            snap[surging], dated[surging], pairs.snap[active], pairs.week[active], n
        ),
    }


def _shared_weeks(
    snap_a: np.ndarray, week_a: np.ndarray, snap_b: np.ndarray, week_b: np.ndarray, n: int
) -> np.ndarray:
    """Per snapshot, distinct weeks found in both (snapshot, week) lists."""
    first = int(min(week_a.min(initial=0), week_b.min(initial=0)))
    width = int(max(week_a.max(initial=0), week_b.max(initial=0))) - first + 1
    a = np.unique(snap_a.astype(np.int64) * width + (week_a - first))
    b = np.unique(snap_b.astype(np.int64) * width + (week_b - first))
    counts: np.ndarray = np.bincount(np.intersect1d(a, b, assume_unique=True) // width, minlength=n)
    return counts


def _history(
    snap_code: np.ndarray,
    snap_s: np.ndarray,
    opportunities: pd.DataFrame,
    people: pd.DataFrame,
    account_index: pd.Index,
) -> Columns:
    """Past deals closed before as_of; customer status; whether a deal is open (in pipeline).

    A deal tied to the account only by a lead's or contact's record counts in the features once
    that person is known (``people.created_at``), as an event does; whether the account is in
    pipeline, a matter of the labels, is what the CRM held."""
    n = len(snap_code)
    opps = opportunities
    index = TimeIndex(encode(opps["account_id"], account_index), seconds(opps["created_at"]))
    snap, row, _ = index.pairs(snap_code, snap_s, FOREVER_DAYS)
    closed_s = seconds(opps["closed_at"])[row]
    in_crm_closed = opps["closed_at"].notna().to_numpy()[row] & (closed_s < snap_s[snap])
    closed = in_crm_closed.copy()
    if ACCOUNT_FROM_PERSON in opps:
        person = encode(opps["person_id"], people["person_id"])[row]
        through = opps[ACCOUNT_FROM_PERSON].to_numpy(dtype=bool)[row] & (person >= 0)
        closed[through] &= known_since(people)[person[through]] < snap_s[snap[through]]
    status = opps["status"].to_numpy()[row]
    kind = opps["type"].to_numpy()[row]
    won, lost = closed & (status == "won"), closed & (status == "lost")
    out: Columns = {
        "opportunities_won_before": count(snap, n, won),
        "opportunities_lost_before": count(snap, n, lost),
        "new_business_lost_before": count(snap, n, lost & (kind == "new_business")),
    }
    last_closed = group_max(snap[closed], closed_s[closed].astype(float), n)
    days = (snap_s - last_closed) / DAY_SECONDS
    # within a year: the same meaning early in the data (little history) and years later
    out["days_since_last_closed_opportunity"] = np.where(days <= HISTORY_CAP_DAYS, days, np.nan)
    # the latest closed renewal decides whether a past customer still is one
    renewal = closed & (kind == "renewal")
    latest = pd.DataFrame(
        {"snap": snap[renewal], "closed": closed_s[renewal], "lost": status[renewal] == "lost"}
    )
    churned = np.zeros(n, dtype=bool)
    if len(latest):
        last = latest.sort_values(["snap", "closed"], kind="stable").groupby("snap").last()
        churned[last.index.to_numpy()] = last["lost"].to_numpy()
    ever_won = out["opportunities_won_before"] > 0
    out["is_customer"] = (ever_won & ~churned).astype(np.int64)
    out["is_former_customer"] = (ever_won & churned).astype(np.int64)
    out["in_pipeline"] = (count(snap, n, ~in_crm_closed) > 0).astype(np.int64)
    return out


def build_features(
    snapshots: pd.DataFrame,
    accounts: pd.DataFrame,
    people: pd.DataFrame,
    events: pd.DataFrame,
    intent: pd.DataFrame,
    opportunities: pd.DataFrame,
    spec: FeatureSpec = FeatureSpec(),
    categories: dict[str, tuple[str, ...]] | None = None,
    account_history: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One feature row per (account_id, as_of) snapshot, in the snapshots' order.

    Tables are the validated canonical tables (``features.validation``); they may hold more
    accounts than the snapshots ask for. Snapshots of accounts missing from ``accounts`` raise.
    ``categories`` fixes the levels of the categorical fit columns (default: those found in
    ``accounts``), so that every part of a table, and every scoring, codes them alike. Account
    columns beyond the contract are features only when ``spec.columns`` declares them.
    """
    account_index = pd.Index(accounts["account_id"])
    snap_code = encode(snapshots["account_id"], account_index)
    if (snap_code < 0).any():
        missing = snapshots["account_id"].to_numpy()[snap_code < 0][:3].tolist()
        raise ValueError(f"snapshots.account_id: {missing} not in the accounts table")
    snap_s = seconds(snapshots["as_of"])
    lookback = float(spec.lookback_days)
    pairs = _EventPairs.find(snap_code, snap_s, events, people, account_index, lookback)
    out: Columns = {
        **_depth(pairs, spec.windows),
        **_recency_and_momentum(pairs),
        **_buying_group(pairs, people, spec),
        **_converging(pairs),
        **_contacts(snap_code, snap_s, people, account_index),
        **_intent(snap_code, snap_s, intent, account_index, spec, pairs),
        **_history(snap_code, snap_s, opportunities, people, account_index),
    }
    frame = pd.DataFrame(
        {
            "account_id": snapshots["account_id"].astype("str").to_numpy(),
            "as_of": pd.to_datetime(snap_s, unit="s", utc=True).astype("datetime64[us, UTC]"),
        }
    )
    history = account_history if account_history is not None else empty_table("account_history")
    categories = categories or fit_categories(accounts, spec, history)
    add_fit_columns(frame, accounts, history, snap_code, snap_s, spec, categories)
    numeric = pd.DataFrame({k: np.asarray(v, dtype=float) for k, v in out.items()})
    return _in_catalogue_order(pd.concat([frame, numeric], axis=1), spec)


def _in_catalogue_order(frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """The meta columns, then the features in the catalogue's order. A column computed without
    a catalogue row (or a row without its column) is an error: the row is its definition."""
    names = [f.name for f in catalogue(spec)]
    computed = [c for c in frame.columns if c not in META_COLUMNS]
    unlisted = sorted(set(computed) - set(names))
    if unlisted:
        raise ValueError(
            f"build_features computed {unlisted} but the feature catalogue has no row for "
            "them: add each to catalogue() in features/catalogue.py (its family, bounds and "
            "reason words)"
        )
    absent = sorted(set(names) - set(computed))
    if absent:
        raise ValueError(f"the feature catalogue lists {absent} but build_features computes none")
    return frame[[*META_COLUMNS, *names]]
