"""A batch scoring run's files as one unit: written into a folder of their own, published by
replacing one manifest (the run's pointer), read back only through it. A reader gets every file
of one run or every file of the one before, never a mix, even when ``inmarket score`` is killed
at any point of its writing (issue 31).

``inmarket score DATA --out data/ranked.parquet`` lays its files out as::

    data/ranked.manifest.json   the pointer: the run's folder, each file's size and SHA-256,
                                the model, as_of and counts; replaced in one rename
    data/ranked.runs/<run>/     the run: ranked.parquet, ranked.csv and the side files
                                (ranked.history.parquet, .activity, .opportunities, .people,
                                ranked.drift.json)
    data/ranked.parquet, .csv   copies of the published run's list, for people and tools;
                                the service and ``inmarket report`` read through the manifest

A run is written under its owner's name (``.inmarket.<pid>@<host>.run...``, removed by the next
run if its owner died), renamed to ``<run>`` (its UTC time to the microsecond, a random suffix)
once whole, then published. After publishing, the runs older than the one before are removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from features.errors import InMarketError
from features.io import sidecar, write_atomic, write_json_atomic
from features.leftovers import scratch_dir

MANIFEST = "manifest.json"
_RUN_NAME = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{8}$")  # UTC to the microsecond: in time order


class RunError(InMarketError, ValueError):
    """The published run cannot be read whole: the message names the file and what is wrong."""


@dataclass(frozen=True)
class Published:
    """The run a manifest names: the manifest, and the run's files read back as written."""

    manifest: dict[str, Any]
    folder: Path

    def read(self, name: str) -> bytes:
        """The file ``name`` of the run, refused unless its size and SHA-256 are the manifest's."""
        expected = self.manifest["files"].get(name)
        if not isinstance(expected, dict):
            raise RunError(f"{name} is not among the files of run {self.folder.name}")
        data = (self.folder / name).read_bytes()
        if len(data) != expected["bytes"] or _sha256(data) != expected["sha256"]:
            raise RunError(
                f"{name} of run {self.folder.name} is not the file its manifest names "
                f"({len(data):,} bytes, {expected['bytes']:,} expected)"
            )
        return data


def published(out: Path) -> Published | None:
    """The run published at ``out`` (``ranked.parquet``); None when nothing is published there.

    A list without a manifest was not written by ``inmarket score`` (or by a version before run
    folders): it is refused, not read."""
    out = Path(out)
    pointer = sidecar(out, MANIFEST)
    try:
        text = pointer.read_text(encoding="utf-8")
    except FileNotFoundError:
        if out.exists():
            raise RunError(
                f"{out.name} has no manifest ({pointer.name}): it was not written by "
                "`inmarket score`, or by a version before run folders"
            ) from None
        return None
    try:
        manifest = json.loads(text)
        run = Path(manifest["run"])
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise RunError(
            f"{pointer.name} names no run folder ({type(exc).__name__}: {exc})"
        ) from None
    if run.parent != Path(_runs(out).name) or not _RUN_NAME.match(run.name):
        raise RunError(f"{pointer.name}: '{run}' is not a run folder of {out.name}")
    if not isinstance(files, dict):
        raise RunError(f"{pointer.name} lists no file sizes and checksums")
    return Published(manifest, out.parent / run)


def stamp(out: Path) -> tuple[object, ...]:
    """What changes whenever a run is published at ``out`` (the manifest's inode, time and size;
    without a manifest, the list's): a reader compares it, a ``stat`` call, before reading again."""
    for path in (sidecar(out, MANIFEST), Path(out)):
        try:
            found = os.stat(path)
        except FileNotFoundError:
            continue
        return (path.name, found.st_ino, found.st_mtime_ns, found.st_size)
    return ()


class NewRun:
    """A run being written: its files go in ``folder``; ``publish`` makes it the one readers get."""

    def __init__(self, out: Path, folder: Path) -> None:
        self.out = Path(out)
        self.folder = folder

    def path(self, kind: str | None = None) -> Path:
        """Where the run's list (``kind`` None) or one of its side files is written."""
        listed = self.folder / self.out.name
        return listed if kind is None else sidecar(listed, kind)

    def publish(self, facts: dict[str, Any]) -> dict[str, Any]:
        """Seal the run's files (sizes, SHA-256, on disk), name the run, switch the manifest to
        it, refresh the copies of the list beside ``out``, and remove older runs; the manifest."""
        files = {path.name: _seal(path) for path in sorted(self.folder.iterdir())}
        runs = _runs(self.out)
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}"
        os.rename(self.folder, runs / name)
        _sync_folder(runs)
        try:
            before = published(self.out)
        except RunError:
            before = None
        manifest = {**facts, "run": f"{runs.name}/{name}", "files": files}
        write_json_atomic(manifest, sidecar(self.out, MANIFEST))  # the switch
        _sync_folder(self.out.parent)
        for copied in (self.out.name, self.out.with_suffix(".csv").name):
            write_atomic(self.out.with_name(copied), partial(shutil.copyfile, runs / name / copied))
        # only runs older than the one before: a run another `score` has named but not yet
        # published is newer than that one, and stays
        oldest = min(name, before.folder.name) if before else name
        for old in runs.iterdir():
            if _RUN_NAME.match(old.name) and old.name < oldest:
                shutil.rmtree(old, ignore_errors=True)
        return manifest


@contextmanager
def new_run(out: Path) -> Iterator[NewRun]:
    """A new run's folder beside ``out``, removed on the way out unless published."""
    with scratch_dir("run", parent=_runs(out)) as folder:
        yield NewRun(out, folder)


def _runs(out: Path) -> Path:
    return sidecar(Path(out), "runs")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _seal(path: Path) -> dict[str, Any]:
    """A written file's size and SHA-256, once it is on disk (fsync): what readers check."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
        os.fsync(handle.fileno())
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _sync_folder(folder: Path) -> None:
    """Put a folder's renames on disk, so a crash cannot publish a run whose folder is lost."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
