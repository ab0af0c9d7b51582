"""The validation report (``features.report``): what it says of the export time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from features.io import EXTRACT_MANIFEST
from features.report import CLOCK, GIVEN, ValidationReport


@pytest.mark.parametrize(
    ("source", "fix"),
    [
        (CLOCK, "pass --extracted-at with when the export was taken, or write _extract.json"),
        (GIVEN, "check --extracted-at, or whether the event feed stopped"),
        (EXTRACT_MANIFEST, "check extracted_at in _extract.json (or override it with"),
    ],
)
def test_a_stale_export_time_says_what_to_check_where_it_came_from(source: str, fix: str) -> None:
    # given events that end a year before the export time, taken from each source
    report = ValidationReport(
        {},
        datetime(2026, 7, 1, tzinfo=UTC),
        source,
        {"events": ["2024-07-01T00:00:00+00:00", "2025-06-28T00:00:00+00:00"]},
    )
    # when the export time is checked
    said = report.stale()
    # then the message names the events' end, the export time and its source, and the fix
    # for that source (a file already there is not asked for again)
    assert said is not None and said.startswith("events end 2025-06-28, 368 days before")
    assert f"taken from {source}" in said and fix in said
