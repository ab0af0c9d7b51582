"""A believable synthetic B2B market, written as the five contract tables plus a hidden truth.

The world is built so that it does not hand a model its answer:

- accounts have firmographics and a latent *fit* that raises both how often they enter a
  buying cycle and how often they win;
- an in-market *episode* is a buying cycle: third-party intent surges a few weeks before the
  first site visit, then more people, then more senior people engage, with momentum towards
  the day an opportunity is created; a share of the research is anonymous;
- a quarter of episodes stay *dark* (little first-party activity, intent only); some won deals
  come from quiet accounts (partner or outbound sourced); some episodes end without a deal;
- *tire-kickers* (one junior person downloading and filling forms) earn MQL points and never buy;
  customers are busy and buy renewals and expansions, not new business;
- wins depend on fit and on how much of the buying group was engaged; seasonality and
  background noise everywhere.

Accounts are generated in fixed chunks, each with its own random stream derived from the seed,
and streamed to Parquet, so memory is bounded and the same seed gives the same bytes. The hidden
truth goes to ``_truth/``, which the loader never reads.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from features.families import segment_positions
from features.tables import EXTRACT_MANIFEST

CHUNK_ACCOUNTS = 2000
TRUTH_DIR = "_truth"
DIRT_FILE = "dirt.json"

INDUSTRIES = {  # name: (share of accounts, fit effect)
    "software": (0.18, 0.8),
    "financial_services": (0.12, 0.6),
    "healthcare": (0.12, 0.1),
    "manufacturing": (0.16, 0.0),
    "retail": (0.12, -0.2),
    "professional_services": (0.14, 0.3),
    "education": (0.08, -0.6),
    "government": (0.08, -0.8),
}
REGIONS = {
    "north_america": (0.45, 0.2),
    "emea": (0.33, 0.0),
    "apac": (0.15, -0.2),
    "latam": (0.07, -0.4),
}
TOPICS = (
    "account_based_marketing",
    "intent_data",
    "marketing_automation",
    "sales_engagement",
    "revenue_analytics",
    "data_enrichment",
    "customer_data_platform",
    "lead_scoring",
)
SENIORITIES = ("individual_contributor", "manager", "director", "vp", "c_level")
KEY_ROLES = ("decision_maker", "champion", "technical_evaluator", "finance")
# role -> (seniority probabilities in SENIORITIES order, departments and their probabilities)
ROLE_PROFILES: dict[str, tuple[tuple[float, ...], dict[str, float]]] = {
    "decision_maker": (
        (0, 0, 0.15, 0.5, 0.35),
        {"marketing": 0.45, "sales": 0.35, "executive": 0.2},
    ),
    "champion": (
        (0.05, 0.45, 0.45, 0.05, 0),
        {"marketing": 0.55, "sales": 0.25, "operations": 0.2},
    ),
    "technical_evaluator": ((0.4, 0.45, 0.15, 0, 0), {"it": 0.6, "engineering": 0.4}),
    "finance": ((0, 0.3, 0.4, 0.2, 0.1), {"finance": 0.85, "procurement": 0.15}),
    "influencer": (
        (0.2, 0.45, 0.3, 0.05, 0),
        {"marketing": 0.35, "sales": 0.35, "operations": 0.15, "customer_success": 0.15},
    ),
    "user": ((0.7, 0.3, 0, 0, 0), {"marketing": 0.5, "sales": 0.5}),
    "other": (
        (0.6, 0.35, 0.05, 0, 0),
        {"hr": 0.25, "legal": 0.25, "operations": 0.25, "customer_success": 0.25},
    ),
}
C_LEVEL_TITLES = {
    "marketing": "Chief Marketing Officer",
    "sales": "Chief Revenue Officer",
    "executive": "Chief Executive Officer",
    "finance": "Chief Financial Officer",
    "it": "Chief Information Officer",
    "engineering": "Chief Technology Officer",
    "operations": "Chief Operating Officer",
    "procurement": "Chief Procurement Officer",
}
EVENT_CHANNELS = {
    "page_view": "web",
    "pricing_page": "web",
    "comparison_page": "web",
    "case_study_view": "web",
    "content_download": "web",
    "form_fill": "web",
    "demo_request": "web",
    "trial_signup": "web",
    "review_site_visit": "review_site",
    "ad_click": "paid_social",
    "email_open": "email",
    "email_click": "email",
    "webinar_attended": "webinar",
}
WEB_CHANNELS = ("web", "review_site", "paid_social")
# event mixes: type -> probability
BACKGROUND_MIX = {
    "email_open": 0.42,
    "email_click": 0.08,
    "page_view": 0.27,
    "content_download": 0.05,
    "webinar_attended": 0.03,
    "form_fill": 0.02,
    "pricing_page": 0.03,
    "case_study_view": 0.04,
    "review_site_visit": 0.02,
    "ad_click": 0.04,
}
RESEARCH_MIX = {
    "page_view": 0.38,
    "content_download": 0.12,
    "case_study_view": 0.1,
    "review_site_visit": 0.1,
    "webinar_attended": 0.05,
    "email_click": 0.1,
    "email_open": 0.1,
    "ad_click": 0.05,
}
BUYING_MIX = {
    "pricing_page": 0.38,
    "comparison_page": 0.22,
    "demo_request": 0.1,
    "trial_signup": 0.08,
    "case_study_view": 0.12,
    "form_fill": 0.1,
}
TIRE_KICKER_MIX = {
    "content_download": 0.32,
    "form_fill": 0.18,
    "webinar_attended": 0.14,
    "page_view": 0.16,
    "email_click": 0.1,
    "email_open": 0.05,
    "pricing_page": 0.03,
    "demo_request": 0.02,
}
MONTH_FACTOR = np.array([0.9, 1.0, 1.05, 1.0, 1.0, 0.95, 0.85, 0.7, 1.05, 1.1, 1.05, 0.6])
WEEKDAY_FACTOR = np.array([1.0, 1.05, 1.05, 1.0, 0.9, 0.2, 0.15])  # Monday first
FIT_MEAN = 0.57  # approximate mean fit, so the in-market share matches the configured rate
FIRST_NAMES = (
    "ana",
    "ben",
    "chen",
    "dana",
    "eli",
    "fatima",
    "gustav",
    "hana",
    "ivan",
    "jia",
    "kofi",
    "lena",
    "mateo",
    "nadia",
    "omar",
    "priya",
    "quinn",
    "rosa",
    "sam",
    "tara",
    "uma",
    "victor",
    "wen",
    "ximena",
    "yusuf",
    "zoe",
    "noah",
    "emma",
    "liam",
    "mia",
)
LAST_NAMES = (
    "garcia",
    "smith",
    "kim",
    "nguyen",
    "muller",
    "rossi",
    "silva",
    "khan",
    "cohen",
    "okafor",
    "tanaka",
    "larsen",
    "dubois",
    "novak",
    "patel",
    "lopez",
    "brown",
    "wang",
    "ivanova",
    "jensen",
    "costa",
    "ali",
    "fischer",
    "moreau",
    "sato",
    "walsh",
    "reyes",
    "berg",
    "horvat",
    "mensah",
)
NAME_FIRST = (
    "North",
    "Blue",
    "Summit",
    "Bright",
    "Iron",
    "Silver",
    "Pacific",
    "Granite",
    "Clear",
    "Swift",
    "Apex",
    "Harbor",
    "Cedar",
    "Atlas",
    "Nova",
    "Vertex",
    "Pioneer",
    "Crescent",
    "Evergreen",
    "Lumen",
    "Polar",
    "Quantum",
    "Red",
    "Stone",
    "True",
    "Union",
    "Vista",
    "Wild",
    "Orbit",
    "Meridian",
)
NAME_SECOND = (
    "Analytics",
    "Systems",
    "Logistics",
    "Health",
    "Capital",
    "Foods",
    "Robotics",
    "Software",
    "Energy",
    "Labs",
    "Partners",
    "Networks",
    "Retail",
    "Bank",
    "Insurance",
    "Media",
    "Motors",
    "Pharma",
    "Solutions",
    "Works",
)

_SCHEMAS = {
    "accounts": pa.schema(
        [
            ("account_id", pa.string()),
            ("name", pa.string()),
            ("domain", pa.string()),
            ("industry", pa.string()),
            ("employee_count", pa.int64()),
            ("employee_band", pa.string()),
            ("region", pa.string()),
            ("created_at", pa.timestamp("us", "UTC")),
        ]
    ),
    "people": pa.schema(
        [
            ("person_id", pa.string()),
            ("account_id", pa.string()),
            ("email", pa.string()),
            ("title", pa.string()),
            ("department", pa.string()),
            ("seniority", pa.string()),
            ("buying_role", pa.string()),
        ]
    ),
    "events": pa.schema(
        [
            ("event_id", pa.string()),
            ("timestamp", pa.timestamp("us", "UTC")),
            ("account_id", pa.string()),
            ("person_id", pa.string()),
            ("event_type", pa.string()),
            ("channel", pa.string()),
            ("topic", pa.string()),
        ]
    ),
    "intent": pa.schema(
        [
            ("account_id", pa.string()),
            ("date", pa.date32()),
            ("topic", pa.string()),
            ("score", pa.float64()),
        ]
    ),
    "opportunities": pa.schema(
        [
            ("opportunity_id", pa.string()),
            ("account_id", pa.string()),
            ("created_at", pa.timestamp("us", "UTC")),
            ("closed_at", pa.timestamp("us", "UTC")),
            ("status", pa.string()),
            ("type", pa.string()),
            ("amount", pa.float64()),
        ]
    ),
    "truth_accounts": pa.schema(
        [
            ("account_id", pa.string()),
            ("fit", pa.float64()),
            ("customer_since", pa.timestamp("us", "UTC")),
            ("is_tire_kicker", pa.bool_()),
            ("tire_kicker_person_id", pa.string()),
        ]
    ),
    "truth_episodes": pa.schema(
        [
            ("account_id", pa.string()),
            ("kind", pa.string()),
            ("start", pa.timestamp("us", "UTC")),
            ("opportunity_at", pa.timestamp("us", "UTC")),
            ("dark", pa.bool_()),
            ("strength", pa.float64()),
            ("engaged_people", pa.int64()),
            ("role_coverage", pa.float64()),
            ("has_intent", pa.bool_()),
            ("opportunity_id", pa.string()),
            ("won", pa.bool_()),
        ]
    ),
}
_DIRTY_TIMESTAMPS = {"events": ["timestamp"]}


@dataclass(frozen=True)
class WorldSpec:
    accounts: int = 5000
    seed: int = 7
    start: datetime = datetime(2024, 7, 1, tzinfo=UTC)
    days: int = 730
    dirty: bool = False
    in_market_quarterly: float = 0.05

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)


@dataclass
class WorldSummary:
    rows: dict[str, int] = field(default_factory=dict)
    dirt: dict[str, dict[str, int]] = field(default_factory=dict)


def _pick(rng: np.random.Generator, mix: dict[str, float], size: int) -> np.ndarray:
    names = np.array(list(mix), dtype=object)
    p = np.array(list(mix.values()))
    return names[rng.choice(len(names), size=size, p=p / p.sum())]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pd.Series:
    return prefix + pd.Series(numbers, dtype="int64").astype("str").str.zfill(width)


def _seasonal_keep(rng: np.random.Generator, t: np.ndarray, start: np.datetime64) -> np.ndarray:
    """Thin event times (days since start) by month and weekday seasonality."""
    stamps = start + (t * 86_400e6).astype("int64").astype("timedelta64[us]")
    month = stamps.astype("datetime64[M]").astype(int) % 12
    weekday = (stamps.astype("datetime64[D]").astype(int) + 3) % 7  # 1970-01-01 was a Thursday
    p = MONTH_FACTOR[month] * WEEKDAY_FACTOR[weekday] / (MONTH_FACTOR.max() * WEEKDAY_FACTOR.max())
    keep: np.ndarray = rng.random(len(t)) < p
    return keep


class _Chunk:
    """Generates one chunk of accounts and everything that happens to them."""

    def __init__(self, spec: WorldSpec, index: int, first: int, n: int) -> None:
        self.spec, self.index, self.first, self.n = spec, index, first, n
        self.rng = np.random.default_rng([spec.seed, index])
        self.start64 = np.datetime64(spec.start.replace(tzinfo=None), "us")
        self.horizon = float(spec.days)
        # rate per day such that about in_market_quarterly of accounts are in a cycle in a quarter
        self.episode_rate = spec.in_market_quarterly / (78.0 + 91.0)

    def stamp(self, days: np.ndarray) -> np.ndarray:
        return self.start64 + (np.asarray(days) * 86_400e6).astype("int64").astype(
            "timedelta64[us]"
        )

    # -------------------------------------------------------------- accounts and people

    def accounts(self) -> None:
        rng, n = self.rng, self.n
        number = self.first + np.arange(n) + 1
        self.account_id = _ids("A", number, 6).to_numpy(dtype=object)
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
        self.fit = _sigmoid(z)
        self.employees = employees
        first = np.array(NAME_FIRST, dtype=object)[rng.integers(0, len(NAME_FIRST), n)]
        second = np.array(NAME_SECOND, dtype=object)[rng.integers(0, len(NAME_SECOND), n)]
        name = first + " " + second
        self.domain = (
            pd.Series(first + second).str.lower() + pd.Series(number).astype("str") + ".com"
        ).to_numpy(dtype=object)
        created = np.where(
            rng.random(n) < 0.9, -rng.uniform(30, 1500, n), rng.uniform(0, self.horizon - 60, n)
        )
        band = pd.cut(
            employees,
            [0, 50, 200, 1000, 5000, 10**9],
            labels=["1-50", "51-200", "201-1000", "1001-5000", "5000+"],
        )
        self.tables = {
            "accounts": pd.DataFrame(
                {
                    "account_id": self.account_id,
                    "name": name,
                    "domain": self.domain,
                    "industry": np.array(ind_names, dtype=object)[industry],
                    "employee_count": employees,
                    "employee_band": np.asarray(band.astype("str"), dtype=object),
                    "region": np.array(reg_names, dtype=object)[region],
                    "created_at": self.stamp(created),
                }
            )
        }
        # customers at the start of history
        self.customer = rng.random(n) < 0.02 + 0.1 * self.fit
        self.customer_since = np.where(self.customer, -rng.uniform(30, 700, n), np.nan)
        self.tire_kicker = ~self.customer & (rng.random(n) < 0.05)

    def people(self) -> None:
        rng, n = self.rng, self.n
        size = np.clip(
            np.round(3.0 + 1.6 * np.log10(self.employees) + rng.normal(0, 1.5, n)), 4, 15
        ).astype(int)
        self.group_size = size
        acct = np.repeat(np.arange(n), size)
        pos = segment_positions(size)
        m = len(acct)
        extra = rng.choice(["influencer", "user", "other"], m, p=[0.35, 0.45, 0.2])
        role = np.select(
            [pos == 0, pos == 1, pos == 2, (pos == 3) & (size[acct] >= 6)],
            ["decision_maker", "champion", "technical_evaluator", "finance"],
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
        tk = np.flatnonzero(self.tire_kicker)
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
        self.person_id = (
            pd.Series(self.account_id[acct]).str.replace("A", "P", n=1)
            + "-"
            + pd.Series(pos).astype("str").str.zfill(2)
        ).to_numpy(dtype=object)
        self.tire_kicker_person = np.full(n, None, dtype=object)
        self.tire_kicker_person[tk] = self.person_id[len(self.person_id) - len(tk) :]
        title = self._titles(seniority, department)
        first = np.array(FIRST_NAMES, dtype=object)[rng.integers(0, len(FIRST_NAMES), len(acct))]
        last = np.array(LAST_NAMES, dtype=object)[rng.integers(0, len(LAST_NAMES), len(acct))]
        email = (
            first
            + "."
            + last
            + pd.Series(pos).astype("str").to_numpy(dtype=object)
            + "@"
            + self.domain[acct]
        )
        self.tables["people"] = pd.DataFrame(
            {
                "person_id": self.person_id,
                "account_id": self.account_id[acct],
                "email": email,
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
        self.order_person = np.flatnonzero(group)[order]  # person rows, account by account
        self.order_offset = np.cumsum(size) - size
        self.role = role

    @staticmethod
    def _titles(seniority: np.ndarray, department: np.ndarray) -> np.ndarray:
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

    # -------------------------------------------------------------- buying cycles

    def episodes(self) -> None:
        rng = self.rng
        eligible = ~self.customer & ~self.tire_kicker
        lead_in = 150.0
        span = self.horizon + lead_in
        rate = self.episode_rate * self.fit / FIT_MEAN * eligible
        count = rng.poisson(rate * span)
        acct = np.repeat(np.arange(self.n), count)
        start = rng.uniform(-lead_in, self.horizon, len(acct))
        order = np.lexsort((start, acct))
        acct, start = acct[order], start[order]
        prev_same = np.diff(acct, prepend=-1) == 0
        gap = np.diff(start, prepend=-np.inf)
        keep = ~(prev_same & (gap < 200))
        acct, start = acct[keep], start[keep]
        e = len(acct)
        duration = np.clip(28 + rng.gamma(2.0, 25.0, e), 30, 160)
        dark = rng.random(e) < 0.25
        strength = rng.lognormal(0.0, 0.5, e)
        g = self.group_size[acct]
        p_engage = np.clip(0.25 + 0.25 * strength, 0.1, 0.9)
        engaged = np.where(dark, rng.integers(1, 3, e), np.clip(rng.binomial(g, p_engage), 2, g))
        engaged = np.minimum(engaged, g)
        coverage = self._role_coverage(acct, engaged)
        creates = rng.random(e) < np.where(dark, 0.55, 0.7)
        p_win = _sigmoid(
            -0.7 + 3.0 * (self.fit[acct] - FIT_MEAN) + 3.0 * (coverage - 0.4) - 0.3 * dark
        )
        won = rng.random(e) < p_win
        cycle = 20 + rng.gamma(2.0, 25.0, e)
        has_intent = rng.random(e) < 0.7
        intent_lead = rng.uniform(14, 56, e)
        topic = rng.integers(0, len(TOPICS), e)
        self.ep = pd.DataFrame(
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
        self.ep["created"] = self.ep["start"] + self.ep["duration"]
        self.ep["closed"] = self.ep["created"] + self.ep["cycle"]
        # an account that wins new business becomes a customer: later cycles do not happen
        wins = self.ep[self.ep["creates"] & self.ep["won"] & (self.ep["created"] >= 0)]
        first_win = wins.groupby("acct")["closed"].min()
        after = self.ep["start"] > self.ep["acct"].map(first_win).fillna(np.inf)
        self.ep = self.ep[~after].reset_index(drop=True)

    def _role_coverage(self, acct: np.ndarray, engaged: np.ndarray) -> np.ndarray:
        """Share of the key buying roles among the people an episode engages."""
        g = self.group_size[acct]
        ep = np.repeat(np.arange(len(acct)), g)
        pos = segment_positions(g)
        person = self.order_person[self.order_offset[acct][ep] + pos]
        is_engaged = pos < engaged[ep]
        covered = np.zeros(len(acct))
        for role in KEY_ROLES:
            hit = (
                np.bincount(
                    ep, weights=is_engaged & (self.role[person] == role), minlength=len(acct)
                )
                > 0
            )
            covered += hit
        result: np.ndarray = covered / len(KEY_ROLES)
        return result

    # -------------------------------------------------------------- events

    def _pick_people(self, acct: np.ndarray, engaged_now: np.ndarray) -> np.ndarray:
        pos = np.floor(self.rng.random(len(acct)) * engaged_now).astype(int)
        person: np.ndarray = self.order_person[self.order_offset[acct] + pos]
        return person

    def _events_frame(
        self,
        acct: np.ndarray,
        t: np.ndarray,
        person: np.ndarray,
        etype: np.ndarray,
        topic: np.ndarray,
        anon_p: np.ndarray | float,
    ) -> pd.DataFrame:
        rng = self.rng
        channel = pd.Series(etype).map(EVENT_CHANNELS).to_numpy(dtype=object)
        anon = np.isin(channel, WEB_CHANNELS) & (rng.random(len(acct)) < anon_p)
        pid = self.person_id[person]
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

    def episode_events(self) -> list[pd.DataFrame]:
        rng, ep = self.rng, self.ep
        frames = []
        # research phase: ramps towards the opportunity, more and more senior people join
        volume = (
            ep["strength"]
            * 90
            * np.where(ep["dark"], 0.1, 1.0)
            * np.sqrt(np.minimum(self.group_size[ep["acct"]], 10) / 8)
        )
        n = rng.poisson(volume.to_numpy())
        idx = np.repeat(np.arange(len(ep)), n)
        frac = rng.beta(2.2, 1.0, len(idx))
        acct = ep["acct"].to_numpy()[idx]
        t = ep["start"].to_numpy()[idx] + frac * ep["duration"].to_numpy()[idx]
        engaged = ep["engaged"].to_numpy()[idx]
        engaged_now = np.maximum(1, np.ceil(engaged * frac**0.8)).astype(int)
        person = self._pick_people(acct, engaged_now)
        buying = rng.random(len(idx)) < 0.05 + 0.4 * frac**2
        etype = np.where(
            buying, _pick(rng, BUYING_MIX, len(idx)), _pick(rng, RESEARCH_MIX, len(idx))
        )
        topic = self._episode_topic(ep["topic"].to_numpy()[idx])
        anon_p = np.where(ep["dark"].to_numpy()[idx], 0.85, 0.35)
        frames.append(self._events_frame(acct, t, person, etype, topic, anon_p))
        # evaluation phase: the buying group works with sales until the deal closes
        open_ep = ep[ep["creates"]]
        n = rng.poisson(open_ep["strength"].to_numpy() * 25)
        idx = np.repeat(np.arange(len(open_ep)), n)
        acct = open_ep["acct"].to_numpy()[idx]
        t = (
            open_ep["created"].to_numpy()[idx]
            + rng.random(len(idx)) * open_ep["cycle"].to_numpy()[idx]
        )
        engaged = np.maximum(open_ep["engaged"].to_numpy()[idx], 2)
        engaged = np.minimum(engaged, self.group_size[acct])
        person = self._pick_people(acct, engaged)
        etype = np.where(
            rng.random(len(idx)) < 0.5,
            _pick(rng, BUYING_MIX, len(idx)),
            _pick(rng, RESEARCH_MIX, len(idx)),
        )
        topic = self._episode_topic(open_ep["topic"].to_numpy()[idx])
        frames.append(self._events_frame(acct, t, person, etype, topic, 0.2))
        return frames

    def _episode_topic(self, primary: np.ndarray) -> np.ndarray:
        other = self.rng.integers(0, len(TOPICS), len(primary))
        chosen = np.where(self.rng.random(len(primary)) < 0.7, primary, other)
        topics: np.ndarray = np.array(TOPICS, dtype=object)[chosen]
        return topics

    def background_events(self) -> pd.DataFrame:
        rng, n = self.rng, self.n
        rate = 0.2 * np.sqrt(self.group_size / 8) * np.where(self.customer, 2.0, 1.0)
        count = rng.poisson(rate * self.horizon)
        acct = np.repeat(np.arange(n), count)
        t = rng.uniform(0, self.horizon, len(acct))
        pos = np.floor(rng.random(len(acct)) * self.group_size[acct]).astype(int)
        person = self.order_person[self.order_offset[acct] + pos]
        etype = _pick(rng, BACKGROUND_MIX, len(acct))
        topic = np.array(TOPICS, dtype=object)[rng.integers(0, len(TOPICS), len(acct))]
        topic[rng.random(len(acct)) >= 0.6] = None
        return self._events_frame(acct, t, person, etype, topic, 0.4)

    def tire_kicker_events(self) -> pd.DataFrame:
        rng = self.rng
        tk = np.flatnonzero(self.tire_kicker)
        first_row = len(self.person_id) - len(tk)
        n = rng.poisson(50, len(tk))
        begin = rng.uniform(0, self.horizon - 60, len(tk))
        span = rng.uniform(40, 200, len(tk))
        idx = np.repeat(np.arange(len(tk)), n)
        t = begin[idx] + rng.random(len(idx)) * span[idx]
        etype = _pick(rng, TIRE_KICKER_MIX, len(idx))
        topic = np.array(TOPICS, dtype=object)[rng.integers(0, len(TOPICS), len(idx))]
        return self._events_frame(tk[idx], t, first_row + idx, etype, topic, 0.0)

    def events(self) -> None:
        rng = self.rng
        frames = [self.background_events(), self.tire_kicker_events(), *self.episode_events()]
        ev = pd.concat(frames, ignore_index=True)
        ev = ev[(ev["t"] >= 0) & (ev["t"] < self.horizon)]
        # time of day: office hours, spread across time zones
        seconds = np.clip(rng.normal(14 * 3600, 3.5 * 3600, len(ev)), 0, 86_399)
        day = np.floor(ev["t"].to_numpy())
        t = np.minimum(day + seconds / 86_400, self.horizon - 1e-6)
        keep = _seasonal_keep(rng, t, self.start64)
        ev = ev[keep].assign(t=t[keep])
        ev = ev.sort_values(["t", "acct"], kind="stable").reset_index(drop=True)
        self.tables["events"] = pd.DataFrame(
            {
                "event_id": _ids(f"E{self.index:04d}-", np.arange(len(ev)), 7),
                "timestamp": self.stamp(ev["t"].to_numpy()),
                "account_id": self.account_id[ev["acct"].to_numpy()],
                "person_id": ev["person_id"].to_numpy(),
                "event_type": ev["event_type"].to_numpy(),
                "channel": ev["channel"].to_numpy(),
                "topic": ev["topic"].to_numpy(),
            }
        )

    # -------------------------------------------------------------- intent

    def intent(self) -> None:
        rng, ep = self.rng, self.ep
        surges = ep[ep["has_intent"]]
        real = pd.DataFrame(
            {
                "acct": surges["acct"],
                "begin": surges["start"] - surges["intent_lead"],
                "end": surges["created"],
                "topic": surges["topic"],
                "peak": rng.uniform(75, 100, len(surges)),
            }
        )
        # spurious surges: research that never turns into a buying cycle
        eligible = ~self.customer
        count = rng.poisson(self.episode_rate * 1.5 * (self.horizon + 60) * eligible)
        acct = np.repeat(np.arange(self.n), count)
        begin = rng.uniform(-60, self.horizon, len(acct))
        noise = pd.DataFrame(
            {
                "acct": acct,
                "begin": begin,
                "end": begin + rng.uniform(14, 42, len(acct)),
                "topic": rng.integers(0, len(TOPICS), len(acct)),
                "peak": rng.uniform(55, 90, len(acct)),
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
        frame = frame[(frame["day"] >= 0) & (frame["day"] < self.horizon)]
        frame = frame.sort_values("score").drop_duplicates(["acct", "day", "topic"], keep="last")
        frame = frame.sort_values(["day", "acct", "topic"], kind="stable")
        self.tables["intent"] = pd.DataFrame(
            {
                "account_id": self.account_id[frame["acct"].to_numpy()],
                "date": self.stamp(frame["day"].to_numpy()).astype("datetime64[D]"),
                "topic": np.array(TOPICS, dtype=object)[frame["topic"].to_numpy()],
                "score": frame["score"].to_numpy(),
            }
        )

    # -------------------------------------------------------------- opportunities

    def opportunities(self) -> None:
        rng, ep = self.rng, self.ep
        deals = ep[ep["creates"]][["acct", "created", "closed", "won"]].assign(
            type="new_business", episode=ep.index[ep["creates"]]
        )
        # quiet wins: partner- or outbound-sourced deals with no buying cycle seen
        eligible = ~self.customer & ~self.tire_kicker
        count = rng.poisson(
            self.episode_rate * 0.08 * self.fit / FIT_MEAN * self.horizon * eligible
        )
        acct = np.repeat(np.arange(self.n), count)
        created = rng.uniform(0, self.horizon, len(acct))
        quiet = pd.DataFrame(
            {
                "acct": acct,
                "created": created,
                "closed": created + 20 + rng.gamma(2.0, 25.0, len(acct)),
                "won": rng.random(len(acct)) < 0.4,
                "type": "new_business",
                "episode": -1,
            }
        )
        new_business = pd.concat([deals, quiet], ignore_index=True)
        # renewals (yearly) and expansions for customers, from the start or from a new win
        won_nb = new_business[new_business["won"] & (new_business["closed"] < self.horizon)]
        since = pd.concat(
            [
                pd.Series(self.customer_since[self.customer], index=np.flatnonzero(self.customer)),
                won_nb.groupby("acct")["closed"].min(),
            ]
        )
        years = np.arange(1, 4)
        anniversaries = (since.to_numpy()[:, None] + 365 * years[None, :]).ravel()
        racct = np.repeat(since.index.to_numpy(), len(years))
        inside = (anniversaries - 60 >= 0) & (anniversaries - 60 < self.horizon)
        renewals = pd.DataFrame(
            {
                "acct": racct[inside],
                "created": anniversaries[inside] - 60,
                "closed": anniversaries[inside],
                "won": rng.random(int(inside.sum())) < 0.88,
                "type": "renewal",
                "episode": -1,
            }
        )
        renewals = renewals.sort_values(["acct", "created"])
        churned_before = renewals.groupby("acct")["won"].transform(
            lambda w: (~w).cumsum().shift(fill_value=0) > 0
        )
        renewals = renewals[~churned_before]
        tenure = np.clip(self.horizon - np.maximum(since.to_numpy(), 0), 0, None)
        n_exp = rng.poisson(0.5 * tenure / 365)
        eacct = np.repeat(since.index.to_numpy(), n_exp)
        ecreated = np.maximum(np.repeat(since.to_numpy(), n_exp), 0) + rng.random(
            len(eacct)
        ) * np.repeat(tenure, n_exp)
        expansions = pd.DataFrame(
            {
                "acct": eacct,
                "created": ecreated,
                "closed": ecreated + 15 + rng.gamma(2.0, 15.0, len(eacct)),
                "won": rng.random(len(eacct)) < 0.55,
                "type": "expansion",
                "episode": -1,
            }
        )
        opps = pd.concat([new_business, renewals, expansions], ignore_index=True)
        opps = opps[(opps["created"] >= 0) & (opps["created"] < self.horizon)]
        opps = opps.sort_values(["created", "acct"], kind="stable").reset_index(drop=True)
        is_open = opps["closed"] >= self.horizon
        status = np.where(is_open, "open", np.where(opps["won"], "won", "lost"))
        amount = np.round(
            np.exp(rng.normal(9.5, 0.6, len(opps)))
            * np.sqrt(self.employees[opps["acct"].to_numpy()] / 100),
            -2,
        )
        opp_id = _ids(f"O{self.index:04d}-", np.arange(len(opps)), 5).to_numpy(dtype=object)
        closed = self.stamp(opps["closed"].to_numpy())
        self.tables["opportunities"] = pd.DataFrame(
            {
                "opportunity_id": opp_id,
                "account_id": self.account_id[opps["acct"].to_numpy()],
                "created_at": self.stamp(opps["created"].to_numpy()),
                "closed_at": pd.Series(closed).where(~is_open.to_numpy()).to_numpy(),
                "status": status,
                "type": opps["type"].to_numpy(),
                "amount": amount,
            }
        )
        self._truth(opps.assign(opportunity_id=opp_id, won=(status == "won")))

    def _truth(self, opps: pd.DataFrame) -> None:
        ep = self.ep
        linked = opps[opps["episode"] >= 0].set_index("episode")
        quiet = opps[(opps["episode"] < 0) & (opps["type"] == "new_business")]
        episodes = pd.DataFrame(
            {
                "account_id": self.account_id[ep["acct"].to_numpy()],
                "kind": "episode",
                "start": self.stamp(ep["start"].to_numpy()),
                "opportunity_at": self.stamp(ep["created"].to_numpy()),
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
                "account_id": self.account_id[quiet["acct"].to_numpy()],
                "kind": "quiet",
                "start": self.stamp(quiet["created"].to_numpy()),
                "opportunity_at": self.stamp(quiet["created"].to_numpy()),
                "dark": True,
                "strength": 0.0,
                "engaged_people": 0,
                "role_coverage": 0.0,
                "has_intent": False,
                "opportunity_id": quiet["opportunity_id"].to_numpy(dtype=object),
                "won": quiet["won"].to_numpy(dtype=bool),
            }
        )
        self.tables["truth_episodes"] = pd.concat([episodes, quiet_rows], ignore_index=True)
        self.tables["truth_accounts"] = pd.DataFrame(
            {
                "account_id": self.account_id,
                "fit": self.fit,
                "customer_since": self.stamp(np.nan_to_num(self.customer_since, nan=0.0)),
                "is_tire_kicker": self.tire_kicker,
                "tire_kicker_person_id": self.tire_kicker_person,
            }
        )
        self.tables["truth_accounts"]["customer_since"] = self.tables["truth_accounts"][
            "customer_since"
        ].where(self.customer)

    def build(self) -> dict[str, pd.DataFrame]:
        self.accounts()
        self.people()
        self.episodes()
        self.events()
        self.intent()
        self.opportunities()
        return self.tables


# ------------------------------------------------------------------ dirt


def _inject_dirt(
    tables: dict[str, pd.DataFrame],
    rng: np.random.Generator,
    end: datetime,
    counts: dict[str, dict[str, int]],
) -> None:
    """Add realistic faults; count each class under the validator's reject reason."""

    def add(table: str, reason: str, n: int) -> None:
        counts.setdefault(table, {})
        counts[table][reason] = counts[table].get(reason, 0) + int(n)

    def split(n_rows: int, shares: list[float]) -> list[np.ndarray]:
        sizes = [round(n_rows * s) for s in shares]
        chosen = rng.permutation(n_rows)[: sum(sizes)]
        return np.split(chosen, np.cumsum(sizes)[:-1])

    ev = tables["events"].copy()
    ev["timestamp"] = pd.Series(ev["timestamp"]).dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    dup, unknown_acct, bad_time, late, unknown_person = split(
        len(ev), [0.004, 0.002, 0.002, 0.001, 0.001]
    )
    ev.loc[unknown_acct, "account_id"] = "X" + pd.Series(unknown_acct).astype("str").to_numpy()
    ev.loc[unknown_acct, "person_id"] = None
    garbage = np.array(
        ["31/02/2025 25:61", "not a date", "2025-13-45T99:00:00Z", "yesterday"], dtype=object
    )
    ev.loc[bad_time, "timestamp"] = garbage[rng.integers(0, len(garbage), len(bad_time))]
    late_days = rng.uniform(20, 300, len(late))
    late_stamp = pd.Timestamp(end) + pd.to_timedelta(late_days, unit="D")
    ev.loc[late, "timestamp"] = (
        pd.Series(late_stamp).dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").to_numpy()
    )
    ev.loc[unknown_person, "account_id"] = None
    ev.loc[unknown_person, "person_id"] = (
        "P-unknown-" + pd.Series(unknown_person).astype("str").to_numpy()
    )
    tables["events"] = pd.concat([ev, ev.iloc[dup]], ignore_index=True)
    for reason, rows in [
        ("duplicate_event_id", dup),
        ("unknown_account", unknown_acct),
        ("unparsable_timestamp", bad_time),
        ("timestamp_after_extract", late),
        ("unknown_person", unknown_person),
    ]:
        add("events", reason, len(rows))

    people = tables["people"]
    dup, stray = split(len(people), [0.005, 0.003])
    strays = people.iloc[stray].assign(
        person_id=lambda f: f["person_id"] + "-x", account_id="X-unknown"
    )
    tables["people"] = pd.concat([people, people.iloc[dup], strays], ignore_index=True)
    add("people", "duplicate_person_id", len(dup))
    add("people", "unknown_account", len(stray))

    accounts = tables["accounts"]
    (dup,) = split(len(accounts), [0.002])
    tables["accounts"] = pd.concat([accounts, accounts.iloc[dup]], ignore_index=True)
    add("accounts", "duplicate_account_id", len(dup))

    intent = tables["intent"].copy()
    dup, out_of_range = split(len(intent), [0.003, 0.005])
    intent.loc[out_of_range, "score"] = rng.choice([-5.0, 130.0, 999.0], len(out_of_range))
    tables["intent"] = pd.concat([intent, intent.iloc[dup]], ignore_index=True)
    add("intent", "duplicate_account_date_topic", len(dup))
    add("intent", "score_out_of_range", len(out_of_range))

    opps = tables["opportunities"].copy()
    (bad_status,) = split(len(opps), [0.02])
    opps.loc[bad_status, "status"] = "Closed???"
    tables["opportunities"] = opps
    add("opportunities", "invalid_status", len(bad_status))


# ------------------------------------------------------------------ writing


def _schema(table: str, dirty: bool) -> pa.Schema:
    schema = _SCHEMAS[table]
    for column in _DIRTY_TIMESTAMPS.get(table, []) if dirty else []:
        schema = schema.set(schema.get_field_index(column), pa.field(column, pa.string()))
    return schema


def generate_world(spec: WorldSpec, out: Path) -> WorldSummary:
    """Write the world's tables to ``out`` (Parquet), the truth to ``out/_truth``.

    Files are written to a temporary folder beside ``out`` and moved into place at the end,
    so an interrupted run never leaves a half-written table behind.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / TRUTH_DIR).mkdir(parents=True)
    paths = {
        t: tmp / (f"{TRUTH_DIR}/{t[6:]}.parquet" if t.startswith("truth_") else f"{t}.parquet")
        for t in _SCHEMAS
    }
    writers = {
        t: pq.ParquetWriter(paths[t], _schema(t, spec.dirty), compression="zstd") for t in _SCHEMAS
    }
    summary = WorldSummary()
    n_chunks = -(-spec.accounts // CHUNK_ACCOUNTS)
    try:
        for index in tqdm(range(n_chunks), desc="generate", unit="chunk", disable=None):
            first = index * CHUNK_ACCOUNTS
            chunk = _Chunk(spec, index, first, min(CHUNK_ACCOUNTS, spec.accounts - first))
            tables = chunk.build()
            if spec.dirty:
                _inject_dirt(tables, chunk.rng, spec.end, summary.dirt)
            for name, frame in tables.items():
                writers[name].write_table(
                    pa.Table.from_pandas(frame, schema=writers[name].schema, preserve_index=False)
                )
                summary.rows[name] = summary.rows.get(name, 0) + len(frame)
    finally:
        for writer in writers.values():
            writer.close()
    (tmp / EXTRACT_MANIFEST).write_text(
        json.dumps({"extracted_at": spec.end.isoformat()}) + "\n", encoding="utf-8"
    )
    world = {
        "accounts": spec.accounts,
        "seed": spec.seed,
        "start": spec.start.isoformat(),
        "days": spec.days,
        "dirty": spec.dirty,
        "in_market_quarterly": spec.in_market_quarterly,
        "rows": summary.rows,
    }
    (tmp / TRUTH_DIR / "world.json").write_text(
        json.dumps(world, indent=2) + "\n", encoding="utf-8"
    )
    (tmp / TRUTH_DIR / DIRT_FILE).write_text(
        json.dumps(summary.dirt, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    for path in sorted(tmp.rglob("*")):
        if path.is_file():
            target = out / path.relative_to(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
    shutil.rmtree(tmp, ignore_errors=True)
    return summary
