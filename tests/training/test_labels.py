"""Labels: what counts as a later win, and what is left out rather than called negative."""

from __future__ import annotations

import pandas as pd
import pytest

from training.labels import label_snapshots

AS_OF = pd.Timestamp("2025-01-01", tz="UTC")
EXTRACT = pd.Timestamp("2025-12-31", tz="UTC")


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
    labelled, counts = label_snapshots(_snaps(), _opps(*opps), extracted_at=EXTRACT)
    assert labelled["label"].tolist() == [label]
    assert counts.positives == label


def test_only_open_opportunities_leave_the_snapshot_out() -> None:
    opps = _opps(("2025-02-01", "open", "new_business"))
    labelled, counts = label_snapshots(_snaps(), opps, extracted_at=EXTRACT)
    assert labelled.empty and counts.outcome_open == 1
    labelled, _ = label_snapshots(_snaps(), opps, extracted_at=EXTRACT, kind="opportunity")
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
    labelled, counts = label_snapshots(snaps, _opps(), extracted_at=extract)
    assert labelled.empty
    assert getattr(counts, counter) == 1
    assert counts.labelled == 0


def test_customers_can_be_included() -> None:
    labelled, counts = label_snapshots(
        _snaps(is_customer=[1]), _opps(), extracted_at=EXTRACT, include_customers=True
    )
    assert len(labelled) == 1 and counts.customers == 0
