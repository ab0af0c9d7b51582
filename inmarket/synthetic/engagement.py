"""Engagement: first-party events (web, email, webinars, ads) and third-party intent."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.windows import segment_positions
from inmarket.synthetic.chunk import Chunk, ids
from inmarket.synthetic.episodes import research_days
from inmarket.synthetic.vocabularies import (
    BACKGROUND_MIX,
    BUYING_MIX,
    EVENT_CHANNELS,
    INTENT_LEAD_DAYS,
    INTENT_PEAK_RANGE,
    INTENT_SPURIOUS_SHARE,
    INTENT_SURGE_SHOWS,
    MONTH_FACTOR,
    RESEARCH_MIX,
    TIRE_KICKER_MIX,
    TOPICS,
    WEB_CHANNELS,
    WEEKDAY_FACTOR,
)


def add_events(chunk: Chunk) -> None:
    """Write the first-party events: background noise, tire-kickers and buying cycles."""
    rng = chunk.rng
    frames = [_background_events(chunk), _tire_kicker_events(chunk), *_episode_events(chunk)]
    ev = pd.concat(frames, ignore_index=True)
    ev = ev[(ev["t"] >= 0) & (ev["t"] < chunk.horizon)]
    # time of day: office hours, spread across time zones
    seconds = np.clip(rng.normal(14 * 3600, 3.5 * 3600, len(ev)), 0, 86_399)
    day = np.floor(ev["t"].to_numpy())
    t = np.minimum(day + seconds / 86_400, chunk.horizon - 1e-6)
    keep = _seasonal_keep(rng, t, chunk.start64)
    ev = ev[keep].assign(t=t[keep])
    ev = ev.sort_values(["t", "acct"], kind="stable").reset_index(drop=True)
    chunk.tables["events"] = pd.DataFrame(
        {
            "event_id": ids(f"E{chunk.index:04d}-", np.arange(len(ev)), 7),
            "timestamp": chunk.stamp(ev["t"].to_numpy()),
            "account_id": chunk.account_id[ev["acct"].to_numpy()],
            "person_id": ev["person_id"].to_numpy(),
            "event_type": ev["event_type"].to_numpy(),
            "channel": ev["channel"].to_numpy(),
            "topic": ev["topic"].to_numpy(),
        }
    )


def _background_events(chunk: Chunk) -> pd.DataFrame:
    """Everyday engagement unrelated to buying, busier at customers."""
    rng, n = chunk.rng, chunk.n
    rate = 0.2 * np.sqrt(chunk.group_size / 8) * np.where(chunk.customer, 2.0, 1.0)
    count = rng.poisson(rate * chunk.horizon)
    acct = np.repeat(np.arange(n), count)
    t = rng.uniform(0, chunk.horizon, len(acct))
    pos = np.floor(rng.random(len(acct)) * chunk.group_size[acct]).astype(int)
    person = chunk.order_person[chunk.order_offset[acct] + pos]
    etype = _pick(rng, BACKGROUND_MIX, len(acct))
    topic = np.array(TOPICS, dtype=object)[rng.integers(0, len(TOPICS), len(acct))]
    topic[rng.random(len(acct)) >= 0.6] = None
    return _events_frame(chunk, acct, t, person, etype, topic, 0.4)


def _tire_kicker_events(chunk: Chunk) -> pd.DataFrame:
    """A tire-kicker's bursts of downloads, form fills and webinars."""
    rng = chunk.rng
    tk = np.flatnonzero(chunk.tire_kicker)
    first_row = len(chunk.person_id) - len(tk)
    n = rng.poisson(50, len(tk))
    begin = rng.uniform(0, chunk.horizon - 60, len(tk))
    span = rng.uniform(40, 200, len(tk))
    idx = np.repeat(np.arange(len(tk)), n)
    t = begin[idx] + rng.random(len(idx)) * span[idx]
    etype = _pick(rng, TIRE_KICKER_MIX, len(idx))
    topic = np.array(TOPICS, dtype=object)[rng.integers(0, len(TOPICS), len(idx))]
    return _events_frame(chunk, tk[idx], t, first_row + idx, etype, topic, 0.0)


def _episode_events(chunk: Chunk) -> list[pd.DataFrame]:
    """Events of buying cycles: research towards the opportunity, then evaluation."""
    rng, ep = chunk.rng, chunk.ep
    frames = []
    # research phase: ramps towards the opportunity, more and more senior people join
    volume = (
        ep["strength"]
        * 90
        * np.where(ep["dark"], 0.1, 1.0)
        * np.sqrt(np.minimum(chunk.group_size[ep["acct"]], 10) / 8)
    )
    n = rng.poisson(volume.to_numpy())
    idx = np.repeat(np.arange(len(ep)), n)
    frac = rng.beta(2.2, 1.0, len(idx))
    acct = ep["acct"].to_numpy()[idx]
    t = ep["start"].to_numpy()[idx] + frac * ep["duration"].to_numpy()[idx]
    engaged = ep["engaged"].to_numpy()[idx]
    engaged_now = np.maximum(1, np.ceil(engaged * frac**0.8)).astype(int)
    person = _pick_people(chunk, acct, engaged_now)
    buying = rng.random(len(idx)) < 0.05 + 0.4 * frac**2
    etype = np.where(buying, _pick(rng, BUYING_MIX, len(idx)), _pick(rng, RESEARCH_MIX, len(idx)))
    topic = _episode_topic(chunk, ep["topic"].to_numpy()[idx])
    anon_p = np.where(ep["dark"].to_numpy()[idx], 0.85, 0.35)
    frames.append(_events_frame(chunk, acct, t, person, etype, topic, anon_p))
    # evaluation phase: the buying group works with sales until the deal closes
    open_ep = ep[ep["creates"]]
    n = rng.poisson(open_ep["strength"].to_numpy() * 25)
    idx = np.repeat(np.arange(len(open_ep)), n)
    acct = open_ep["acct"].to_numpy()[idx]
    t = open_ep["created"].to_numpy()[idx] + rng.random(len(idx)) * open_ep["cycle"].to_numpy()[idx]
    engaged = np.maximum(open_ep["engaged"].to_numpy()[idx], 2)
    engaged = np.minimum(engaged, chunk.group_size[acct])
    person = _pick_people(chunk, acct, engaged)
    etype = np.where(
        rng.random(len(idx)) < 0.5,
        _pick(rng, BUYING_MIX, len(idx)),
        _pick(rng, RESEARCH_MIX, len(idx)),
    )
    topic = _episode_topic(chunk, open_ep["topic"].to_numpy()[idx])
    frames.append(_events_frame(chunk, acct, t, person, etype, topic, 0.2))
    return frames


def _episode_topic(chunk: Chunk, primary: np.ndarray) -> np.ndarray:
    """Mostly the cycle's own topic, sometimes another."""
    other = chunk.rng.integers(0, len(TOPICS), len(primary))
    chosen = np.where(chunk.rng.random(len(primary)) < 0.7, primary, other)
    topics: np.ndarray = np.array(TOPICS, dtype=object)[chosen]
    return topics


def _pick_people(chunk: Chunk, acct: np.ndarray, engaged_now: np.ndarray) -> np.ndarray:
    """Pick, for each event, one of the first ``engaged_now`` people in its buying group."""
    pos = np.floor(chunk.rng.random(len(acct)) * engaged_now).astype(int)
    person: np.ndarray = chunk.order_person[chunk.order_offset[acct] + pos]
    return person


def _events_frame(
    chunk: Chunk,
    acct: np.ndarray,
    t: np.ndarray,
    person: np.ndarray,
    etype: np.ndarray,
    topic: np.ndarray,
    anon_p: np.ndarray | float,
) -> pd.DataFrame:
    """Events with their channel; part of the web research is anonymous (no person)."""
    rng = chunk.rng
    channel = pd.Series(etype).map(EVENT_CHANNELS).to_numpy(dtype=object)
    anon = np.isin(channel, WEB_CHANNELS) & (rng.random(len(acct)) < anon_p)
    pid = chunk.person_id[person]
    pid[anon] = None
    return pd.DataFrame(
        {
            "acct": acct,
            "t": t,
            "person_id": pid,
            "event_type": etype,
            "channel": channel,
            "topic": topic,
        }
    )


def _pick(rng: np.random.Generator, mix: dict[str, float], size: int) -> np.ndarray:
    """Draw ``size`` names from a mix of name -> probability."""
    names = np.array(list(mix), dtype=object)
    p = np.array(list(mix.values()))
    return names[rng.choice(len(names), size=size, p=p / p.sum())]


def _seasonal_keep(rng: np.random.Generator, t: np.ndarray, start: np.datetime64) -> np.ndarray:
    """Thin event times (days since start) by month and weekday seasonality."""
    stamps = start + (t * 86_400e6).astype("int64").astype("timedelta64[us]")
    month = stamps.astype("datetime64[M]").astype(int) % 12
    weekday = (stamps.astype("datetime64[D]").astype(int) + 3) % 7  # 1970-01-01 was a Thursday
    p = MONTH_FACTOR[month] * WEEKDAY_FACTOR[weekday] / (MONTH_FACTOR.max() * WEEKDAY_FACTOR.max())
    keep: np.ndarray = rng.random(len(t)) < p
    return keep


def add_intent(chunk: Chunk) -> None:
    """Write weekly third-party intent: surges before buying cycles and spurious ones.

    The provider sees only the accounts it covers. A spurious surge (research that never
    becomes a buying cycle) is drawn like a genuine one: same peak scores, same length, so
    intent alone cannot tell them apart (docs/world.md)."""
    rng, ep = chunk.rng, chunk.ep
    surges = ep[ep["has_intent"]]
    real = pd.DataFrame(
        {
            "acct": surges["acct"],
            "begin": surges["start"] - surges["intent_lead"],
            "end": surges["created"],
            "topic": surges["topic"],
            "peak": rng.uniform(*INTENT_PEAK_RANGE, len(surges)),
        }
    )
    # spurious surges at covered prospects, as many as the assumed share of all surges makes
    eligible = ~chunk.customer & chunk.intent_covered
    per_cycle = INTENT_SURGE_SHOWS * INTENT_SPURIOUS_SHARE / (1 - INTENT_SPURIOUS_SHARE)
    lead_in = INTENT_LEAD_DAYS[1] + 160
    count = rng.poisson(chunk.episode_rate * per_cycle * (chunk.horizon + lead_in) * eligible)
    acct = np.repeat(np.arange(chunk.n), count)
    begin = rng.uniform(-lead_in, chunk.horizon, len(acct))
    length = rng.uniform(*INTENT_LEAD_DAYS, len(acct)) + research_days(rng, len(acct))
    noise = pd.DataFrame(
        {
            "acct": acct,
            "begin": begin,
            "end": begin + length,
            "topic": rng.integers(0, len(TOPICS), len(acct)),
            "peak": rng.uniform(*INTENT_PEAK_RANGE, len(acct)),
        }
    )
    spans = pd.concat([real, noise], ignore_index=True)
    weeks = np.ceil((spans["end"] - spans["begin"]).to_numpy() / 7).astype(int).clip(1, 40)
    idx = np.repeat(np.arange(len(spans)), weeks)
    week = segment_positions(weeks)
    day = spans["begin"].to_numpy()[idx] + 7 * week
    ramp = (week + 1) / weeks[idx]
    score = np.clip(
        spans["peak"].to_numpy()[idx] * (0.7 + 0.3 * ramp) + rng.normal(0, 6, len(idx)), 0, 100
    ).round(1)
    day = np.floor(day / 7) * 7  # weekly records
    frame = pd.DataFrame(
        {
            "acct": spans["acct"].to_numpy()[idx],
            "day": day,
            "topic": spans["topic"].to_numpy()[idx],
            "score": score,
        }
    )
    frame = frame[(frame["day"] >= 0) & (frame["day"] < chunk.horizon)]
    frame = frame.sort_values("score").drop_duplicates(["acct", "day", "topic"], keep="last")
    frame = frame.sort_values(["day", "acct", "topic"], kind="stable")
    chunk.tables["intent"] = pd.DataFrame(
        {
            "account_id": chunk.account_id[frame["acct"].to_numpy()],
            "date": chunk.stamp(frame["day"].to_numpy()).astype("datetime64[D]"),
            "topic": np.array(TOPICS, dtype=object)[frame["topic"].to_numpy()],
            "score": frame["score"].to_numpy(),
        }
    )
