"""Measuring a command as a benchmark: wall time and peak memory of its process tree."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

RESULTS = Path(__file__).parent / "results"
INMARKET = [sys.executable, "-m", "inmarket.cli"]


def measure(command: list[str]) -> dict[str, float | str]:
    """Run a command; return its wall time and the peak memory of its process tree."""
    # output goes to files, not pipes: a pipe nobody reads until the end fills up (64 KB of
    # Spark warnings do it) and blocks the command forever
    with tempfile.TemporaryFile("w+") as out_file, tempfile.TemporaryFile("w+") as err_file:
        began = time.perf_counter()
        process = subprocess.Popen(command, stdout=out_file, stderr=err_file, text=True)
        peak_rss, peak_pss = _watch(process)
        seconds = time.perf_counter() - began
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    if process.returncode:
        raise SystemExit(f"{command[0]} failed:\n{err[-2000:]}")
    return {
        "seconds": round(seconds, 2),
        "peak_rss_gb": round(peak_rss / 1e9, 2),
        "peak_pss_gb": round(peak_pss / 1e9, 2),
        "stdout": out.strip().splitlines()[-1] if out.strip() else "",
    }


def generate_command(world: Path, accounts: int, seed: int) -> list[str]:
    """The command that generates the synthetic world of a benchmark."""
    return [
        *INMARKET,
        "generate",
        "--accounts",
        str(accounts),
        "--seed",
        str(seed),
        "--out",
        str(world),
    ]


def ensure_world(world: Path, accounts: int, seed: int) -> dict[str, float | str] | None:
    """Generate the synthetic world into ``world`` unless it is there; the measure, if made."""
    if (world / "events.parquet").exists():
        return None
    return measure(generate_command(world, accounts, seed))


def _watch(process: subprocess.Popen[str]) -> tuple[int, int]:
    """Sample the process tree's memory every 0.1 s until it ends: peak RSS and PSS, bytes."""
    root = psutil.Process(process.pid)
    peak_rss = peak_pss = 0
    while process.poll() is None:
        rss = pss = 0
        try:
            for proc in [root, *root.children(recursive=True)]:
                info = proc.memory_full_info()
                rss, pss = rss + info.rss, pss + info.pss
        except psutil.Error:
            pass
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.1)
    return peak_rss, peak_pss


def stamp() -> dict[str, str]:
    """When and on what a figure was measured."""
    memory = psutil.virtual_memory().total / 2**30
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{psutil.cpu_count()} cores, {memory:.0f} GiB",
    }


def record(name: str, result: dict[str, object]) -> dict[str, object]:
    """Write ``bench/results/<name>.json`` and print it."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result
