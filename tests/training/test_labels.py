"""Labels: what counts as a later win, and what is left out rather than called negative."""

from __future__ import annotations

import pandas as pd
import pytest

from training.labels import DECIDED, label_snapshots, undated_outcomes

AS_OF = pd.Timestamp("2025-01-01", tz="UTC")
EXTRACT = pd.Timestamp("2025-12-31", tz="UTC")
HORIZON = 90  # the label window the dates below are laid out for


def _snaps(**overrides: list[object]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "account_id": ["A"],
            "as_of": [AS_OF],
            "in_pipeline": [0],
            "is_customer": [0],
            "events_90d": [3.0],
        }
    )
    for key, value in overrides.items():
        frame[key] = value
    return frame


def _opps(*rows: tuple[str, str, str]) -> pd.DataFrame:
    """rows: (created_at, status, type) for account A."""
    return pd.DataFrame(
        {
            "opportunity_id": [f"o{i}" for i in range(len(rows))],
            "account_id": ["A"] * len(rows),
            "created_at": pd.to_datetime([r[0] for r in rows], utc=True),
            "status": [r[1] for r in rows],
            "type": [r[2] for r in rows],
        }
    )


@pytest.mark.parametrize(
    ("opps", "label"),
    [
        ((("2025-02-01", "won", "new_business"),), 1),
        ((("2025-04-01", "won", "new_business"),), 1),  # exactly as_of + 90 days is inside
        ((("2025-04-02", "won", "new_business"),), 0),  # one day later is outside
        # created at as_of: the snapshot's features do not see it (they see created < as_of), so
        # it is the snapshot's future (a date-only export puts deals at midnight, as_of's time)
        ((("2025-01-01", "won", "new_business"),), 1),
        ((("2025-02-01", "lost", "new_business"),), 0),
        ((("2025-02-01", "won", "renewal"),), 0),
        ((("2025-02-01", "lost", "new_business"), ("2025-03-01", "won", "new_business")), 1),
        ((), 0),
    ],
    ids=[
        "won-inside",
        "won-on-the-last-day",
        "won-a-day-late",
        "created-at-as-of",
        "lost",
        "renewal",
        "lost-then-won",
        "no-opportunity",
    ],
)
def test_won_label(opps: tuple[tuple[str, str, str], ...], label: int) -> None:
    labelled, counts = label_snapshots(
        _snaps(), _opps(*opps), extracted_at=EXTRACT, horizon_days=HORIZON
    )
    assert labelled["label"].tolist() == [label]
    assert counts.positives == label


def test_only_open_opportunities_leave_the_snapshot_out() -> None:
    opps = _opps(("2025-02-01", "open", "new_business"))
    labelled, counts = label_snapshots(_snaps(), opps, extracted_at=EXTRACT, horizon_days=HORIZON)
    assert labelled.empty and counts.outcome_open == 1
    labelled, _ = label_snapshots(
        _snaps(), opps, extracted_at=EXTRACT, horizon_days=HORIZON, kind="opportunity"
    )
    assert labelled["label"].tolist() == [1]


@pytest.mark.parametrize(
    ("snaps", "extract", "counter"),
    [
        (_snaps(), pd.Timestamp("2025-03-01", tz="UTC"), "window_not_observed"),
        (_snaps(in_pipeline=[1]), EXTRACT, "in_pipeline"),
        (_snaps(is_customer=[1]), EXTRACT, "customers"),
    ],
    ids=["window-not-observed", "in-pipeline", "customer"],
)
def test_left_out_and_counted(snaps: pd.DataFrame, extract: pd.Timestamp, counter: str) -> None:
    labelled, counts = label_snapshots(snaps, _opps(), extracted_at=extract, horizon_days=HORIZON)
    assert labelled.empty
    assert getattr(counts, counter) == 1
    assert counts.labelled == 0


def test_customers_can_be_included() -> None:
    labelled, counts = label_snapshots(
        _snaps(is_customer=[1]),
        _opps(),
        extracted_at=EXTRACT,
        horizon_days=HORIZON,
        include_customers=True,
    )
    assert len(labelled) == 1 and counts.customers == 0


def _closed(*rows: tuple[str, str, str, str | None]) -> pd.DataFrame:
    """rows: (created_at, status, type, closed_at) for account A."""
    frame = _opps(*(r[:3] for r in rows))
    return frame.assign(closed_at=pd.to_datetime([r[3] for r in rows], utc=True))


@pytest.mark.parametrize(
    ("opps", "decided"),
    [
        # a win is known when it closes, even months after its window
        ((("2025-02-01", "won", "new_business", "2025-09-01"),), "2025-09-01"),
        # the first win decides it
        (
            (
                ("2025-02-01", "won", "new_business", "2025-08-01"),
                ("2025-03-01", "won", "new_business", "2025-05-01"),
            ),
            "2025-05-01",
        ),
        # a 0: when the window ends, or when its last lost deal closed if later
        ((), "2025-04-01"),
        ((("2025-02-01", "lost", "new_business", "2025-02-20"),), "2025-04-01"),
        ((("2025-02-01", "lost", "new_business", "2025-07-01"),), "2025-07-01"),
        # no close date: it closed before the export, maybe long after its window, so it
        # counts as closed at the export time (the features never see it closed either)
        ((("2025-02-01", "won", "new_business", None),), "2025-12-31"),
        ((("2025-02-01", "lost", "new_business", None),), "2025-12-31"),
        # a dated win decides it by then, whenever the undated one closed
        (
            (
                ("2025-02-01", "won", "new_business", None),
                ("2025-03-01", "won", "new_business", "2025-05-01"),
            ),
            "2025-05-01",
        ),
    ],
    ids=[
        "late-win",
        "first-win",
        "nothing",
        "lost-early",
        "lost-late",
        "won-no-close-date",
        "lost-no-close-date",
        "a-dated-win-beside-an-undated-one",
    ],
)
def test_each_label_knows_when_it_was_decided(
    opps: tuple[tuple[str, str, str, str | None], ...], decided: str
) -> None:
    frame = _closed(*opps) if opps else _closed(("2026-06-01", "lost", "renewal", None))
    labelled, _ = label_snapshots(_snaps(), frame, extracted_at=EXTRACT, horizon_days=HORIZON)
    assert labelled[DECIDED].iloc[0] == pd.Timestamp(decided, tz="UTC")


def test_a_training_label_decided_after_validation_begins_is_left_out() -> None:
    from training.split import time_split

    # given weekly snapshots of 40 accounts over two years, each winning a deal after its
    # snapshot of 2024-06-05 (training), decided by July; but account A0's deal closes only in
    # May 2025, after the validation window (from March 2025) begins
    as_of = pd.date_range("2024-01-03", "2025-12-31", freq="7D", tz="UTC")
    rows = pd.DataFrame(
        [(f"A{i}", t) for i in range(40) for t in as_of], columns=["account_id", "as_of"]
    )
    rows = rows.assign(label=(rows["as_of"] == pd.Timestamp("2024-06-05", tz="UTC")).astype(int))
    rows.loc[(rows["account_id"] == "A1") & (rows["as_of"] > "2025-10-01"), "label"] = 1  # test
    rows.loc[(rows["account_id"] == "A2") & (rows["as_of"] == "2025-04-02"), "label"] = 1  # valid
    decided = (rows["as_of"] + pd.Timedelta(days=90)).where(rows["label"] == 0)
    decided = decided.fillna(pd.Timestamp("2024-07-01", tz="UTC"))
    late = (rows["account_id"] == "A0") & (rows["label"] == 1)
    decided[late] = pd.Timestamp("2025-05-01", tz="UTC")
    # when the labelled rows are split in time knowing when each label was decided
    split = time_split(rows, test_days=120, validation_days=90, embargo_days=90, decided=decided)
    plain = time_split(rows, test_days=120, validation_days=90, embargo_days=90)
    # then A0's late-decided win is out of training and counted; nothing else moved
    assert split.decided_late >= 1 and plain.decided_late == 0
    assert not ((split.train["account_id"] == "A0") & (split.train["label"] == 1)).any()
    assert ((plain.train["account_id"] == "A0") & (plain.train["label"] == 1)).any()
    assert len(plain.train) - len(split.train) + len(plain.valid) - len(split.valid) == (
        split.decided_late
    )


def test_undated_outcomes_are_named_with_their_cost() -> None:
    # given new-business deals, two closed without a close date, an open one and a renewal
    # without one (renewals never make a label)
    t = pd.Timestamp("2025-03-01", tz="UTC")
    opportunities = pd.DataFrame(
        {
            "type": ["new_business"] * 4 + ["renewal"],
            "status": ["won", "lost", "won", "open", "won"],
            "closed_at": [pd.NaT, pd.NaT, t, pd.NaT, pd.NaT],
        }
    )
    # when they are checked, with the close dates and without the column
    said = undated_outcomes(opportunities)
    dated = undated_outcomes(opportunities.assign(closed_at=t).iloc[:3])
    no_column = undated_outcomes(opportunities.drop(columns="closed_at"))
    # then the two undated closed deals are counted among the three closed, with the fix
    assert said is not None and said.startswith("2 of 3 won or lost new-business deals")
    assert "export the close date" in said and dated is None
    assert no_column is not None and no_column.startswith("3 of 3")
