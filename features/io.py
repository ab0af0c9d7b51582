"""Files in and out: reading tables (CSV/Parquet, whole or in chunks), finding them in a folder,
the export time written beside them (what ``features.sources.FolderSource`` reads through),
configuration files, atomic writes, and CSV text a spreadsheet cannot run (``inert_cells``).

Every file this project writes goes through ``write_atomic``: a temporary file beside the
target (named by its owner, ``features.leftovers``), renamed into place, so a reader never sees
half a file and a failed run leaves the old one intact.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import yaml

from features.contract import OPTIONAL_TABLES, TABLE_ORDER
from features.errors import ConfigError, ContractError
from features.leftovers import owned_name, remove_dead_owners

EXTRACT_MANIFEST = "_extract.json"
# what makes a spreadsheet take a cell for a formula (OWASP, "CSV Injection"): its first character
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
SOURCE_COLUMN, ROW_COLUMN = "_source", "_row"  # where each raw row came from: file, row number


@dataclass
class RawSource:
    """One part of one canonical table read whole, in canonical columns, as validation takes it."""

    table: str
    file: str
    frame: pd.DataFrame
    formats: dict[str, str] = field(default_factory=dict)
    rows: int | None = None  # the part's rows as its source counted them, apart from the read

    @property
    def rows_in(self) -> int:
        """The part's rows as its source counted them (so a row lost reading it shows), else
        the frame's (data that is only a frame: a request's rows, a bucket of a part)."""
        return len(self.frame) if self.rows is None else self.rows


def unreadable(path: Path, exc: Exception) -> ContractError:
    """The one-line error for a file that cannot be read as the table it should be."""
    if isinstance(exc, UnicodeDecodeError):
        return ContractError(
            f"{path}: not UTF-8 text (byte {exc.start}); save the export as UTF-8, e.g. "
            f"iconv -f latin1 -t utf-8 {path.name}"
        )
    if isinstance(exc, pd.errors.EmptyDataError):
        return ContractError(f"{path}: the file is empty, not even a header row; export it again")
    if isinstance(exc, pd.errors.ParserError):
        detail = str(exc).strip().splitlines()[-1]
        return ContractError(
            f"{path}: cannot be read as CSV ({detail}); check the quoting and that every row "
            "has as many fields as the header"
        )
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ContractError(
        f"{path}: cannot be read as {'CSV' if '.csv' in path.name.lower() else 'Parquet'} "
        f"({detail}); export it again (the file may be truncated or of another type)"
    )


def _no_duplicate_columns(path: Path, columns: Iterable[str], mangled: bool) -> None:
    """Two columns of one name would become two features; the export must say which is meant."""
    names = list(columns)
    twice = sorted({c for c in names if names.count(c) > 1})
    if mangled:  # pandas renames a repeated CSV header to name.1, name.2, ...
        twice += sorted(
            {c.rsplit(".", 1)[0] for c in names if c.rsplit(".", 1)[-1].isdigit()} & set(names)
        )
    if twice:
        raise ContractError(
            f"{path}: column(s) {twice} appear more than once; keep one of each (or map the one "
            "you mean in a mapping file)"
        )


def read_table_file(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    try:
        if name.endswith(".parquet") or path.is_dir():
            schema = pads.dataset(path).schema if path.is_dir() else pq.read_schema(path)
            _no_duplicate_columns(path, schema.names, mangled=False)
            return pd.read_parquet(path)
        if name.endswith((".csv", ".csv.gz")):
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
            _no_duplicate_columns(path, frame.columns, mangled=True)
            return frame
    except ContractError:
        raise
    except (OSError, ValueError, pa.ArrowException) as exc:  # ParserError, Unicode: ValueError
        raise unreadable(path, exc) from exc
    raise ContractError(f"{path}: unsupported file type; use Parquet or CSV")


def iter_table_batches(path: Path, chunk_rows: int) -> Iterator[pa.Table]:
    """Read a table in Arrow chunks of about ``chunk_rows`` rows, each with its ``_row`` numbers.

    CSV arrives as text, the way ``read_table_file`` reads it."""
    name = path.name.lower()
    try:
        if name.endswith(".parquet") or path.is_dir():
            batches = (
                pq.ParquetFile(path).iter_batches(batch_size=chunk_rows)
                if path.is_file()
                else pads.dataset(path).to_batches(batch_size=chunk_rows)
            )
            tables: Iterable[pa.Table] = (pa.Table.from_batches([b]) for b in batches)
        elif name.endswith((".csv", ".csv.gz")):
            tables = (
                text_table(chunk)
                for chunk in pd.read_csv(
                    path, dtype=str, keep_default_na=False, na_values=[""], chunksize=chunk_rows
                )
            )
        else:
            raise ContractError(f"{path}: unsupported file type; use Parquet or CSV")
    except ContractError:
        raise
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise unreadable(path, exc) from exc
    offset = 0
    chunks = iter(tables)
    while True:
        try:
            table = next(chunks)
        except StopIteration:
            return
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise unreadable(path, exc) from exc
        if offset == 0:
            _no_duplicate_columns(path, table.column_names, mangled=not name.endswith("parquet"))
        yield table.append_column(ROW_COLUMN, pa.array(np.arange(offset, offset + table.num_rows)))
        offset += table.num_rows


def text_table(frame: pd.DataFrame) -> pa.Table:
    """A pandas frame as Arrow, text columns as strings even when a chunk is all missing."""
    fields = []
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_datetime64_any_dtype(column):
            tz = getattr(column.dt, "tz", None)
            fields.append(pa.field(name, pa.timestamp("us", str(tz) if tz else None)))
        elif pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
            fields.append(pa.field(name, pa.from_numpy_dtype(column.dtype)))
        else:
            fields.append(pa.field(name, pa.large_string()))
    return pa.Table.from_pandas(frame, schema=pa.schema(fields), preserve_index=False)


def count_rows(path: Path) -> int:
    """Rows in a table file, counted apart from reading it: from a Parquet file's footer (or
    its parts' footers), or a CSV's records as ``read_table_file`` takes them."""
    name = path.name.lower()
    try:
        if path.is_dir():
            return int(pads.dataset(path).count_rows())
        if name.endswith(".parquet"):
            return int(pq.ParquetFile(path).metadata.num_rows)
        if name.endswith((".csv", ".csv.gz")):
            return _count_csv_records(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise unreadable(path, exc) from exc
    raise ContractError(f"{path}: unsupported file type; use Parquet or CSV")


def _count_csv_records(path: Path) -> int:
    """A CSV's records, no value converted: a line break inside quotes is part of a value,
    blank and whitespace-only lines are no record (as pandas reads them), a short row is one."""
    short = 0

    def irregular(row: pacsv.InvalidRow) -> str:
        nonlocal short
        short += bool(row.text.strip())
        return "skip"

    def parsed(handler: Callable[[pacsv.InvalidRow], str]) -> pacsv.ParseOptions:
        return pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=handler)

    with pacsv.open_csv(path, parse_options=parsed(lambda _: "skip")) as first:
        names = first.schema.names  # the header's
    # one column read as text: a late value of another type than the first block's is counted
    # (an empty list of columns would read them all, converting each to its guessed type)
    reader = pacsv.open_csv(
        path,
        parse_options=parsed(irregular),
        convert_options=pacsv.ConvertOptions(
            include_columns=names[:1], column_types={names[0]: pa.string()}
        ),
    )
    return sum(batch.num_rows for batch in reader) + short


def read_file_column(path: Path, column: str) -> pd.Series | None:
    """One column of a table file, or None when it has no such column."""
    name = path.name.lower()
    try:
        if path.is_dir() or name.endswith(".parquet"):
            schema = pads.dataset(path).schema if path.is_dir() else pq.read_schema(path)
            if column not in schema.names:
                return None
            return pq.read_table(path, columns=[column]).column(0).to_pandas()
        if column not in pd.read_csv(path, nrows=0).columns:
            return None
        return pd.read_csv(path, usecols=[column], dtype=str)[column]
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise unreadable(path, exc) from exc


def find_table_file(folder: Path, table: str) -> Path | None:
    """The one file (or folder of Parquet parts) holding ``table``; two would leave one unread."""
    names = (f"{table}.parquet", f"{table}.csv", f"{table}.csv.gz", table)
    found = [folder / name for name in names if (folder / name).exists()]
    if len(found) > 1:
        listed = ", ".join(path.name + ("/" if path.is_dir() else "") for path in found)
        raise ContractError(
            f"{folder}: {len(found)} files hold table '{table}' ({listed}); keep one and move "
            f"the others out of the folder (the parts of one table go together in {table}/ as "
            "Parquet files)"
        )
    return found[0] if found else None


def locate_tables(folder: Path) -> dict[str, Path]:
    """The file of each canonical table in ``folder``; a missing required table stops here."""
    if not folder.is_dir():
        raise ContractError(f"{folder}: data folder not found")
    paths: dict[str, Path] = {}
    for table in TABLE_ORDER:
        path = find_table_file(folder, table)
        if path is not None:
            paths[table] = path
        elif table not in OPTIONAL_TABLES:
            found = sorted(p.name for p in folder.iterdir() if not p.name.startswith((".", "_")))
            raise ContractError(
                f"table '{table}' is missing: expected {table}.parquet or {table}.csv in "
                f"{folder}; found {found or 'nothing'}. Use a mapping file (--mapping) for "
                "exports with other file names."
            )
    return paths


def read_extracted_at(folder: Path) -> datetime | None:
    """The export time recorded beside the tables, if the exporter wrote one."""
    manifest = folder / EXTRACT_MANIFEST
    if not manifest.exists():
        return None
    try:
        stamp = json.loads(manifest.read_text(encoding="utf-8"))["extracted_at"]
        return as_utc(datetime.fromisoformat(stamp))
    except (ValueError, KeyError, TypeError) as exc:
        raise ContractError(
            f"{manifest}: cannot read the export time ({type(exc).__name__}: {exc}); write "
            '{"extracted_at": "2026-07-01T00:00:00+00:00"} or pass --extracted-at'
        ) from exc


def as_utc(stamp: datetime) -> datetime:
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def read_structured_file(path: Path) -> dict[str, Any]:
    """Read a TOML or YAML file (configuration, mapping) into a dict, naming the file on error."""
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() in {".yaml", ".yml"}:
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"{path}: use a .toml, .yaml or .yml file")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot be parsed: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a table of sections")
    return data


def sidecar(path: Path, kind: str) -> Path:
    """A file written beside another: ``ranked.parquet`` -> ``ranked.<kind>``."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".parquet") + f".{kind}")


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, then rename it into place.

    Readers never see half a file; on failure the temporary file is removed and ``path`` keeps
    its old content. The temporary file is named by its owner, so one left by a killed run is
    removed by the next write in that folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_owners(path.parent)
    tmp = path.with_name(owned_name(f"{path.name}.tmp"))
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> Path:
    return write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))


def write_text_atomic(text: str, path: Path) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(payload: dict[str, Any], path: Path) -> Path:
    return write_text_atomic(json.dumps(payload, indent=2, default=str) + "\n", path)


def inert_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell that starts like a formula (``FORMULA_STARTS``) prefixed
    with a single quote, as OWASP advises, so a spreadsheet shows it as text. Numbers stay
    numbers: a column of numbers, times or booleans is not text and is written as it is (a
    trend of -0.3 is a number), and so is a number held in a column of text."""
    inert = {}
    for name in frame.columns:
        column = frame[name]
        if column.dtype.kind in "biufcmM":
            continue
        text = column.astype(object)
        risky = text.str.startswith(FORMULA_STARTS).fillna(False).to_numpy(dtype=bool)
        if risky.any():
            inert[name] = text.where(~risky, "'" + text.where(risky, ""))
    return frame.assign(**inert) if inert else frame


def csv_text(frame: pd.DataFrame) -> str:
    """``frame`` as CSV text, one header row, its cells inert (``inert_cells``): every CSV the
    product writes or answers goes through here. Lines end in CRLF (RFC 4180), so a cell
    holding a carriage return is quoted like one holding a newline (with LF endings Python's
    writer leaves it bare, and a reader breaks the row there)."""
    text: str = inert_cells(frame).to_csv(index=False, lineterminator="\r\n")
    return text


def write_csv_atomic(frame: pd.DataFrame, path: Path) -> Path:
    """``frame`` as a CSV file (``csv_text``), written atomically."""
    return write_text_atomic(csv_text(frame), path)
