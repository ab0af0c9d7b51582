"""What ``inmarket validate`` reports: every injected fault, unknown values with an example row,
the vocabularies, tables that cannot be used, and where the export time came from."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from inmarket.cli import cli
from tests.commands import run_cli, write_csvs
from tests.features.test_sources import lose_first_event
from tests.features.test_validation import _base


def test_dirty_world_report_lists_faults(tmp_path: Path) -> None:
    out = tmp_path / "d"
    assert run_cli("generate", "--accounts", "300", "--dirty", "--out", out).returncode == 0
    val = run_cli("validate", out, "--rejects-out", tmp_path / "rejects.parquet")
    assert val.returncode == 0, val.stderr
    assert "rejected events: duplicate_event_id" in val.stdout
    assert "NO" not in val.stdout.split("\n", 2)[2].split("rejected", 1)[0]
    rejects = pd.read_parquet(tmp_path / "rejects.parquet")
    expected = json.loads((out / "_truth" / "dirt.json").read_text())
    assert len(rejects) == sum(sum(r.values()) for r in expected.values())


def test_validate_warns_when_no_event_can_be_used(tmp_path: Path) -> None:
    # given an export whose every event names an account not in it
    tables = _base()
    tables["events"]["account_id"] = "A404"
    # when it is validated
    result = run_cli("validate", write_csvs(tmp_path / "data", tables))
    # then the rows are counted as ever, and one warning says no model can be trained on them
    assert result.returncode == 0, result.stderr
    assert "rejected events: unknown_account = 4" in result.stdout
    warning = "warning: events: none of its 4 rows can be used (rejected: unknown_account 4)"
    assert result.stderr.startswith(warning), result.stderr


def test_validate_help_lists_every_vocabulary_and_what_becomes_of_other_values() -> None:
    from features.vocabularies import VOCABULARIES

    result = run_cli("validate", "--help")
    assert result.returncode == 0, result.stderr
    for v in VOCABULARIES:
        assert f"{v.name}: {', '.join(v.values)}" in result.stdout
        assert f"other values: {v.effect}" in result.stdout


def test_validate_names_unknown_values_with_rows_example_and_allowed_list(
    tmp_path: Path,
) -> None:
    # given an export whose deals have a stage the contract does not know
    tables = _base()
    tables["opportunities"].loc[1, "status"] = "Qualified To Buy"
    # when it is validated
    result = run_cli(
        "validate", write_csvs(tmp_path / "data", tables), "--extracted-at", "2025-01-01"
    )
    # then the report names the value, its rows, an example row and the allowed values
    assert result.returncode == 0, result.stderr
    assert (
        "unknown opportunities.status (invalid_status): 'Qualified To Buy' 1 "
        "(opportunities.csv row 2)"
    ) in result.stdout
    assert "allowed: open, won, lost" in result.stdout


def test_an_export_time_taken_from_the_clock_far_after_the_data_is_named(
    new_store: Path, tmp_path: Path
) -> None:
    """Issue 14: without _extract.json the clock is the export time; when the data ended long
    before, training used to fail blaming train.test_days (or train on empty months)."""
    # given a world that ended in 2024, without its _extract.json
    world = tmp_path / "w"
    made = run_cli(
        "generate",
        "--accounts",
        "150",
        "--seed",
        "5",
        "--start",
        "2023-01-01",
        "--days",
        "400",
        "--out",
        world,
    )
    assert made.returncode == 0, made.stderr
    (world / "_extract.json").unlink()
    # when it is validated and trained as is, and validated with the export time given
    checked = run_cli("validate", world)
    trained = run_cli("train", world, "--store", new_store)
    given = run_cli("validate", world, "--extracted-at", "2024-02-05")
    # then validate says where the export time came from, the span of the events and what to
    # do; train refuses in one line saying the same; given the time, no warning
    assert "export time taken from the clock" in checked.stdout
    assert "events from 2023-01-01 to 2024-02-04" in checked.stdout
    assert re.search(
        r"warning: events end 2024-02-04, \d+ days before the export time", checked.stderr
    )
    assert trained.returncode == 2
    error = [line for line in trained.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "taken from the clock" in error[0]
    assert "--extracted-at" in error[0] and "_extract.json" in error[0]
    assert "export time taken from --extracted-at" in given.stdout
    assert "warning: events end" not in given.stderr
    # and validate forecasts the training: impossible from the clock; from the export time
    # given, the history itself decides (150 accounts hold too few later wins), in days and wins
    assert "training is not possible: events end 2024-02-04" in checked.stdout
    assert (
        "what `inmarket train` would get (label: a new-business deal created within 90 days, won"
        in given.stdout
    )
    assert "training is not possible: the labelled snapshots span" in given.stdout
    assert "accounts with a positive labelled snapshot" in given.stdout


@pytest.mark.parametrize("command", ["validate", "features"])
def test_a_row_lost_reading_ends_the_command_naming_the_table(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a small export whose events lose a row between reading and validation
    folder = write_csvs(tmp_path / "data", _base())
    lose_first_event(monkeypatch, "events.csv")
    # when it is validated, or its features built (in this process, which loses the row)
    extra = (
        ["--out", str(tmp_path / "f.parquet"), "--snapshots", "1"] if command == "features" else []
    )
    result = CliRunner().invoke(
        cli, [command, str(folder), "--extracted-at", "2025-01-01", *extra], obj={}
    )
    # then the report says NO for the events, and the command ends with exit code 2 naming them
    assert re.search(r"^events\s+4\s+3\s+0\s+NO$", result.stdout, re.MULTILINE), result.stdout
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1].startswith(
        "error: row totals do not reconcile (events: 4 rows in the source, 3 used + 0 rejected)"
    )
