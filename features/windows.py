"""Time windows over sorted tables: the vectorised machinery under every feature family.

A table is indexed once by (account, time) (``TimeIndex``); each snapshot then finds its rows in
``[as_of - lookback, as_of)`` with two binary searches, giving (snapshot, row, age) pairs.
Aggregates over those pairs are numpy ``bincount``/``reduceat`` (``count``, ``distinct``,
``Groups``), never a Python loop over accounts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DAY_SECONDS = 86_400
FOREVER_DAYS = 365 * 200


def segment_positions(sizes: np.ndarray) -> np.ndarray:
    """0..n-1 within each segment of the given sizes, concatenated."""
    sizes = np.asarray(sizes, dtype=np.int64)
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    positions: np.ndarray = np.arange(int(sizes.sum()), dtype=np.int64) - starts
    return positions


def seconds(values: pd.Series) -> np.ndarray:
    """UTC timestamps -> whole seconds since 1970 (int64); missing -> int64 min."""
    stamps = pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")
    micros = stamps.to_numpy(dtype="datetime64[us]").astype(np.int64)
    whole: np.ndarray = np.floor_divide(micros, 1_000_000)
    return whole


class TimeIndex:
    """One table's rows sorted by (account code, time), so snapshots can search their rows."""

    def __init__(self, code: np.ndarray, seconds: np.ndarray) -> None:
        valid = (code >= 0) & (seconds >= 0)  # missing times and times before 1970 are never seen
        self.order = np.flatnonzero(valid)[np.lexsort((seconds[valid], code[valid]))]
        self.key = (code[self.order] << 32) + seconds[self.order]
        self.seconds = seconds

    def count_before(self, snap_code: np.ndarray, snap_s: np.ndarray) -> np.ndarray:
        """Per snapshot, how many rows of its account are dated before as_of."""
        lo = np.searchsorted(self.key, snap_code << 32, side="left")
        hi = np.searchsorted(self.key, (snap_code << 32) + snap_s, side="left")
        counted: np.ndarray = hi - lo
        return counted

    def pairs(
        self, snap_code: np.ndarray, snap_s: np.ndarray, lookback_days: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(snapshot index, row index, age in days) for rows in [as_of - lookback, as_of)."""
        snap_key = (snap_code << 32) + snap_s
        first = np.maximum(snap_s - int(lookback_days * DAY_SECONDS), 0)
        lo = np.searchsorted(self.key, (snap_code << 32) + first, side="left")
        hi = np.searchsorted(self.key, snap_key, side="left")
        sizes = hi - lo
        snap_idx = np.repeat(np.arange(len(snap_key)), sizes)
        row_idx = self.order[np.repeat(lo, sizes) + segment_positions(sizes)]
        age = (snap_s[snap_idx] - self.seconds[row_idx]) / DAY_SECONDS
        return snap_idx, row_idx, age

    def latest(self, snap_code: np.ndarray, snap_s: np.ndarray) -> np.ndarray:
        """Per snapshot, the row of its account dated last before as_of; -1 where none is."""
        at = np.searchsorted(self.key, (snap_code << 32) + snap_s, side="left") - 1
        found = at >= 0
        row = np.full(len(snap_code), -1, dtype=np.int64)
        row[found] = self.order[at[found]]
        same_account = np.zeros(len(snap_code), dtype=bool)
        same_account[found] = (self.key[at[found]] >> 32) == snap_code[found]
        return np.where(same_account, row, -1)


class Groups:
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

    def _reduce(self, ufunc: np.ufunc, values: np.ndarray) -> np.ndarray:
        if not len(self.starts):
            return np.array([], dtype=float)
        result: np.ndarray = ufunc.reduceat(values[self.order], self.starts)
        return result

    def min(self, values: np.ndarray) -> np.ndarray:
        return self._reduce(np.minimum, values)

    def max(self, values: np.ndarray) -> np.ndarray:
        return self._reduce(np.maximum, values)

    def sum(self, values: np.ndarray) -> np.ndarray:
        return self._reduce(np.add, values)


def count(
    snap_idx: np.ndarray, n: int, mask: np.ndarray | None = None, weights: np.ndarray | None = None
) -> np.ndarray:
    """Pairs per snapshot (of ``mask``), or the sum of ``weights`` per snapshot."""
    if mask is not None:
        snap_idx = snap_idx[mask]
        weights = None if weights is None else weights[mask]
    counts: np.ndarray = np.bincount(snap_idx, weights=weights, minlength=n)
    return counts.astype(float) if weights is not None else counts


def distinct(snap_idx: np.ndarray, key: np.ndarray, n: int) -> np.ndarray:
    """Distinct keys per snapshot."""
    if not len(snap_idx):
        return np.zeros(n, dtype=np.int64)
    width = int(key.max()) + 1
    unique = np.unique(snap_idx.astype(np.int64) * width + key)
    counts: np.ndarray = np.bincount(unique // width, minlength=n)
    return counts


def group_min(snap_idx: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Smallest value per snapshot; NaN where a snapshot has none."""
    result = np.full(n, np.inf)
    np.minimum.at(result, snap_idx, values)
    return np.where(np.isposinf(result), np.nan, result)


def group_max(snap_idx: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Largest value per snapshot; NaN where a snapshot has none."""
    result = np.full(n, -np.inf)
    np.maximum.at(result, snap_idx, values)
    return np.where(np.isneginf(result), np.nan, result)
