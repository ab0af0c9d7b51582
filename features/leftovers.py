"""What a killed run would leave behind, and how none of it outlives the run for long.

``finally`` cleans up after an error, but ``kill -9`` skips it. So worker processes ask the
kernel to kill them with their parent, and every temporary file or folder carries its owner in
its name (``.inmarket.<pid>@<host>.<label>``): whoever next makes one in the same folder
removes those whose owner has died. Another machine's processes cannot be checked from here,
so what another host owns is left alone.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_OWNED = re.compile(r"\.inmarket\.(?P<pid>\d+)@(?P<host>[^.]+)\.")


def this_host() -> str:
    """This machine's short name, as owners are recorded (in scratch names, on MLflow runs)."""
    return re.sub(r"[^A-Za-z0-9_-]", "", socket.gethostname().split(".")[0]) or "localhost"


def is_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine still runs (a zombie has finished: only its exit
    status is left for its parent to collect)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (not Linux), or it ended just now
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def owner_alive(pid: int, host: str) -> bool:
    """Whether the owner may still run: a process of another host counts as alive."""
    return host != this_host() or is_alive(pid)


def die_with_parent(parent: int) -> None:
    """Called first in each worker: the kernel kills the worker when ``parent`` dies (Linux),
    so a killed run's workers do not live on holding their memory. If the parent died before
    this call, the worker exits now. The thread that starts the workers must outlive them: the
    signal follows that thread, not the whole parent process."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    if os.getppid() != parent:
        os._exit(1)


def owned_name(label: str) -> str:
    """This process's name for a temporary file or folder: ``.inmarket.<pid>@<host>.<label>``."""
    return f".inmarket.{os.getpid()}@{this_host()}.{label}"


def remove_dead_owners(folder: Path) -> None:
    """Remove the temporary files and folders in ``folder`` whose owner on this host has died."""
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return
    for entry in entries:
        owner = _OWNED.match(entry.name)
        if owner is None or owner_alive(int(owner["pid"]), owner["host"]):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


@contextmanager
def scratch_dir(label: str, parent: Path | None = None) -> Iterator[Path]:
    """A new folder for this run's temporary files, in ``parent`` (default: the system's
    temporary folder), removed on the way out; dead runs' leftovers in ``parent`` go first."""
    parent = Path(tempfile.gettempdir() if parent is None else parent)
    parent.mkdir(parents=True, exist_ok=True)
    remove_dead_owners(parent)
    folder = Path(tempfile.mkdtemp(prefix=owned_name(label) + ".", dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
