"""The ``inmarket`` command as a user runs it: real processes, exit codes, messages."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from tests.features.test_tables import _base


def _cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inmarket.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def _write_csvs(folder: Path, tables: dict[str, pd.DataFrame]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


def test_generate_then_validate(tmp_path: Path) -> None:
    out = tmp_path / "w"
    gen = _cli("generate", "--accounts", "40", "--seed", "5", "--out", out)
    assert gen.returncode == 0, gen.stderr
    assert "40 accounts" in gen.stdout
    val = _cli("validate", out, "--json", "--rejects-out", tmp_path / "rejects.parquet")
    assert val.returncode == 0, val.stderr
    report = json.loads(val.stdout)
    assert report["reconciles"] is True
    assert report["tables"]["accounts"]["rows_used"] == 40
    assert len(pd.read_parquet(tmp_path / "rejects.parquet")) == 0


def test_dirty_world_report_lists_faults(tmp_path: Path) -> None:
    out = tmp_path / "d"
    assert _cli("generate", "--accounts", "300", "--dirty", "--out", out).returncode == 0
    val = _cli("validate", out, "--rejects-out", tmp_path / "rejects.parquet")
    assert val.returncode == 0, val.stderr
    assert "rejected events: duplicate_event_id" in val.stdout
    assert "NO" not in val.stdout.split("\n", 2)[2].split("rejected", 1)[0]
    rejects = pd.read_parquet(tmp_path / "rejects.parquet")
    expected = json.loads((out / "_truth" / "dirt.json").read_text())
    assert len(rejects) == sum(sum(r.values()) for r in expected.values())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda t: t.__setitem__("events", t["events"].drop(columns=["event_type"])),
            r"error: events \(events.csv\): missing required column\(s\) event_type; found \[",
        ),
        (
            lambda t: t["accounts"].__setitem__("employee_count", ["lots", "some"]),
            r"error: accounts.employee_count: 2 of 2 values could not be read as numbers",
        ),
        (
            lambda t: t["opportunities"].__setitem__("created_at", ["1.6.2024", "1.3.2024"]),
            r"error: opportunities.created_at: 2 of 2 values could not be read as timestamps",
        ),
        (lambda t: t.pop("people"), r"error: table 'people' is missing: expected people.parquet"),
    ],
    ids=["missing-column", "wrong-type", "unparsable-dates", "missing-table"],
)
def test_a_wrong_file_gives_one_clear_error(
    tmp_path: Path, mutate: Callable[[dict[str, pd.DataFrame]], object], message: str
) -> None:
    tables = _base()
    mutate(tables)
    result = _cli("validate", _write_csvs(tmp_path / "data", tables))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert re.match(message, result.stderr), result.stderr


def _replace(name: str, content: bytes) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        (folder / f"{name.split('.')[0]}.csv").unlink(missing_ok=True)
        (folder / name).write_bytes(content)

    return write


def _truncated_parquet(folder: Path) -> None:
    frame = pd.read_csv(folder / "accounts.csv", dtype=str)
    frame.to_parquet(folder / "accounts.parquet")
    data = (folder / "accounts.parquet").read_bytes()
    (folder / "accounts.parquet").write_bytes(data[: len(data) // 2])
    (folder / "accounts.csv").unlink()


def _duplicate_parquet_columns(folder: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = pd.read_csv(folder / "accounts.csv", dtype=str)
    table = pa.table(
        [frame["account_id"], frame["name"], frame["name"]], names=["account_id", "name", "name"]
    )
    pq.write_table(table, folder / "accounts.parquet")
    (folder / "accounts.csv").unlink()


def _parquet_beside_csv(folder: Path) -> None:
    pd.read_csv(folder / "accounts.csv", dtype=str).to_parquet(folder / "accounts.parquet")


def _header_only(name: str) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        header = (folder / f"{name}.csv").read_text().splitlines()[0]
        (folder / f"{name}.csv").write_text(header + "\n")

    return write


@pytest.mark.parametrize(
    ("command", "breakage", "message"),
    [
        ("validate", _truncated_parquet, r"error: .*accounts.parquet: cannot be read as Parquet"),
        (
            "validate",
            _replace("accounts.parquet", b"account_id,name\nA1,x\n"),
            r"error: .*accounts.parquet: cannot be read as Parquet",
        ),
        (
            "validate",
            _replace("accounts.csv", "account_id,name\nA1,Café\n".encode("latin-1")),
            r"error: .*accounts.csv: not UTF-8 text",
        ),
        (
            "validate",
            _replace("people.csv", b"person_id,account_id\nP1,A1\nP2,A1,extra,fields\n"),
            r"error: .*people.csv: cannot be read as CSV",
        ),
        ("validate", _replace("events.csv", b""), r"error: .*events.csv: the file is empty"),
        (
            "validate",
            _duplicate_parquet_columns,
            r"error: .*accounts.parquet: column\(s\) \['name'\] appear more than once",
        ),
        (
            "validate",
            _replace("accounts.csv", b"account_id,name,name\nA1,x,y\nA2,z,w\n"),
            r"error: .*accounts.csv: column\(s\) \['name'\] appear more than once",
        ),
        (
            "validate",
            _replace("_extract.json", b"{not json"),
            r"error: .*_extract.json: cannot read the export time",
        ),
        (
            "validate",
            _header_only("accounts"),
            r"error: accounts \(accounts.csv\): no rows; nothing can be scored",
        ),
        ("features", _header_only("events"), r"error: events \(events.csv\): no rows"),
        (
            "validate",
            _parquet_beside_csv,
            r"error: .*data: 2 files hold table 'accounts' \(accounts.parquet, accounts.csv\); "
            "keep one",
        ),
    ],
    ids=[
        "truncated-parquet",
        "csv-named-parquet",
        "latin-1-csv",
        "ragged-csv",
        "zero-byte-csv",
        "duplicate-parquet-columns",
        "duplicate-csv-columns",
        "malformed-extract-json",
        "empty-accounts",
        "events-header-only",
        "two-files-for-one-table",
    ],
)
def test_a_broken_file_gives_one_line_and_exit_2(
    tmp_path: Path, command: str, breakage: Callable[[Path], None], message: str
) -> None:
    # given a small export with one file broken the way real exports break
    folder = _write_csvs(tmp_path / "data", _base())
    breakage(folder)
    # when it is validated (or its features built)
    extra = ["--out", str(tmp_path / "f.parquet")] if command == "features" else []
    result = _cli(command, folder, *extra)
    # then one line names the file and what to do, exit code 2, no traceback
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert re.match(message, result.stderr), result.stderr


def test_validate_warns_when_no_event_can_be_used(tmp_path: Path) -> None:
    # given an export whose every event names an account not in it
    tables = _base()
    tables["events"]["account_id"] = "A404"
    # when it is validated
    result = _cli("validate", _write_csvs(tmp_path / "data", tables))
    # then the rows are counted as ever, and one warning says no model can be trained on them
    assert result.returncode == 0, result.stderr
    assert "rejected events: unknown_account = 4" in result.stdout
    warning = "warning: events: none of its 4 rows can be used (rejected: unknown_account 4)"
    assert result.stderr.startswith(warning), result.stderr


def _file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("arguments", "messages"),
    [
        (lambda tmp: ["validate", tmp / "nowhere"], ["data folder not found"]),
        (
            lambda tmp: [
                "--config",
                _file(tmp / "bad.toml", "[generate]\naccounts = 'many'\n"),
                "generate",
                "--out",
                tmp / "x",
            ],
            ["generate.accounts", "bad.toml"],
        ),
        (lambda tmp: ["features"], ["give the DATA folder"]),
    ],
    ids=["missing-folder", "invalid-config", "features-without-data"],
)
def test_a_usage_error_exits_2_naming_the_problem(
    tmp_path: Path, arguments: Callable[[Path], list[str | Path]], messages: list[str]
) -> None:
    result = _cli(*arguments(tmp_path))
    assert result.returncode == 2
    for message in messages:
        assert message in result.stderr, result.stderr


def test_config_file_then_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "inmarket.toml"
    cfg.write_text("[generate]\naccounts = 12\nseed = 3\ndays = 200\n")
    assert _cli("--config", cfg, "generate", "--out", tmp_path / "a").returncode == 0
    assert len(pd.read_parquet(tmp_path / "a" / "accounts.parquet")) == 12
    assert (
        _cli("--config", cfg, "generate", "--accounts", "5", "--out", tmp_path / "b").returncode
        == 0
    )
    assert len(pd.read_parquet(tmp_path / "b" / "accounts.parquet")) == 5


def test_validate_help_lists_every_vocabulary_and_what_becomes_of_other_values() -> None:
    from features.vocabularies import VOCABULARIES

    result = _cli("validate", "--help")
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
    result = _cli(
        "validate", _write_csvs(tmp_path / "data", tables), "--extracted-at", "2025-01-01"
    )
    # then the report names the value, its rows, an example row and the allowed values
    assert result.returncode == 0, result.stderr
    assert (
        "unknown opportunities.status (invalid_status): 'Qualified To Buy' 1 "
        "(opportunities.csv row 2)"
    ) in result.stdout
    assert "allowed: open, won, lost" in result.stdout


def test_features_list_prints_the_catalogue() -> None:
    from features.catalogue import catalogue

    result = _cli("features", "--list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == [f.name for f in catalogue()]


def test_features_command_writes_table_report_and_rejects(tmp_path: Path) -> None:
    world = tmp_path / "w"
    assert _cli("generate", "--accounts", "150", "--dirty", "--out", world).returncode == 0
    out = tmp_path / "f.parquet"
    result = _cli("features", world, "--out", out, "--snapshots", "3", "--every-days", "7")
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(out)
    assert table["as_of"].nunique() == 3
    assert (table["as_of"].diff().dropna().abs() <= pd.Timedelta(days=7)).any()
    report = json.loads((tmp_path / "f.report.json").read_text())
    assert report["reconciles"] and report["tables"]["events"]["rows_rejected"] > 0
    assert len(pd.read_parquet(tmp_path / "f.rejects.parquet")) == sum(
        t["rows_rejected"] for t in report["tables"].values()
    )


def test_an_export_time_taken_from_the_clock_far_after_the_data_is_named(tmp_path: Path) -> None:
    """Issue 14: without _extract.json the clock is the export time; when the data ended long
    before, training used to fail blaming train.test_days (or train on empty months)."""
    # given a world that ended in 2024, without its _extract.json
    world = tmp_path / "w"
    made = _cli(
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
    checked = _cli("validate", world)
    trained = _cli("train", world, "--store", tmp_path / "mlruns")
    given = _cli("validate", world, "--extracted-at", "2024-02-05")
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
