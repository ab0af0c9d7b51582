"""Processes as the tests see them, read from /proc: children of a process, whether one still
runs, and the pid of one that has ended. The tests' own reading, not the code under test's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid``."""
    return {
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and (fields := _stat(entry.name)) and int(fields[1]) == pid
    }


def running(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie has ended; only its exit status is left)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def ended_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    ended = subprocess.Popen([sys.executable, "-c", ""])
    ended.wait()
    return ended.pid
