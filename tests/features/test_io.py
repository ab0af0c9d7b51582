"""Finding, counting and reading table files (``features.io``)."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import pandas as pd
import pytest

from features.errors import ContractError
from features.io import (
    count_rows,
    csv_text,
    inert_cells,
    locate_tables,
    read_file_column,
    read_table_file,
    write_csv_atomic,
)
from tests.features.test_validation import _base, _write


@pytest.mark.parametrize(
    ("other", "listed"),
    [
        ("accounts.parquet", "accounts.parquet, accounts.csv"),
        ("accounts.csv.gz", "accounts.csv, accounts.csv.gz"),
        ("accounts/part-0.parquet", "accounts.csv, accounts/"),
    ],
    ids=["parquet-beside-csv", "gzip-beside-csv", "folder-beside-csv"],
)
def test_two_files_for_one_table_are_refused_naming_both(
    other: str, listed: str, tmp_path: Path
) -> None:
    # given an export with accounts.csv and a second file of the same table beside it
    folder = _write(tmp_path / "data", _base())
    (folder / other).parent.mkdir(exist_ok=True)
    accounts = _base()["accounts"]
    if other.endswith(".parquet"):
        accounts.to_parquet(folder / other, index=False)
    else:
        accounts.to_csv(folder / other, index=False)
    # when it is read, then both are named and the user is told to keep one
    with pytest.raises(
        ContractError, match=rf"2 files hold table 'accounts' \({listed}\); keep one and move"
    ):
        locate_tables(folder)


@pytest.mark.parametrize(
    ("text", "records"),
    [
        ("a,b\n1,2\n3,4\n", 2),
        ("a,b\r\n1,2\r\n3,4", 2),
        ('a,b\n1,"two\nlines"\n3,"blank\n\nline"\n', 2),
        ('a,b\n1,"said ""hi"""\n', 1),
        ("a,b\n1,2\n\n   \n3,4\n\n", 2),
        ("a,b,c\n1,2\n3,4,5\n", 2),
        ('a,b\n1,2\n" ",\n', 2),
        ("a,b\n", 0),
    ],
    ids=[
        "plain",
        "crlf",
        "quoted-newlines",
        "doubled-quotes",
        "blank-lines",
        "short-row",
        "quoted-blank",
        "header-only",
    ],
)
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_a_csv_is_counted_record_by_record_as_it_is_read(
    text: str, records: int, suffix: str, tmp_path: Path
) -> None:
    # given a CSV export with line breaks in values, blank lines or a short row
    path = tmp_path / f"events{suffix}"
    opener = gzip.open if suffix.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8", newline="") as out:
        out.write(text)
    # when its rows are counted, then each record is one row, as reading it takes them
    assert count_rows(path) == records == len(read_table_file(path))


@pytest.mark.parametrize(
    "late", ["x,y", "31/02/2024,E9"], ids=["text-after-numbers", "bad-date-after-timestamps"]
)
def test_a_late_value_of_another_type_is_counted_not_refused(late: str, tmp_path: Path) -> None:
    """Found in review: counting converted every column with types guessed from the first
    block (~1 MB), so one bad row past it refused a whole valid export."""
    # given a CSV of over 1 MB whose last row's values are of another type than the rest
    path = tmp_path / "events.csv"
    first = "2024-05-01T10:00:00,E1" if "/" in late else "1,2"
    path.write_text("a,b\n" + f"{first}\n" * 300_000 + late + "\n")
    assert path.stat().st_size > 1_000_000
    # when its rows are counted, then every record is, as reading it takes them
    assert count_rows(path) == 300_001 == len(read_table_file(path))


@pytest.mark.parametrize(
    "content", [b"PAR1 cut short", b"event_id,timestamp\nE1,2024-05-01\n"], ids=["cut", "csv"]
)
def test_a_broken_parquet_file_is_named_when_counted_or_read_by_column(
    content: bytes, tmp_path: Path
) -> None:
    # given an events.parquet that is cut short, or CSV text
    path = tmp_path / "events.parquet"
    path.write_bytes(content)
    # when its rows are counted, or a column read, then one error names the file and the fix
    message = r"events.parquet: cannot be read as Parquet \(.+\); export it again"
    with pytest.raises(ContractError, match=message):
        count_rows(path)
    with pytest.raises(ContractError, match=message):
        read_file_column(path, "timestamp")


HYPERLINK = '=HYPERLINK("http://x","y")'


# OWASP's list (the CSV Injection page), written out: the code's own tuple could lose one
@pytest.mark.parametrize(
    "start", ["=", "+", "-", "@", "\t", "\r"], ids=["=", "+", "-", "@", "tab", "cr"]
)
@pytest.mark.parametrize("dtype", [object, "str", "category"])
def test_a_text_cell_starting_like_a_formula_is_quoted_as_owasp_advises(
    start: str, dtype: object
) -> None:
    # given a text column whose second cell starts like a formula
    frame = pd.DataFrame({"name": pd.Series(["Acme", f"{start}cmd|' /C calc'!A0", None])})
    frame["name"] = frame["name"].astype(dtype)  # type: ignore[call-overload]
    # when it is written as CSV, the cell reads back as the same text behind a single quote
    back = list(csv.reader(io.StringIO(csv_text(frame), newline="")))
    assert back == [["name"], ["Acme"], [f"'{start}cmd|' /C calc'!A0"], [""]]


def test_numbers_stay_numbers_and_the_hyperlink_is_inert(tmp_path: Path) -> None:
    # given a negative trend, a negative number held in a column of text, and an account named
    # as a formula, beside a name that only holds an equals sign
    frame = pd.DataFrame(
        {
            "name": [HYPERLINK, "a=b", "-"],
            "trend": [-0.3, -2.0, 0.0],
            "score": pd.array([-1, None, 3], dtype="Int64"),
            "mixed": pd.Series([-0.3, "-0.3", None], dtype=object),
        }
    )
    # when written to a file
    path = write_csv_atomic(frame, tmp_path / "out.csv")
    # then the numbers are written as numbers, the text starting like a formula is quoted
    assert path.read_bytes().decode().split("\r\n") == [
        "name,trend,score,mixed",
        '"\'=HYPERLINK(""http://x"",""y"")",-0.3,-1,-0.3',
        "a=b,-2.0,,'-0.3",
        "'-,0.0,3,",
        "",
    ]
    read = pd.read_csv(path)
    assert read["trend"].tolist() == [-0.3, -2.0, 0.0] and read["name"][0] == "'" + HYPERLINK
    # and the frame given is left as it was
    assert frame["name"][0] == HYPERLINK and inert_cells(frame)["name"][0] == "'" + HYPERLINK
