"""Buying cycles: when accounts enter one, how much of the buying group engages, who wins."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.windows import segment_positions
from inmarket.synthetic.chunk import Chunk, sigmoid
from inmarket.synthetic.vocabularies import (
    DECIDING_ROLES,
    FIT_MEAN,
    INTENT_LEAD_DAYS,
    INTENT_SURGE_SHOWS,
    TOPICS,
)


def research_days(rng: np.random.Generator, size: int) -> np.ndarray:
    """How long a buying cycle researches before it opens an opportunity (30-160 days)."""
    days: np.ndarray = np.clip(28 + rng.gamma(2.0, 25.0, size), 30, 160)
    return days


def add_episodes(chunk: Chunk) -> None:
    """Draw the buying cycles: when, how strong, how dark, who engages and how they end."""
    rng = chunk.rng
    eligible = ~chunk.customer & ~chunk.tire_kicker
    lead_in = 150.0
    span = chunk.horizon + lead_in
    rate = chunk.episode_rate * chunk.fit / FIT_MEAN * eligible
    count = rng.poisson(rate * span)
    acct = np.repeat(np.arange(chunk.n), count)
    start = rng.uniform(-lead_in, chunk.horizon, len(acct))
    order = np.lexsort((start, acct))
    acct, start = acct[order], start[order]
    prev_same = np.diff(acct, prepend=-1) == 0
    gap = np.diff(start, prepend=-np.inf)
    keep = ~(prev_same & (gap < 200))
    acct, start = acct[keep], start[keep]
    e = len(acct)
    duration = research_days(rng, e)
    dark = rng.random(e) < 0.25
    strength = rng.lognormal(0.0, 0.5, e)
    g = chunk.group_size[acct]
    p_engage = np.clip(0.25 + 0.25 * strength, 0.1, 0.9)
    engaged = np.where(dark, rng.integers(1, 3, e), np.clip(rng.binomial(g, p_engage), 2, g))
    engaged = np.minimum(engaged, g)
    coverage = _role_coverage(chunk, acct, engaged)
    creates = rng.random(e) < np.where(dark, 0.55, 0.7)
    p_win = sigmoid(-0.7 + 3.0 * (chunk.fit[acct] - FIT_MEAN) + 3.0 * (coverage - 0.4) - 0.3 * dark)
    won = rng.random(e) < p_win
    cycle = 20 + rng.gamma(2.0, 25.0, e)
    has_intent = chunk.intent_covered[acct] & (rng.random(e) < INTENT_SURGE_SHOWS)
    intent_lead = rng.uniform(*INTENT_LEAD_DAYS, e)
    topic = rng.integers(0, len(TOPICS), e)
    ep = pd.DataFrame(
        {
            "acct": acct,
            "start": start,
            "duration": duration,
            "dark": dark,
            "strength": strength,
            "engaged": engaged,
            "coverage": coverage,
            "creates": creates,
            "won": won,
            "cycle": cycle,
            "has_intent": has_intent,
            "intent_lead": intent_lead,
            "topic": topic,
        }
    )
    ep["created"] = ep["start"] + ep["duration"]
    ep["closed"] = ep["created"] + ep["cycle"]
    # an account that wins new business becomes a customer: later cycles do not happen
    wins = ep[ep["creates"] & ep["won"] & (ep["created"] >= 0)]
    first_win = wins.groupby("acct")["closed"].min()
    after = ep["start"] > ep["acct"].map(first_win).fillna(np.inf)
    chunk.ep = ep[~after].reset_index(drop=True)


def _role_coverage(chunk: Chunk, acct: np.ndarray, engaged: np.ndarray) -> np.ndarray:
    """Share of the key buying roles among the people an episode engages."""
    g = chunk.group_size[acct]
    ep = np.repeat(np.arange(len(acct)), g)
    pos = segment_positions(g)
    person = chunk.order_person[chunk.order_offset[acct][ep] + pos]
    is_engaged = pos < engaged[ep]
    covered = np.zeros(len(acct))
    for role in DECIDING_ROLES:
        hit = (
            np.bincount(ep, weights=is_engaged & (chunk.role[person] == role), minlength=len(acct))
            > 0
        )
        covered += hit
    result: np.ndarray = covered / len(DECIDING_ROLES)
    return result
