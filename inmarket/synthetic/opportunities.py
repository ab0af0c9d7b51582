"""Deals (new business from cycles and quiet wins, renewals, expansions) and the hidden truth."""

from __future__ import annotations

import numpy as np
import pandas as pd

from inmarket.synthetic.chunk import Chunk, ids
from inmarket.synthetic.vocabularies import FIT_MEAN


def add_opportunities(chunk: Chunk) -> None:
    """Write the deals: from buying cycles, quiet wins, and customers' renewals and expansions."""
    rng, ep = chunk.rng, chunk.ep
    deals = ep[ep["creates"]][["acct", "created", "closed", "won"]].assign(
        type="new_business", episode=ep.index[ep["creates"]]
    )
    new_business = pd.concat([deals, _quiet_wins(chunk)], ignore_index=True)
    # renewals (yearly) and expansions for customers, from the start or from a new win
    won_nb = new_business[new_business["won"] & (new_business["closed"] < chunk.horizon)]
    since = pd.concat(
        [
            pd.Series(chunk.customer_since[chunk.customer], index=np.flatnonzero(chunk.customer)),
            won_nb.groupby("acct")["closed"].min(),
        ]
    )
    opps = pd.concat(
        [new_business, _renewals(chunk, since), _expansions(chunk, since)], ignore_index=True
    )
    opps = opps[(opps["created"] >= 0) & (opps["created"] < chunk.horizon)]
    opps = opps.sort_values(["created", "acct"], kind="stable").reset_index(drop=True)
    is_open = opps["closed"] >= chunk.horizon
    status = np.where(is_open, "open", np.where(opps["won"], "won", "lost"))
    amount = np.round(
        np.exp(rng.normal(9.5, 0.6, len(opps)))
        * np.sqrt(chunk.employees[opps["acct"].to_numpy()] / 100),
        -2,
    )
    opp_id = ids(f"O{chunk.index:04d}-", np.arange(len(opps)), 5).to_numpy(dtype=object)
    closed = chunk.stamp(opps["closed"].to_numpy())
    chunk.tables["opportunities"] = pd.DataFrame(
        {
            "opportunity_id": opp_id,
            "account_id": chunk.account_id[opps["acct"].to_numpy()],
            "created_at": chunk.stamp(opps["created"].to_numpy()),
            "closed_at": pd.Series(closed).where(~is_open.to_numpy()).to_numpy(),
            "status": status,
            "type": opps["type"].to_numpy(),
            "amount": amount,
        }
    )
    _truth(chunk, opps.assign(opportunity_id=opp_id, won=(status == "won")))


def _quiet_wins(chunk: Chunk) -> pd.DataFrame:
    """Partner- or outbound-sourced deals with no buying cycle seen."""
    rng = chunk.rng
    eligible = ~chunk.customer & ~chunk.tire_kicker
    count = rng.poisson(chunk.episode_rate * 0.08 * chunk.fit / FIT_MEAN * chunk.horizon * eligible)
    acct = np.repeat(np.arange(chunk.n), count)
    created = rng.uniform(0, chunk.horizon, len(acct))
    return pd.DataFrame(
        {
            "acct": acct,
            "created": created,
            "closed": created + 20 + rng.gamma(2.0, 25.0, len(acct)),
            "won": rng.random(len(acct)) < 0.4,
            "type": "new_business",
            "episode": -1,
        }
    )


def _renewals(chunk: Chunk, since: pd.Series) -> pd.DataFrame:
    """Yearly renewals of every customer (``since``: the day it became one, by account), up
    to its first lost renewal."""
    years = np.arange(1, 4)
    anniversaries = (since.to_numpy()[:, None] + 365 * years[None, :]).ravel()
    racct = np.repeat(since.index.to_numpy(), len(years))
    inside = (anniversaries - 60 >= 0) & (anniversaries - 60 < chunk.horizon)
    renewals = pd.DataFrame(
        {
            "acct": racct[inside],
            "created": anniversaries[inside] - 60,
            "closed": anniversaries[inside],
            "won": chunk.rng.random(int(inside.sum())) < 0.88,
            "type": "renewal",
            "episode": -1,
        }
    )
    renewals = renewals.sort_values(["acct", "created"])
    churned_before = renewals.groupby("acct")["won"].transform(
        lambda w: (~w).cumsum().shift(fill_value=0) > 0
    )
    return renewals[~churned_before]


def _expansions(chunk: Chunk, since: pd.Series) -> pd.DataFrame:
    """Expansion deals of every customer (``since`` as above), one per two years on average."""
    rng = chunk.rng
    tenure = np.clip(chunk.horizon - np.maximum(since.to_numpy(), 0), 0, None)
    n_exp = rng.poisson(0.5 * tenure / 365)
    eacct = np.repeat(since.index.to_numpy(), n_exp)
    ecreated = np.maximum(np.repeat(since.to_numpy(), n_exp), 0) + rng.random(
        len(eacct)
    ) * np.repeat(tenure, n_exp)
    return pd.DataFrame(
        {
            "acct": eacct,
            "created": ecreated,
            "closed": ecreated + 15 + rng.gamma(2.0, 15.0, len(eacct)),
            "won": rng.random(len(eacct)) < 0.55,
            "type": "expansion",
            "episode": -1,
        }
    )


def _truth(chunk: Chunk, opps: pd.DataFrame) -> None:
    """Record the hidden truth: every buying cycle and quiet win, and each account's fit."""
    ep = chunk.ep
    linked = opps[opps["episode"] >= 0].set_index("episode")
    quiet = opps[(opps["episode"] < 0) & (opps["type"] == "new_business")]
    episodes = pd.DataFrame(
        {
            "account_id": chunk.account_id[ep["acct"].to_numpy()],
            "kind": "episode",
            "start": chunk.stamp(ep["start"].to_numpy()),
            "opportunity_at": chunk.stamp(ep["created"].to_numpy()),
            "dark": ep["dark"].to_numpy(),
            "strength": ep["strength"].to_numpy(),
            "engaged_people": ep["engaged"].to_numpy().astype("int64"),
            "role_coverage": ep["coverage"].to_numpy(),
            "has_intent": ep["has_intent"].to_numpy(),
            "opportunity_id": linked["opportunity_id"].reindex(ep.index).to_numpy(dtype=object),
            "won": linked["won"].reindex(ep.index).fillna(False).to_numpy(dtype=bool),
        }
    )
    quiet_rows = pd.DataFrame(
        {
            "account_id": chunk.account_id[quiet["acct"].to_numpy()],
            "kind": "quiet",
            "start": chunk.stamp(quiet["created"].to_numpy()),
            "opportunity_at": chunk.stamp(quiet["created"].to_numpy()),
            "dark": True,
            "strength": 0.0,
            "engaged_people": 0,
            "role_coverage": 0.0,
            "has_intent": False,
            "opportunity_id": quiet["opportunity_id"].to_numpy(dtype=object),
            "won": quiet["won"].to_numpy(dtype=bool),
        }
    )
    chunk.tables["truth_episodes"] = pd.concat([episodes, quiet_rows], ignore_index=True)
    chunk.tables["truth_accounts"] = pd.DataFrame(
        {
            "account_id": chunk.account_id,
            "fit": chunk.fit,
            "customer_since": chunk.stamp(np.nan_to_num(chunk.customer_since, nan=0.0)),
            "is_tire_kicker": chunk.tire_kicker,
            "intent_covered": chunk.intent_covered,
            "tire_kicker_person_id": chunk.tire_kicker_person,
        }
    )
    chunk.tables["truth_accounts"]["customer_since"] = chunk.tables["truth_accounts"][
        "customer_since"
    ].where(chunk.customer)
