"""Accounts and their people: firmographics, the hidden fit, buying groups and their titles."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.windows import segment_positions
from inmarket.synthetic.chunk import Chunk, ids, sigmoid
from inmarket.synthetic.vocabularies import (
    C_LEVEL_TITLES,
    DECIDING_ROLES,
    FIRST_NAMES,
    INDUSTRIES,
    INTENT_COVERAGE_BY_BAND,
    LAST_NAMES,
    NAME_FIRST,
    NAME_SECOND,
    OWNERS,
    REGIONS,
    ROLE_PROFILES,
    SENIORITIES,
)


def add_accounts(chunk: Chunk) -> None:
    """Draw firmographics, the hidden fit, customers and tire-kickers for the chunk's accounts."""
    rng, n = chunk.rng, chunk.n
    number = chunk.first + np.arange(n) + 1
    chunk.account_id = ids("A", number, 6).to_numpy(dtype=object)
    ind_names = list(INDUSTRIES)
    ind_p = np.array([v[0] for v in INDUSTRIES.values()])
    industry = rng.choice(len(ind_names), n, p=ind_p / ind_p.sum())
    reg_names = list(REGIONS)
    reg_p = np.array([v[0] for v in REGIONS.values()])
    region = rng.choice(len(reg_names), n, p=reg_p / reg_p.sum())
    employees = np.clip(np.round(np.exp(rng.normal(5.4, 1.5, n))), 5, 250_000).astype(int)
    size_effect = np.select(
        [employees < 50, employees < 200, employees <= 10_000], [-0.9, 0.1, 0.6], 0.2
    )
    z = (
        np.array([v[1] for v in INDUSTRIES.values()])[industry]
        + size_effect
        + np.array([v[1] for v in REGIONS.values()])[region]
        + rng.normal(0, 0.7, n)
    )
    chunk.fit = sigmoid(z)
    chunk.employees = employees
    first = np.array(NAME_FIRST, dtype=object)[rng.integers(0, len(NAME_FIRST), n)]
    second = np.array(NAME_SECOND, dtype=object)[rng.integers(0, len(NAME_SECOND), n)]
    name = first + " " + second
    chunk.domain = (
        pd.Series(first + second).str.lower() + pd.Series(number).astype("str") + ".com"
    ).to_numpy(dtype=object)
    created = np.where(
        rng.random(n) < 0.9, -rng.uniform(30, 1500, n), rng.uniform(0, chunk.horizon - 60, n)
    )
    band = pd.cut(
        employees,
        [0, 50, 200, 1000, 5000, 10**9],
        labels=["1-50", "51-200", "201-1000", "1001-5000", "5000+"],
    )
    chunk.tables["accounts"] = pd.DataFrame(
        {
            "account_id": chunk.account_id,
            "name": name,
            "domain": chunk.domain,
            "industry": np.array(ind_names, dtype=object)[industry],
            "employee_count": employees,
            "employee_band": np.asarray(band.astype("str"), dtype=object),
            "region": np.array(reg_names, dtype=object)[region],
            "created_at": chunk.stamp(created),
            # in turn, not drawn: the rest of the world is the same with or without owners
            "owner": np.array(OWNERS, dtype=object)[number % len(OWNERS)],
        }
    )
    # customers at the start of history
    chunk.customer = rng.random(n) < 0.02 + 0.1 * chunk.fit
    chunk.customer_since = np.where(chunk.customer, -rng.uniform(30, 700, n), np.nan)
    chunk.tire_kicker = ~chunk.customer & (rng.random(n) < 0.05)
    # whether the intent provider resolves the account's research at all, by company size
    below = np.array([b for b, _ in INTENT_COVERAGE_BY_BAND])
    shares = np.array([c for _, c in INTENT_COVERAGE_BY_BAND])
    chunk.intent_covered = rng.random(n) < shares[np.searchsorted(below, employees, side="right")]


def add_people(chunk: Chunk) -> None:
    """Staff each account's buying group, plus a tire-kicker, and order who engages first."""
    rng, n = chunk.rng, chunk.n
    size = np.clip(
        np.round(3.0 + 1.6 * np.log10(chunk.employees) + rng.normal(0, 1.5, n)), 4, 15
    ).astype(int)
    chunk.group_size = size
    acct = np.repeat(np.arange(n), size)
    pos = segment_positions(size)
    m = len(acct)
    extra = rng.choice(["influencer", "user", "other"], m, p=[0.35, 0.45, 0.2])
    role = np.select(
        [pos == 0, pos == 1, pos == 2, (pos == 3) & (size[acct] >= 6)],
        list(DECIDING_ROLES),
        extra,
    ).astype(object)
    seniority = np.empty(m, dtype=object)
    department = np.empty(m, dtype=object)
    for r, (sen_p, depts) in ROLE_PROFILES.items():
        mask = role == r
        k = int(mask.sum())
        sp = np.array(sen_p, dtype=float)
        seniority[mask] = np.array(SENIORITIES, dtype=object)[rng.choice(5, k, p=sp / sp.sum())]
        dp = np.array(list(depts.values()))
        department[mask] = np.array(list(depts), dtype=object)[
            rng.choice(len(depts), k, p=dp / dp.sum())
        ]
    # tire-kickers: one extra junior person who never buys
    tk = np.flatnonzero(chunk.tire_kicker)
    acct = np.concatenate([acct, tk])
    pos = np.concatenate([pos, size[tk]])
    role = np.concatenate([role, np.full(len(tk), "other", dtype=object)])
    seniority = np.concatenate(
        [seniority, np.full(len(tk), "individual_contributor", dtype=object)]
    )
    department = np.concatenate(
        [
            department,
            rng.choice(np.array(["marketing", "research", "student"], dtype=object), len(tk)),
        ]
    )
    chunk.person_id = (
        pd.Series(chunk.account_id[acct]).str.replace("A", "P", n=1)
        + "-"
        + pd.Series(pos).astype("str").str.zfill(2)
    ).to_numpy(dtype=object)
    chunk.tire_kicker_person = np.full(n, None, dtype=object)
    chunk.tire_kicker_person[tk] = chunk.person_id[len(chunk.person_id) - len(tk) :]
    title = _titles(seniority, department)
    first = np.array(FIRST_NAMES, dtype=object)[rng.integers(0, len(FIRST_NAMES), len(acct))]
    last = np.array(LAST_NAMES, dtype=object)[rng.integers(0, len(LAST_NAMES), len(acct))]
    email = (
        first
        + "."
        + last
        + pd.Series(pos).astype("str").to_numpy(dtype=object)
        + "@"
        + chunk.domain[acct]
    )
    chunk.tables["people"] = pd.DataFrame(
        {
            "person_id": chunk.person_id,
            "account_id": chunk.account_id[acct],
            "name": pd.Series(first + " " + last).str.title().to_numpy(dtype=object),
            "email": email,
            "owner": chunk.tables["accounts"]["owner"].to_numpy()[acct],
            "title": title,
            "department": department,
            "seniority": seniority,
            "buying_role": role,
        }
    )
    # engagement order inside each buying group: juniors first, then more senior people
    group = pos < size[acct]
    sen_rank = pd.Series(seniority).map({s: i for i, s in enumerate(SENIORITIES)}).to_numpy()
    key = sen_rank + rng.normal(0, 1.3, len(acct))
    order = np.lexsort((key[group], acct[group]))
    chunk.order_person = np.flatnonzero(group)[order]  # person rows, account by account
    chunk.order_offset = np.cumsum(size) - size
    chunk.role = role


def _titles(seniority: np.ndarray, department: np.ndarray) -> np.ndarray:
    """Job titles that read like real ones, from seniority and department."""
    dept = pd.Series(department).str.replace("_", " ").str.title()
    dept = dept.where(~dept.isin(["It", "Hr"]), dept.str.upper())
    sen = pd.Series(seniority)
    title = np.select(
        [sen == "vp", sen == "director", sen == "manager", sen == "individual_contributor"],
        ["VP " + dept, "Director of " + dept, dept + " Manager", dept + " Specialist"],
        pd.Series(department).map(C_LEVEL_TITLES).fillna("Chief Officer"),
    )
    title = np.where(
        np.isin(department, ["student", "research"]) & (sen == "individual_contributor"),
        np.where(department == "student", "Student", "Research Analyst"),
        title,
    )
    return np.asarray(title, dtype=object)


def date_people(chunk: Chunk) -> None:
    """When each person entered the CRM: with their account (this world keeps a buying group on
    file from the start; it does not model contacts added as deals progress, so the feature of
    people added stays still, as it would in a CRM at steady state). No random draw: the rest
    of the world is the same with or without these dates."""
    people = chunk.tables["people"]
    created = chunk.tables["accounts"].set_index("account_id")["created_at"]
    people["created_at"] = people["account_id"].map(created)
