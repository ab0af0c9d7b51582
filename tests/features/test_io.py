"""Finding and reading table files (``features.io``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.errors import ContractError
from features.io import locate_tables
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
