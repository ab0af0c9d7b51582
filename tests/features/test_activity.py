"""The weekly engagement table of the account view, against a plain recount of the events."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd

from features.activity import ACTIVITY_COLUMNS, weekly_activity
from features.catalogue import HIGH_INTENT_TYPES, LOW_SIGNAL_TYPES
from features.settings import DataSettings


def _until(world: Path) -> pd.Timestamp:
    return pd.Timestamp(json.loads((world / "_extract.json").read_text())["extracted_at"])


def test_weekly_counts_and_top_topics_match_a_plain_recount(world_dir: Path) -> None:
    until = _until(world_dir)
    weekly = weekly_activity(world_dir, until=until, settings=DataSettings(), weeks=6)
    assert tuple(weekly.columns) == ACTIVITY_COLUMNS

    events = pd.read_parquet(world_dir / "events.parquet")
    stamps = pd.to_datetime(events["timestamp"], utc=True)
    seen = events[(stamps >= until - pd.Timedelta(weeks=6)) & (stamps < until)]
    assert int(weekly["events"].sum()) == len(seen)  # the clean world has no rejects

    day = pd.to_datetime(seen["timestamp"], utc=True).dt.floor("D")
    monday = day - pd.to_timedelta(day.dt.day_of_week, unit="D")
    expected: dict[tuple[str, pd.Timestamp, str | None], dict[str, object]] = {}
    for (account, week, person), group in seen.groupby(
        [seen["account_id"], monday, seen["person_id"].fillna("")], sort=False
    ):
        counted = Counter(t for t in group["topic"] if isinstance(t, str))
        top = sorted(counted.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        expected[(account, week, person or None)] = {
            "events": len(group),
            "opens": int(group["event_type"].isin(LOW_SIGNAL_TYPES).sum()),
            "high_intent": int(group["event_type"].isin(HIGH_INTENT_TYPES).sum()),
            "topics": "; ".join(t for t, _ in top) or None,
        }
    assert len(weekly) == len(expected)
    several = 0
    for row in weekly.itertuples(index=False):
        person = row.person_id if isinstance(row.person_id, str) else None
        want = expected[(row.account_id, row.week, person)]
        topics = row.topics if isinstance(row.topics, str) else None
        assert (row.events, row.opens, row.high_intent, topics) == (
            want["events"],
            want["opens"],
            want["high_intent"],
            want["topics"],
        )
        several += topics is not None and ";" in topics
    assert several > 0  # some weeks have more than one topic, so the ordering is exercised


def test_chunked_reading_gives_the_same_table(world_dir: Path) -> None:
    until = _until(world_dir)
    whole = weekly_activity(world_dir, until=until, settings=DataSettings(), weeks=8)
    chunked = weekly_activity(
        world_dir, until=until, settings=DataSettings(), weeks=8, chunk_rows=7_000
    )
    pd.testing.assert_frame_equal(whole, chunked)
    assert whole["person_id"].isna().any()  # anonymous visits kept, as such
    assert whole.loc[whole["person_id"].notna(), "title"].notna().all()
