"""The benchmark suite's growth table: a step is called worse than linear only when it is."""

from __future__ import annotations

from bench.__main__ import growth


def _suite(accounts: int, events: int, seconds: dict[str, float]) -> dict[str, object]:
    return {
        "accounts": accounts,
        "events": events,
        "steps": {
            name: {"seconds": s, "peak_rss_gb": 1.0, "peak_pss_gb": 1.0, "note": ""}
            for name, s in seconds.items()
        },
    }


def test_growth_names_the_steps_that_grow_faster_than_the_world() -> None:
    small = _suite(10_000, 1_000_000, {"features": 3.0, "train": 10.0, "sort": 1.0})
    large = _suite(100_000, 10_000_000, {"features": 24.0, "train": 60.0, "sort": 25.0})
    lines = {line.split(" | ")[0].lstrip("| "): line for line in growth(small, large).splitlines()}
    assert "10x the accounts" in growth(small, large)
    assert lines["features"].endswith("linear or better |")
    assert lines["train"].endswith("linear or better |")
    assert "25.0x" in lines["sort"] and lines["sort"].endswith("worse than linear |")
