"""A wrong, broken or missing input ends ``inmarket`` with one line naming the problem and exit
code 2, never a traceback."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from inmarket.cli import cli
from tests.commands import run_cli, write_csvs
from tests.features.test_sources import lose_first_event
from tests.features.test_validation import _base
from tests.stores import copy_store
from training.job import TrainResult


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
    result = run_cli("validate", write_csvs(tmp_path / "data", tables))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert re.match(message, result.stderr), result.stderr


def _replace(name: str, content: bytes) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        (folder / f"{name.split('.')[0]}.csv").unlink(missing_ok=True)
        (folder / name).write_bytes(content)

    return write


def _truncated_parquet(name: str) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        frame = pd.read_csv(folder / f"{name}.csv", dtype=str)
        frame.to_parquet(folder / f"{name}.parquet")
        data = (folder / f"{name}.parquet").read_bytes()
        (folder / f"{name}.parquet").write_bytes(data[: len(data) // 2])
        (folder / f"{name}.csv").unlink()

    return write


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
        (
            "validate",
            _truncated_parquet("accounts"),
            r"error: .*accounts.parquet: cannot be read as Parquet",
        ),
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
    folder = write_csvs(tmp_path / "data", _base())
    breakage(folder)
    # when it is validated (or its features built)
    extra = ["--out", str(tmp_path / "f.parquet")] if command == "features" else []
    result = run_cli(command, folder, *extra)
    # then one line names the file and what to do, exit code 2, no traceback
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert re.match(message, result.stderr), result.stderr


@pytest.fixture(scope="module")
def session_store(
    trained: tuple[Path, TrainResult], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[str]]:
    """``train``'s and ``score``'s arguments: a copy of the session model's store (an existing
    store: no migrations to wait for) and, to score with, the session model."""
    store = str(copy_store(trained[0], tmp_path_factory.mktemp("store") / "mlruns"))
    return {
        "train": ["--store", store],
        "score": ["--store", store, "--model", trained[1].model_uri],
    }


@pytest.mark.parametrize(
    "breakage",
    [_truncated_parquet("events"), _replace("events.parquet", b"event_id,timestamp\nE1,x\n")],
    ids=["truncated", "not-parquet"],
)
@pytest.mark.parametrize("command", ["validate", "features", "train", "score"])
def test_a_broken_events_parquet_ends_every_command_in_one_line(
    tmp_path: Path, command: str, breakage: Callable[[Path], None], request: pytest.FixtureRequest
) -> None:
    """Issue 31: features, train and score ended in pyarrow's traceback (from counting the
    events' rows) where validate said it in one line."""
    # given a small export whose events.parquet is cut in half, or is CSV text
    folder = write_csvs(tmp_path / "data", _base())
    breakage(folder)
    # when each command reads it (score with a model, which it loads before the data)
    extra = {
        "features": ["--out", str(tmp_path / "f.parquet")],
        "score": ["--out", str(tmp_path / "r.parquet")],
    }
    stored = request.getfixturevalue("session_store") if command in ("train", "score") else {}
    result = run_cli(command, folder, *extra.get(command, []), *stored.get(command, []))
    # then one line names the file and says what to do, with exit code 2 and no traceback
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert re.match(
        r"error: .*events.parquet: cannot be read as Parquet \(.+\); export it again", errors[0]
    )


@pytest.mark.parametrize("command", ["train", "score"])
def test_a_row_lost_reading_refuses_train_and_score(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    session_store: dict[str, list[str]],
) -> None:
    """Issue 31: validate and features said NO; train and score went on with part of the data."""
    # given a small export whose events lose a row between reading and validation
    folder = write_csvs(tmp_path / "data", _base())
    lose_first_event(monkeypatch, "events.csv")
    # when a model is trained on it, or it is scored (in this process, which loses the row)
    extra = ["--out", str(tmp_path / "r.parquet")] if command == "score" else []
    result = CliRunner().invoke(
        cli,
        [command, str(folder), "--extracted-at", "2025-01-01", *extra, *session_store[command]],
        obj={},
    )
    # then the command ends with exit code 2 naming the table, and nothing is written
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1].startswith(
        "error: row totals do not reconcile (events: 4 rows in the source, 3 used + 0 rejected)"
    ), result.stderr
    assert not (tmp_path / "r.parquet").exists()


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
    result = run_cli(*arguments(tmp_path))
    assert result.returncode == 2
    for message in messages:
        assert message in result.stderr, result.stderr
