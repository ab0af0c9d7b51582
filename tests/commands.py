"""The ``inmarket`` command as a user runs it: a real process, and a small export to run it on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``inmarket ARGS`` in a new process, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "inmarket.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def write_csvs(folder: Path, tables: dict[str, pd.DataFrame]) -> Path:
    """Each table as ``<name>.csv`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder
