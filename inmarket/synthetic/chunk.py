"""One chunk of accounts: the random stream, clock and growing state its generation stages share."""

from __future__ import annotations

import numpy as np
import pandas as pd

from inmarket.synthetic.spec import WorldSpec


class Chunk:
    """A chunk of accounts with its own random stream, filled in stage by stage."""

    # set by add_accounts
    account_id: np.ndarray
    fit: np.ndarray
    employees: np.ndarray
    domain: np.ndarray
    customer: np.ndarray
    customer_since: np.ndarray
    tire_kicker: np.ndarray
    intent_covered: np.ndarray
    # set by add_people
    group_size: np.ndarray
    person_id: np.ndarray
    tire_kicker_person: np.ndarray
    order_person: np.ndarray
    order_offset: np.ndarray
    role: np.ndarray
    # set by add_episodes
    ep: pd.DataFrame

    def __init__(self, spec: WorldSpec, index: int, first: int, n: int) -> None:
        self.index, self.first, self.n = index, first, n
        self.rng = np.random.default_rng([spec.seed, index])
        self.start64 = np.datetime64(spec.start.replace(tzinfo=None), "us")
        self.horizon = float(spec.days)
        # rate per day such that about in_market_quarterly of accounts are in a cycle in a quarter
        self.episode_rate = spec.in_market_quarterly / (78.0 + 91.0)
        self.tables: dict[str, pd.DataFrame] = {}

    def stamp(self, days: np.ndarray) -> np.ndarray:
        """Turn days since the start of history into UTC timestamps (microseconds)."""
        return self.start64 + (np.asarray(days) * 86_400e6).astype("int64").astype(
            "timedelta64[us]"
        )


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, to turn additive effects into probabilities."""
    return 1.0 / (1.0 + np.exp(-x))


def ids(prefix: str, numbers: np.ndarray, width: int) -> pd.Series:
    """Zero-padded identifiers such as ``A000042``, sortable as text."""
    return prefix + pd.Series(numbers, dtype="int64").astype("str").str.zfill(width)
