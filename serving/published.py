"""The published scoring run as the service and ``inmarket report`` read it: every table of one
run, each checked against its manifest (``serving.runs``), and the account views built from them
once (``serving.account``). The service keeps the newest run that reads whole.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from features.io import sidecar
from serving.account import AccountViews
from serving.batch import RANKED_COLUMNS
from serving.review import filter_choices
from serving.runs import RunError, published, stamp

log = logging.getLogger("inmarket.review")


@dataclass
class Scoring:
    """One scoring run's tables; its account views are built on first use, once."""

    ranked: pd.DataFrame
    history: pd.DataFrame
    activity: pd.DataFrame
    opportunities: pd.DataFrame
    people: pd.DataFrame
    drift: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    _views: AccountViews | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def read(cls, ranked: Path) -> Scoring | None:
        """The run published at ``ranked`` (None when there is none), every file as the manifest
        names it (``serving.runs.RunError`` otherwise)."""
        run = published(ranked)
        if run is None:
            return None
        listed = Path(Path(ranked).name)

        def table(kind: str | None) -> pd.DataFrame:
            name = listed if kind is None else sidecar(listed, kind)
            return pd.read_parquet(io.BytesIO(run.read(name.name)))

        # text and categories as objects, in one block once copied: a list page takes its rows
        # from ~6 blocks, not ~27 (pandas' Arrow-backed text is a block per column)
        frame = table(None)
        # a run an older version published lacks the columns added since: read them as empty
        late = [c for c in RANKED_COLUMNS if c not in frame.columns]
        frame = frame.reindex(columns=[*frame.columns, *late])
        frame = frame.astype({c: object for c in frame.columns if frame[c].dtype.kind == "O"})
        frame = frame.assign(
            _name=frame["name"].fillna("").str.lower(),
            _domain=frame["domain"].fillna("").str.lower(),
        )
        return cls(
            frame.copy(),
            table("history.parquet"),
            table("activity.parquet"),
            table("opportunities.parquet"),
            table("people.parquet"),
            json.loads(run.read(sidecar(listed, "drift.json").name)),
            run.manifest,
        )

    @cached_property
    def choices(self) -> dict[str, list[str]]:
        """The list's filter choices, the same for every summary of this run."""
        return filter_choices(self.ranked)

    def views(self) -> AccountViews:
        """Every account's view, grouped from the tables the first time they are asked for."""
        with self._lock:
            if self._views is None:
                self._views = AccountViews(
                    self.ranked, self.history, self.activity, self.opportunities, self.people
                )
            return self._views


class ScoringCache:
    """The run published at ``path``, read again when a new one is published (its manifest
    changes). A run that does not read whole (a file missing, changed, not Parquet) is not
    served: the one before is kept, and ``error`` says why for the routes to answer 503 when
    there is none. Requests during a reload get the run before, without waiting."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: object = None
        self._scoring: Scoring | None = None
        self._lock = threading.Lock()
        self.error: str | None = None

    def stale(self) -> bool:
        """Whether ``get`` would read a run first (a new one was published, or none read yet)."""
        try:
            return stamp(self.path) != self._stamp
        except OSError:
            return True

    def get(self) -> Scoring | None:
        try:
            now = stamp(self.path)
        except OSError as exc:  # the folder cannot be looked at: serve what was read before
            self.error = f"{self.path.name} cannot be read ({type(exc).__name__})"
            return self._scoring
        if now == self._stamp or not self._lock.acquire(blocking=self._scoring is None):
            return self._scoring
        try:
            if now != self._stamp:
                self._stamp = now
                self._load()
            return self._scoring
        finally:
            self._lock.release()

    def _load(self) -> None:
        try:
            scoring = Scoring.read(self.path)
            if scoring is not None:
                scoring.views()  # built here, once per run, not by a request
        except (OSError, ValueError, KeyError, TypeError) as exc:  # pyarrow's are among these
            log.warning("cannot read the batch scoring %s: %s", self.path.name, exc)
            # a run's own words name files, never the server's folders
            reason = str(exc) if isinstance(exc, RunError) else type(exc).__name__
            self.error = f"{self.path.name} cannot be read ({reason})"
            return
        self.error = None
        if scoring is not None:
            self._scoring = scoring
