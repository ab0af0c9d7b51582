"""The synthetic world is a believable B2B market, deterministic by seed, and does not cheat."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.settings import DataSettings
from features.validation import load_dataset
from inmarket.synthetic import SENIORITIES, TRUTH_DIR, WorldSpec, generate_world
from inmarket.synthetic.ceiling import researching
from tests.worlds import WORLD_ACCOUNTS, WORLD_SEED

TABLES = ("accounts", "people", "events", "intent", "opportunities")


def _read(world: Path, table: str) -> pd.DataFrame:
    return pd.read_parquet(world / f"{table}.parquet")


def _truth(world: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(world / TRUTH_DIR / f"{name}.parquet")


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_other_world(tmp_path: Path, world_dir: Path) -> None:
    generate_world(WorldSpec(accounts=WORLD_ACCOUNTS, seed=WORLD_SEED), tmp_path / "again")
    generate_world(WorldSpec(accounts=WORLD_ACCOUNTS, seed=WORLD_SEED + 1), tmp_path / "other")
    assert _digest(tmp_path / "again") == _digest(world_dir)
    other = _digest(tmp_path / "other")
    assert all(other[f"{t}.parquet"] != _digest(world_dir)[f"{t}.parquet"] for t in TABLES)


def test_no_partial_files_are_left_behind(world_dir: Path) -> None:
    assert not [p for p in world_dir.iterdir() if p.name.startswith(".partial")]


def test_buying_groups_have_4_to_15_people_and_key_roles(world_dir: Path) -> None:
    people = _read(world_dir, "people")
    kickers = _truth(world_dir, "accounts")["tire_kicker_person_id"].dropna()
    group = people[~people["person_id"].isin(kickers)]
    sizes = group.groupby("account_id").size()
    assert len(sizes) == WORLD_ACCOUNTS
    assert sizes.between(4, 15).all()
    assert sizes.nunique() >= 6  # groups vary with company size
    roles = group.groupby("account_id")["buying_role"].agg(set)
    assert roles.map(lambda r: {"decision_maker", "champion", "technical_evaluator"} <= r).all()
    assert group["department"].nunique() >= 6
    senior = group.query("buying_role == 'decision_maker'")["seniority"]
    assert senior.isin(["director", "vp", "c_level"]).all()


def test_a_share_of_research_is_anonymous_and_dark_cycles_more_so(world_dir: Path) -> None:
    events = _read(world_dir, "events")
    web = events[events["channel"] == "web"]
    share = web["person_id"].isna().mean()
    assert 0.2 < share < 0.6
    assert events.loc[events["channel"] == "email", "person_id"].notna().all()
    episodes = _truth(world_dir, "episodes").query("kind == 'episode'")
    joined = events.merge(
        episodes[["account_id", "start", "opportunity_at", "dark"]], on="account_id"
    )
    inside = joined[
        (joined["timestamp"] >= joined["start"])
        & (joined["timestamp"] < joined["opportunity_at"])
        & (joined["channel"] == "web")
    ]
    by_dark = inside.groupby("dark")["person_id"].apply(lambda s: s.isna().mean())
    assert by_dark[True] > by_dark[False] + 0.2


def test_tire_kickers_are_busy_and_never_win(world_dir: Path) -> None:
    truth = _truth(world_dir, "accounts")
    kickers = truth[truth["is_tire_kicker"]]
    assert 0.02 < len(kickers) / len(truth) < 0.08
    events = _read(world_dir, "events")
    per_kicker = events[events["person_id"].isin(kickers["tire_kicker_person_id"])].groupby(
        "person_id"
    )["event_type"]
    assert per_kicker.size().median() >= 25
    forms = per_kicker.apply(
        lambda s: s.isin(["content_download", "form_fill", "webinar_attended"]).mean()
    )
    assert forms.median() > 0.5
    opps = _read(world_dir, "opportunities")
    kicker_wins = opps[
        opps["account_id"].isin(kickers["account_id"])
        & (opps["type"] == "new_business")
        & (opps["status"] == "won")
    ]
    assert kicker_wins.empty


def test_about_five_percent_of_non_customers_are_in_market_each_quarter(world_dir: Path) -> None:
    truth = _truth(world_dir, "accounts")
    episodes = _truth(world_dir, "episodes").query("kind == 'episode'")
    prospects = truth[truth["customer_since"].isna()]
    shares = []
    for q_start in pd.date_range("2025-01-01", "2026-01-01", freq="QS", tz="UTC"):
        q_end = q_start + pd.DateOffset(months=3)
        live = episodes[(episodes["start"] < q_end) & (episodes["opportunity_at"] >= q_start)]
        shares.append(live["account_id"].nunique() / len(prospects))
    assert 0.03 < float(np.mean(shares)) < 0.08


def test_intent_surges_before_site_visits(world_dir: Path) -> None:
    """In the six weeks before a cycle's first-party start, intent is already surging while
    site visits are still at their background rate."""
    episodes = _truth(world_dir, "episodes").query("kind == 'episode' and has_intent")
    episodes = episodes[episodes["start"] > pd.Timestamp("2024-09-01", tz="UTC")]
    intent = _read(world_dir, "intent").query("score >= 60")
    intent["date"] = pd.to_datetime(intent["date"]).dt.tz_localize("UTC")
    visits = _read(world_dir, "events").query("channel == 'web'")
    before_days = 42.0
    after_days = ((episodes["opportunity_at"] - episodes["start"]).dt.days).sum()
    rates = {}
    for name, frame, column in (("intent", intent, "date"), ("visits", visits, "timestamp")):
        joined = frame.merge(episodes[["account_id", "start", "opportunity_at"]], on="account_id")
        before = joined[
            (joined[column] >= joined["start"] - pd.Timedelta(days=before_days))
            & (joined[column] < joined["start"])
        ]
        after = joined[
            (joined[column] >= joined["start"]) & (joined[column] < joined["opportunity_at"])
        ]
        rates[name] = (len(before) / (before_days * len(episodes)), len(after) / after_days)
    intent_lead, visit_lead = (rates[n][0] / rates[n][1] for n in ("intent", "visits"))
    assert intent_lead > 0.4
    assert intent_lead > 2 * visit_lead


def test_intent_is_as_noisy_as_real_intent(world_dir: Path) -> None:
    """Spurious surges score like genuine ones, most surges are spurious, and some in-market
    accounts are never covered by the provider (docs/world.md)."""
    accounts = _truth(world_dir, "accounts")
    episodes = _truth(world_dir, "episodes").query("kind == 'episode'")
    intent = _read(world_dir, "intent").reset_index(names="row")
    intent["date"] = pd.to_datetime(intent["date"]).dt.tz_localize("UTC")
    surging = episodes[episodes["has_intent"]][["account_id", "start", "opportunity_at"]]
    joined = intent.merge(surging, on="account_id")
    during = (joined["date"] >= joined["start"] - pd.Timedelta(days=63)) & (
        joined["date"] <= joined["opportunity_at"]
    )
    intent["genuine"] = intent["row"].isin(joined.loc[during, "row"])
    means = intent.groupby("genuine")["score"].mean()
    assert abs(means[True] - means[False]) < 3  # a score alone does not say which
    assert 0.2 < intent.loc[intent["score"] >= 75, "genuine"].mean() < 0.5
    uncovered = accounts.loc[~accounts["intent_covered"], "account_id"]
    assert not intent["account_id"].isin(uncovered).any()
    in_market = accounts[accounts["account_id"].isin(episodes["account_id"])]
    assert 0.2 < (~in_market["intent_covered"]).mean() < 0.5


def test_more_and_more_senior_people_engage_as_a_cycle_matures(world_dir: Path) -> None:
    episodes = _truth(world_dir, "episodes").query("kind == 'episode' and not dark")
    events = _read(world_dir, "events").dropna(subset=["person_id"])
    people = _read(world_dir, "people")[["person_id", "seniority"]]
    joined = events.merge(episodes[["account_id", "start", "opportunity_at"]], on="account_id")
    joined = joined[
        (joined["timestamp"] >= joined["start"]) & (joined["timestamp"] < joined["opportunity_at"])
    ]
    progress = (joined["timestamp"] - joined["start"]) / (
        joined["opportunity_at"] - joined["start"]
    )
    joined = joined.assign(late=progress > 0.5).merge(people, on="person_id")
    joined["rank"] = joined["seniority"].map({s: i for i, s in enumerate(SENIORITIES)})
    halves = joined.groupby("late").agg(events=("rank", "size"), rank=("rank", "mean"))
    people_per_half = joined.groupby(["account_id", "start", "late"])["person_id"].nunique()
    assert halves.loc[True, "events"] > 1.5 * halves.loc[False, "events"]  # momentum
    assert halves.loc[True, "rank"] > halves.loc[False, "rank"]  # more senior
    assert (
        people_per_half.groupby("late").mean()[True] > people_per_half.groupby("late").mean()[False]
    )


def test_wins_depend_on_fit_and_buying_group_coverage(world_dir: Path) -> None:
    episodes = _truth(world_dir, "episodes").query("kind == 'episode' and opportunity_id.notna()")
    fit = _truth(world_dir, "accounts").set_index("account_id")["fit"]
    episodes = episodes.assign(fit=episodes["account_id"].map(fit))
    by_won = episodes.groupby("won")[["role_coverage", "fit"]].mean()
    assert by_won.loc[True, "role_coverage"] > by_won.loc[False, "role_coverage"]
    assert by_won.loc[True, "fit"] > by_won.loc[False, "fit"]


def test_the_world_is_not_rigged(world_dir: Path) -> None:
    """Some in-market accounts stay dark, some wins come from quiet accounts, and some
    busy accounts never buy new business."""
    episodes = _truth(world_dir, "episodes")
    opps = _read(world_dir, "opportunities")
    wins = opps.query("type == 'new_business' and status == 'won'")
    won_truth = episodes[episodes["opportunity_id"].isin(wins["opportunity_id"])]
    assert 0.05 < (won_truth["kind"] == "quiet").mean() < 0.3
    assert won_truth.query("kind == 'episode'")["dark"].any()
    assert 0.15 < episodes.query("kind == 'episode'")["dark"].mean() < 0.35
    assert episodes.query("kind == 'episode'")["opportunity_id"].isna().any()
    truth = _truth(world_dir, "accounts")
    customers = truth[truth["customer_since"].notna()]["account_id"]
    assert not opps[
        opps["account_id"].isin(customers)
        & (opps["type"] == "new_business")
        & (opps["created_at"] < pd.Timestamp("2024-07-02", tz="UTC"))
    ].shape[0]
    renewals = opps.query("type == 'renewal'")
    assert renewals["account_id"].isin(customers).mean() > 0.6
    statuses = set(opps["status"])
    assert statuses == {"open", "won", "lost"}
    assert set(opps["type"]) == {"new_business", "renewal", "expansion"}


def test_seasonality_is_visible(world_dir: Path) -> None:
    events = _read(world_dir, "events")
    weekday = events["timestamp"].dt.day_of_week
    assert (weekday >= 5).mean() < 0.12
    monthly = events.groupby(events["timestamp"].dt.month).size()
    assert monthly[12] < monthly[10]


def test_clean_world_validates_with_zero_rejects(world_dir: Path) -> None:
    ds = load_dataset(world_dir, DataSettings())
    assert ds.report.total_rejected == 0
    assert ds.report.reconciles
    assert ds.report.extracted_at == pd.Timestamp("2026-07-01", tz="UTC")


def test_dirty_world_reports_each_injected_fault_with_exact_counts(dirty_world_dir: Path) -> None:
    expected = json.loads((dirty_world_dir / TRUTH_DIR / "dirt.json").read_text())
    ds = load_dataset(dirty_world_dir, DataSettings())
    assert ds.report.reconciles
    assert {t: r.rejects for t, r in ds.report.tables.items() if r.rejects} == expected
    assert {r for reasons in expected.values() for r in reasons} >= {
        "duplicate_event_id",
        "unknown_account",
        "unparsable_timestamp",
        "timestamp_after_extract",
    }


@pytest.mark.parametrize("accounts", [1, 7])
def test_tiny_worlds_generate(tmp_path: Path, accounts: int) -> None:
    summary = generate_world(WorldSpec(accounts=accounts, seed=3, days=200), tmp_path)
    assert summary.rows["accounts"] == accounts
    assert load_dataset(tmp_path, DataSettings()).report.total_rejected == 0


def test_the_ceiling_oracle_flags_only_accounts_researching_at_the_snapshot() -> None:
    # given two cycles (one dark) and a quiet win, and snapshots before, during and after them
    t = pd.Timestamp("2025-03-01", tz="UTC")
    day = pd.Timedelta(days=1)
    episodes = pd.DataFrame(
        {
            "account_id": ["A", "B", "C"],
            "kind": ["episode", "episode", "quiet"],
            "start": [t, t, t],
            "opportunity_at": [t + 60 * day, t + 60 * day, t + 60 * day],
            "dark": [False, True, False],
        }
    )
    rows = pd.DataFrame(
        {
            "account_id": ["A", "A", "A", "A", "B", "C", "D"],
            "as_of": [t, t + day, t + 60 * day, t + 61 * day, t + day, t + day, t + day],
        }
    )
    # when the oracle reads them
    visible = researching(rows, episodes, dark=False)
    every = researching(rows, episodes, dark=True)
    # then only snapshots after a cycle's start, up to its opportunity, are flagged; a dark
    # cycle only when asked, a quiet win never
    assert visible.tolist() == [False, True, True, False, False, False, False]
    assert every.tolist() == [False, True, True, False, True, False, False]
