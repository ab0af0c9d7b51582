"""``inmarket export`` refusing what it cannot export, in one line (inmarket/cli_export.py); the
files it writes are tested end to end in tests/test_changes_between_runs.py."""

from __future__ import annotations

from pathlib import Path

from tests.commands import run_cli


def test_nothing_published_is_one_line_naming_the_file_and_what_to_do(tmp_path: Path) -> None:
    ranked = tmp_path / "ranked.parquet"
    done = run_cli("export", "--format", "hubspot", "--ranked", ranked)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == (
        f"error: no scoring published at {ranked}: run `inmarket score DATA --out {ranked}` first"
    )


def test_a_stage_that_is_none_is_named_with_the_stages_there_are(tmp_path: Path) -> None:
    ranked = tmp_path / "ranked.parquet"
    done = run_cli("export", "--format", "salesforce", "--stage", "hot", "--ranked", ranked)
    assert done.returncode == 2
    assert done.stderr.startswith("error: --stage: 'hot' is not a stage; use any of ready, ")
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_format_that_is_none_is_refused_with_the_choices() -> None:
    done = run_cli("export", "--format", "pipedrive")
    assert done.returncode == 2 and "'pipedrive' is not one of 'salesforce', 'hubspot'" in (
        done.stderr
    )
