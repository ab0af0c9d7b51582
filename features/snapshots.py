"""Snapshots: (account_id, as_of) pairs at which features are computed, point in time."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd


def as_of_grid(
    end: datetime | pd.Timestamp,
    *,
    every_days: int = 30,
    count: int | None = None,
    start: datetime | pd.Timestamp | None = None,
) -> pd.DatetimeIndex:
    """Snapshot times every ``every_days`` days, anchored at ``end`` (midnight UTC) going back.

    Anchoring at the end makes the newest snapshot the one the scores are served for. Either
    ``count`` snapshots or all of those after ``start`` are returned, oldest first.
    """
    if every_days < 1:
        raise ValueError("snapshots.every_days must be at least 1")
    anchor = pd.Timestamp(end)
    anchor = anchor.tz_localize("UTC") if anchor.tzinfo is None else anchor.tz_convert("UTC")
    anchor = anchor.floor("D")
    if count is None:
        if start is None:
            raise ValueError("give either count or start for the snapshot grid")
        first = pd.Timestamp(start)
        first = first.tz_localize("UTC") if first.tzinfo is None else first.tz_convert("UTC")
        count = int((anchor - first) / pd.Timedelta(days=every_days)) + 1
    steps = pd.to_timedelta(range(max(count, 0) - 1, -1, -1), unit="D") * every_days
    return pd.DatetimeIndex(anchor - steps).astype("datetime64[us, UTC]")


def snapshot_grid(accounts: pd.DataFrame, as_ofs: pd.DatetimeIndex) -> pd.DataFrame:
    """Every account at every as_of, except before the account existed in the CRM."""
    stamps = pd.DatetimeIndex(as_ofs).astype("datetime64[us, UTC]")
    grid = pd.DataFrame(
        {
            "account_id": accounts["account_id"].to_numpy().repeat(len(stamps)),
            "as_of": pd.to_datetime(np.tile(stamps.asi8, len(accounts)), unit="us", utc=True),
        }
    )
    if "created_at" in accounts:
        created = accounts["created_at"].to_numpy().repeat(len(as_ofs))
        grid = grid[~(pd.Series(created, index=grid.index) >= grid["as_of"])]
    return grid.reset_index(drop=True)
