"""Labels from opportunities: did a new-business deal follow within the horizon?

A snapshot (account_id, as_of) is labelled from the new-business opportunities created in
[as_of, as_of + horizon] (one created exactly at as_of is not among the snapshot's features,
which see ``created_at < as_of``):

- ``won`` (default): 1 if one of them is won; 0 if none is won and none is still open;
  left out if the only ones there are still open (the outcome is not known yet);
- ``opportunity``: 1 if any is created, 0 otherwise.

Left out as well, and counted: snapshots whose window is not fully observed (as_of + horizon
after the extract), accounts already in pipeline at as_of (an open opportunity), and current
customers (unless ``include_customers``), whose next deal is not new business.

Each label has a time it was *decided* (``DECIDED``): a win when its deal closed won (the first
one, if several), a 0 when its window ended and every deal created in it had closed lost. A
won or lost deal without ``closed_at`` closed at some time before the export: it counts as
closed at the export time, the latest it can have been (the features, too, never see it
closed). The time split leaves out a training (validation) label decided after the
validation (test) window begins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from features.encode import encode

LabelKind = Literal["won", "opportunity"]
DECIDED = "label_decided_at"  # beside the label until the split; never a feature


@dataclass(frozen=True)
class LabelCounts:
    snapshots: int
    window_not_observed: int
    in_pipeline: int
    customers: int
    outcome_open: int
    labelled: int
    positives: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def label_snapshots(
    features: pd.DataFrame,
    opportunities: pd.DataFrame,
    *,
    extracted_at: pd.Timestamp,
    horizon_days: int,
    kind: LabelKind = "won",
    include_customers: bool = False,
) -> tuple[pd.DataFrame, LabelCounts]:
    """Return the labelled snapshots (features plus ``label``) and the counts left out."""
    extracted_at = pd.Timestamp(extracted_at)
    horizon = pd.Timedelta(days=horizon_days)
    nb = opportunities[opportunities["type"] == "new_business"]
    won_any, open_any, created_any, won_closed, last_closed = _window_flags(
        features, nb, horizon, extracted_at
    )

    observed = (features["as_of"] + horizon) <= extracted_at
    in_pipeline = features["in_pipeline"].to_numpy() > 0
    customer = (features["is_customer"].to_numpy() > 0) & (not include_customers)
    if kind == "won":
        label = won_any.astype(float)
        unknown = ~won_any & open_any
    else:
        label = created_any.astype(float)
        unknown = np.zeros(len(features), dtype=bool)
    keep = observed.to_numpy() & ~in_pipeline & ~customer & ~unknown
    counts = LabelCounts(
        snapshots=len(features),
        window_not_observed=int((~observed).sum()),
        in_pipeline=int((observed & in_pipeline).sum()),
        customers=int((observed & ~in_pipeline & customer).sum()),
        outcome_open=int((observed & ~in_pipeline & ~customer & unknown).sum()),
        labelled=int(keep.sum()),
        positives=int(label[keep].sum()),
    )
    window_end = (features["as_of"] + horizon).to_numpy(dtype="datetime64[us]")
    if kind == "won":  # a win when it closed; a 0 when the window and its deals are closed
        closed_by = np.where(np.isnat(last_closed), window_end, last_closed)
        decided = np.where(won_any, won_closed, np.maximum(window_end, closed_by))
    else:  # created or not within the window: known when it ends at the latest
        decided = window_end
    labelled = features[keep].assign(
        label=label[keep].astype(np.int64),
        **{DECIDED: pd.to_datetime(decided[keep]).tz_localize("UTC")},
    )
    return labelled.reset_index(drop=True), counts


def _window_flags(
    features: pd.DataFrame, nb: pd.DataFrame, horizon: pd.Timedelta, extracted_at: pd.Timestamp
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per snapshot: is any new-business opportunity in [as_of, as_of + horizon] won / open /
    there at all; when the first won one closed, and when the last one closed (NaT if none;
    one without ``closed_at`` counts as closed at the export time)."""
    accounts = pd.Index(features["account_id"].unique())
    opp_code = encode(nb["account_id"], accounts)
    opp_s = nb["created_at"].to_numpy(dtype="datetime64[us]").astype(np.int64) // 1_000_000
    valid = opp_code >= 0
    key = (opp_code[valid] << 32) + opp_s[valid]
    order = np.argsort(key, kind="stable")
    key = key[order]
    won = (nb["status"].to_numpy() == "won")[valid][order]
    is_open = (nb["status"].to_numpy() == "open")[valid][order]
    closed_column = nb["closed_at"] if "closed_at" in nb else pd.Series(pd.NaT, index=nb.index)
    closed = pd.to_datetime(closed_column, utc=True).to_numpy(dtype="datetime64[us]")
    closed = closed[valid][order]
    snap_code = encode(features["account_id"], accounts)
    snap_s = features["as_of"].to_numpy(dtype="datetime64[us]").astype(np.int64) // 1_000_000
    base = snap_code << 32
    # at or after as_of: exactly what the snapshot's features do not see (created < as_of)
    lo = np.searchsorted(key, base + snap_s, side="left")
    hi = np.searchsorted(key, base + snap_s + int(horizon.total_seconds()), side="right")
    won_cum = np.r_[0, np.cumsum(won)]
    open_cum = np.r_[0, np.cumsum(is_open)]
    # every (snapshot, opportunity in its window) pair: a few per snapshot at most
    sizes = hi - lo
    snap_of_pair = np.repeat(np.arange(len(lo)), sizes)
    opp_of_pair = np.repeat(lo, sizes) + (
        np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    )
    pair_closed = closed[opp_of_pair]
    exported = extracted_at.tz_convert(None).to_datetime64().astype("datetime64[us]")
    pair_closed = np.where(np.isnat(pair_closed), exported, pair_closed)
    never, always = np.datetime64("NaT", "us"), np.datetime64("9999-12-31", "us")
    won_closed = np.full(len(lo), always)
    np.minimum.at(won_closed, snap_of_pair[won[opp_of_pair]], pair_closed[won[opp_of_pair]])
    last_closed = np.full(len(lo), np.datetime64("0001-01-01", "us"))
    np.maximum.at(last_closed, snap_of_pair, pair_closed)
    won_closed = np.where(won_closed == always, never, won_closed)
    last_closed = np.where(sizes > 0, last_closed, never)
    return (
        (won_cum[hi] - won_cum[lo]) > 0,
        (open_cum[hi] - open_cum[lo]) > 0,
        hi > lo,
        won_closed,
        last_closed,
    )


def ranked_population(features: pd.DataFrame, include_customers: bool = False) -> np.ndarray:
    """The snapshots a model learns and ranks: not in the pipeline, and not customers unless
    ``include_customers``."""
    in_pipeline = features["in_pipeline"].to_numpy() > 0
    customer = (features["is_customer"].to_numpy() > 0) & (not include_customers)
    return ~in_pipeline & ~customer


def label_words(kind: LabelKind, horizon_days: int) -> str:
    """What a positive label means, in the words every report uses."""
    created = f"a new-business deal created within {horizon_days} days"
    return f"{created}, won (whenever it closed)" if kind == "won" else created


def undated_outcomes(opportunities: pd.DataFrame) -> str | None:
    """What won or lost new-business deals without ``closed_at`` cost the labels, in words;
    None when every closed deal is dated."""
    nb = opportunities[opportunities["type"] == "new_business"]
    closed = nb["status"].isin(["won", "lost"])
    dates = nb["closed_at"] if "closed_at" in nb else pd.Series(pd.NaT, index=nb.index)
    undated = int((closed & dates.isna()).sum())
    if not undated:
        return None
    return (
        f"{undated:,} of {int(closed.sum()):,} won or lost new-business deals have no "
        "opportunities.closed_at: their labels count as decided at the export time, so a time "
        "split cannot train or validate on them; export the close date"
    )
