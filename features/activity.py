"""Weekly engagement of each account, by person, for the account view (the review page).

One more streaming pass over the events, through the same data contract as the features
(rows the contract rejects are not shown here either), keeping the weeks before ``until``:

| column | meaning |
|---|---|
| account_id | the account |
| week | Monday 00:00 UTC of the week |
| person_id | the person; null for anonymous visits resolved to the account |
| events | interactions that week |
| opens | of which email opens (mostly machine-made: they do not make a person "engaged") |
| high_intent | pricing, demo, comparison or trial interactions that week |
| topics | up to three most frequent topics that week, ``; ``-separated |

People's title, department, seniority and buying role are joined from the people table.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.catalogue import HIGH_INTENT_TYPES, LOW_SIGNAL_TYPES
from features.contract import empty_table
from features.io import RawSource
from features.plan import SMALL_TABLES, load_small_tables
from features.settings import DataSettings
from features.sources import TableSource, open_source
from features.validation import validate

ACTIVITY_WEEKS = 13
ACTIVITY_COLUMNS = (
    "account_id",
    "week",
    "person_id",
    "events",
    "opens",
    "high_intent",
    "topics",
    "title",
    "department",
    "seniority",
    "buying_role",
)


def _weekly(
    events: pd.DataFrame, start: pd.Timestamp, until: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Counts per account, week and person, and counts per topic of the same keys."""
    seen = events[(events["timestamp"] >= start) & (events["timestamp"] < until)]
    day = seen["timestamp"].dt.tz_convert("UTC").dt.floor("D")
    week = day - pd.to_timedelta(day.dt.day_of_week, unit="D")  # Monday
    frame = pd.DataFrame(
        {
            "account_id": seen["account_id"].to_numpy(),
            "week": week.to_numpy(),
            "person_id": seen["person_id"].fillna("").to_numpy(),
            "opens": seen["event_type"].isin(LOW_SIGNAL_TYPES).to_numpy(),
            "high_intent": seen["event_type"].isin(HIGH_INTENT_TYPES).to_numpy(),
            "topic": seen["topic"].to_numpy(),
        }
    )
    keys = ["account_id", "week", "person_id"]
    counts = frame.groupby(keys, sort=False).agg(
        events=("high_intent", "size"), opens=("opens", "sum"), high_intent=("high_intent", "sum")
    )
    topics = (
        frame.dropna(subset=["topic"])
        .groupby([*keys, "topic"], sort=False)
        .size()
        .rename("n")
        .reset_index()
    )
    return counts.reset_index(), topics


def _top_topics(rows: pd.DataFrame, keys: list[str], top: int = 3) -> pd.Series:
    """The ``top`` most frequent topics of each key (ties by name), ``; ``-joined, from
    per-chunk topic counts (``keys``, topic, n)."""
    ranked = (
        rows.groupby([*keys, "topic"], sort=False)["n"]
        .sum()
        .reset_index()
        .sort_values([*keys, "n", "topic"], ascending=[True, True, True, False, True])
    )
    ranked = ranked[ranked.groupby(keys, sort=False).cumcount() < top]
    joined = ranked.groupby(keys, sort=False)["topic"].first().astype(object)
    for place in range(1, top):  # vectorised joins: no Python call per group
        nth = ranked.groupby(keys, sort=False)["topic"].nth(place)
        nth.index = pd.MultiIndex.from_frame(ranked.loc[nth.index, keys])
        joined = joined.add("; " + nth.reindex(joined.index).astype(object), fill_value="")
    return joined.astype("str").rename("topics")


def weekly_activity(
    data: TableSource | Path,
    *,
    until: pd.Timestamp,
    settings: DataSettings,
    weeks: int = ACTIVITY_WEEKS,
    chunk_rows: int = 2_000_000,
) -> pd.DataFrame:
    """The weekly engagement table of the ``weeks`` before ``until`` (see the module doc).

    Rows are checked as the features check them, except that no column stops the run here:
    the features already did, or let it pass."""
    settings = settings.model_copy(update={"max_bad_share": 1.0})
    source = open_source(data, settings)
    base = load_small_tables(source, settings)
    known = {t: base.table(t) for t in SMALL_TABLES}
    start = until - pd.Timedelta(weeks=weeks)
    parts: list[tuple[pd.DataFrame, pd.DataFrame]] = []
    for part in source.parts("events"):
        for table in source.batches(part, chunk_rows):
            checked = validate(
                {"events": [RawSource("events", part.name, table.to_pandas(), dict(part.formats))]},
                extracted_at=base.report.extracted_at,
                max_bad_share=1.0,
                known=known,
            )
            parts.append(_weekly(checked.events, start, until))
    if not parts:
        parts = [_weekly(empty_table("events"), start, until)]
    keys = ["account_id", "week", "person_id"]
    counts = (
        pd.concat([c for c, _ in parts], ignore_index=True)
        .groupby(keys, sort=False)[["events", "opens", "high_intent"]]
        .sum()
    )
    topics = _top_topics(pd.concat([t for _, t in parts], ignore_index=True), keys)
    weekly = counts.join(topics).reset_index()
    weekly["person_id"] = weekly["person_id"].replace("", None)
    people = base.people[["person_id", "title", "department", "seniority", "buying_role"]]
    weekly = weekly.merge(people, on="person_id", how="left")
    weekly = weekly.astype({"events": "int64", "opens": "int64", "high_intent": "int64"})
    return weekly.sort_values(["account_id", "week", "events"], ascending=[True, True, False])[
        list(ACTIVITY_COLUMNS)
    ].reset_index(drop=True)
