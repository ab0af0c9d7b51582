"""``inmarket refresh``, the one job a scheduler runs: validate the data, score it with the
champion, retrain when due, put the challenger through the gate, score again when it is
promoted, and record what was done, so that a second run on the same data does nothing.

A retrain is due (``RefreshJob.reasons``) when the project has no model yet (no champion, no
refused challenger), or against its newest model, the *basis* (the champion, or a challenger the
gate refused since, so that a refusal is not retried on every run):
- a new labelled window: the data holds a labelled snapshot (the training grid, anchored at
  the export day every ``[train] every_days``, whose label window closed by the export time)
  ``every_days`` or more after the basis's last (its run's ``test_as_of``);
- age: the basis was registered in the registry more than ``[refresh] retrain_after_days``
  ago by the clock, unless a refresh trained it on this very data (tag ``refresh_data``).

What was scored is recorded beside the outputs (``ranked.refresh.json``: the data's identity,
the settings' digest, the champion that scored, the published run), rewritten atomically after
each scoring. Beside the outputs, not in the store: outputs deleted or moved are scored again.
A kill at any point leaves the published outputs (``serving.runs``) and the aliases (moved only
by the gate) as they were; the next run does what is left, and gates a challenger a killed
refresh trained on this data and settings instead of training again.

Each scoring says what changed since the previous period (``serving.changes``) and sends it to
the ``[alerts]`` webhook (``serving.webhook``): a webhook that fails is a warning, never a failed
refresh.

One refresh per project (tracking URI and model name) at a time on a host: an exclusive
``flock`` on a lock file in the temporary folder, released by the kernel when its holder dies.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities import RunStatus
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from features.contract import TABLE_ORDER
from features.errors import ConfigError, ContractError, InMarketError
from features.io import sidecar, write_json_atomic
from features.leftovers import this_host
from features.settings import DataSettings, FeatureSettings, Section
from features.sources import TableSource, open_source
from features.validation import load_dataset
from inmarket.config import RefreshSettings
from serving.batch import score_batch
from serving.changes import changes_in_words
from serving.runs import RunError, published
from serving.settings import AlertSettings, SinkSettings
from serving.sink import RunFacts, Sink
from serving.webhook import send_alerts
from training.job import TrainJob
from training.promotion import promote
from training.registry import (
    CHALLENGER,
    CHAMPION,
    connect,
    load_model,
    reaching,
    resolved_uri,
    version_by_alias,
    version_uri,
)
from training.settings import PromotionSettings, TrackingSettings, TrainSettings

# tags on a version a refresh trained: the identity of its data and the digest of its settings
REFRESH_DATA, REFRESH_SETTINGS = "refresh_data", "refresh_settings"
STATE = "refresh.json"  # beside the outputs: ranked.refresh.json
_DAY_MS = 86_400_000


class RefreshRunning(InMarketError, RuntimeError):
    """Another refresh of the same project holds its lock: this one does nothing."""


def data_identity(source: TableSource, settings: DataSettings) -> str:
    """A short hash of the data as a refresh reads it: each part's fingerprint (a file's
    bytes; a database's hash of its rows, ``TableSource.fingerprint``), the mapping file, and
    the export time (when none is recorded or given, the clock's day: the snapshots are
    anchored at that day)."""
    digest = hashlib.sha256(json.dumps(source.lineage(), sort_keys=True).encode())
    for table in TABLE_ORDER:
        for part in source.parts(table):
            digest.update(source.fingerprint(part).encode())
    if settings.mapping is not None:
        digest.update(Path(settings.mapping).read_bytes())
    stamp, _ = source.export_time(settings.extracted_at)
    digest.update(stamp.isoformat().encode() if stamp else f"{datetime.now(UTC):%Y-%m-%d}".encode())
    return digest.hexdigest()[:16]


def settings_digest(sections: dict[str, Section]) -> str:
    """A short hash of the settings sections a refresh runs with."""
    text = json.dumps({n: s.model_dump(mode="json") for n, s in sections.items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def lock_path(tracking: TrackingSettings) -> Path:
    """The lock file of a project: its tracking URI and model name, hashed, in the temporary
    folder (shared by every run on the host, whatever its working folder)."""
    uri = resolved_uri(tracking)
    key = hashlib.sha256(f"{uri}\n{tracking.model_name}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"inmarket-refresh-{key}.lock"


@contextmanager
def project_lock(tracking: TrackingSettings) -> Iterator[Path]:
    """Hold the project's lock for the block, or raise ``RefreshRunning`` naming its holder.
    The kernel releases a ``flock`` when its holder dies, so a killed refresh blocks nothing."""
    path = lock_path(tracking)
    try:
        handle = path.open("a+", encoding="utf-8")
    except OSError as exc:  # another user's lock file, a temporary folder not writable
        raise ConfigError(
            f"cannot open the refresh lock {path} ({exc.strerror}): run every refresh of a "
            "project as one user, or give this one a TMPDIR it can write"
        ) from exc
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "its holder has not written its name yet"
            raise RefreshRunning(
                f"another refresh of model '{tracking.model_name}' is running ({holder}; lock "
                f"{path}); this one did nothing: run it again once that one has ended"
            ) from None
        try:
            handle.seek(0)
            handle.truncate()
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            handle.write(f"pid {os.getpid()} on {this_host()} since {stamp}\n")
            handle.flush()
            yield path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def newest_labelled(extracted_at: datetime, train: TrainSettings) -> pd.Timestamp:
    """The newest snapshot of the training grid (anchored at the export day, one every
    ``train.every_days``) whose label window has closed by the export time."""
    end = pd.Timestamp(extracted_at)
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    anchor, every = end.floor("D"), pd.Timedelta(days=train.every_days)
    late = anchor + pd.Timedelta(days=train.horizon_days) - end
    return anchor - max(0, math.ceil(late / every)) * every


@dataclass
class Outcome:
    """What a refresh did, in words for its summary line, and whether the gate left the
    scores to the old champion (or to none)."""

    steps: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    refused: bool = False

    def summary(self) -> str:
        return "; ".join(self.steps)


class RefreshJob:
    """``inmarket refresh``: built from the settings sections it needs, run on one data
    (without ``sink``: files only)."""

    def __init__(
        self,
        data: DataSettings,
        features: FeatureSettings,
        train: TrainSettings,
        tracking: TrackingSettings,
        promotion: PromotionSettings,
        refresh: RefreshSettings,
        sink: SinkSettings | None = None,
        alerts: AlertSettings | None = None,
    ) -> None:
        self.data, self.feature_settings, self.train = data, features, train
        self.tracking, self.promotion, self.refresh = tracking, promotion, refresh
        self.sink = Sink(sink) if sink and sink.to else None
        self.alerts = alerts or AlertSettings()  # not in ``settings()``: alerts change no score
        self._changes: dict[str, Any] | None = None  # the last scoring's, alerted by ``run``
        self._started: datetime | None = None  # when the first scoring of this refresh began
        self.outcome = Outcome()  # filled as the steps are done: a failure can say what was

    @property
    def name(self) -> str:
        return self.tracking.model_name

    def settings(self) -> str:
        """The digest of every section the job runs with."""
        return settings_digest(
            {
                "data": self.data,
                "features": self.feature_settings,
                "train": self.train,
                "tracking": self.tracking,
                "promotion": self.promotion,
                "refresh": self.refresh,
            }
        )

    def run(self, data: TableSource | str | Path | None, out: Path) -> Outcome:
        """Validate, score, retrain when due, gate, score again when promoted (module doc); a
        tracking server that gives no answer on the way is ``TrackingUnreachable``. With
        ``[sink] to``, the database is checked first, and at the end holds the run left
        published (a run a failed write left out is written then)."""
        if self.sink is not None:
            self.sink.check()
        with reaching(resolved_uri(self.tracking)):
            self._run(data, out)
        if self._changes is not None:  # once, after the last scoring: never a replaced model's
            delivery = send_alerts(out, self._changes, self.alerts)
            if delivery is not None:
                said = self.outcome.steps if delivery.failure is None else self.outcome.warnings
                said.append(delivery.in_words())
        self._to_database(open_source(data, self.data), out, self._started)
        return self.outcome

    def _run(self, data: TableSource | str | Path | None, out: Path) -> Outcome:
        said = self.outcome.steps
        source = open_source(data, self.data)
        record = {"data": data_identity(source, self.data), "settings": self.settings()}
        client = connect(self.tracking)
        champion = version_by_alias(client, self.name, CHAMPION)
        reasons, why_not = self.reasons(client, champion, record["data"], source)
        scored = _scored(out, record, champion)
        if scored and not reasons:
            done = f"already scored with v{champion.version} into {out}" if champion else ""
            said.append(
                f"nothing to do: {source.name} (data {record['data']}) "
                + (done or "has no champion to score it: nothing scored")
            )
            said.append(why_not)
            self.outcome.refused = champion is None
            return self.outcome
        self._validate(source)
        if champion is None:
            said.append("no champion: nothing scored")
        elif scored:
            said.append(f"scores of this data by v{champion.version} already in {out}")
        else:
            self._score(source, out, str(champion.version), record)
        if not reasons:
            said.append(why_not)
            self.outcome.refused = champion is None
        else:
            self._challenger(client, champion, source, record, reasons)
            decision = promote(client, self.name, settings=self.promotion)
            verdict = "promoted" if decision.promoted else "refused by the gate"
            said.append(f"v{decision.version} {verdict}: {decision.reason}")
            if decision.promoted:
                self._score(source, out, str(decision.version), record)
            self.outcome.refused = not decision.promoted
        if champion is None and self.outcome.refused:  # recorded, so the next run is idle
            _write_state(out, {**record, "model_version": None})
        return self.outcome

    def reasons(
        self,
        client: MlflowClient,
        champion: ModelVersion | None,
        identity: str,
        source: TableSource,
    ) -> tuple[list[str], str]:
        """Why a retrain is due, measured against the basis (module doc; none: not due), and
        the words for a retrain not due."""
        basis = self._basis(client, champion)
        if basis is None:
            return ["no champion yet"], ""
        stamp, _ = source.export_time(self.data.extracted_at)
        data_until = newest_labelled(stamp or datetime.now(UTC), self.train)
        try:
            test_as_of = client.get_run(str(basis.run_id)).data.params.get("test_as_of", "")
        except MlflowException:  # the run was deleted since: its windows are unknown
            test_as_of = ""
        until = test_as_of.rpartition("..")[2]
        windows = (data_until - pd.Timestamp(until, tz="UTC")).days if until else 0
        windows //= self.train.every_days
        age = (datetime.now(UTC).timestamp() * 1000 - basis.creation_timestamp) / _DAY_MS
        on_this_data = basis.tags.get(REFRESH_DATA) == identity
        after = self.refresh.retrain_after_days
        reasons = []
        if windows > 0:
            reasons.append(
                f"{windows} new labelled window(s): labelled snapshots to {data_until:%Y-%m-%d},"
                f" v{basis.version}'s to {until}"
            )
        if age > after and not on_this_data:
            reasons.append(f"v{basis.version} registered {age:.1f} days ago, past {after}")
        facts = [
            *(["refused by the gate"] if basis is not champion else []),
            "trained on this data" if on_this_data else f"registered {age:.1f} days ago",
        ]
        why_not = (
            f"no retrain due: v{basis.version} ({', '.join(facts)}) has labelled snapshots to "
            f"{until or 'unknown'}, the data to {data_until:%Y-%m-%d} (a retrain comes with a "
            f"new window every {self.train.every_days} days, or after {after} days)"
        )
        return reasons, why_not

    def _basis(self, client: MlflowClient, champion: ModelVersion | None) -> ModelVersion | None:
        """The project's newest model: the newest challenger the gate refused after the
        champion was registered, else the champion."""
        floor = int(champion.version) if champion is not None else 0
        refused = [
            v
            for v in client.search_model_versions(f"name = '{self.name}'")
            if int(v.version) > floor and v.tags.get("promotion") == "refused"
        ]
        return max(refused, key=lambda v: int(v.version), default=champion)

    def _validate(self, source: TableSource) -> None:
        """Every table read and checked: data that loses rows, holds no usable event, or
        whose export time is the clock's long after every table ends is refused."""
        report = load_dataset(source, self.data).report
        for refused in (report.unreconciled(), report.without_events()):
            if refused:
                raise ContractError(refused)
        if stale := report.check_export_time():
            self.outcome.warnings.append(stale)
        used = sum(t.rows_used for t in report.tables.values())
        rejected = sum(t.rows_rejected for t in report.tables.values())
        self.outcome.steps.append(
            f"validated {source.name} (export {report.extracted_at:%Y-%m-%d}): {used:,} rows "
            f"used, {rejected:,} rejected"
        )

    def _score(self, source: TableSource, out: Path, version: str, record: dict[str, str]) -> None:
        """Score with ``version`` into ``out`` (one published run), record it and say what
        changed; ``run`` alerts and writes the database once the last scoring is done."""
        self._started = self._started or datetime.now(UTC)
        uri = version_uri(self.name, version)
        result = score_batch(
            load_model(uri), source, out, self.data, self.feature_settings, model_uri=uri
        )
        self.outcome.warnings += result.warnings
        _write_state(out, {**record, "model_version": version})
        prospects = int((result.ranked["status"] == "prospect").sum())
        self.outcome.steps.append(f"scored {prospects:,} prospects with v{version} into {out}")
        self.outcome.steps.append(changes_in_words(result.changes))
        self._changes = result.changes

    def _to_database(self, source: TableSource, out: Path, started: datetime | None = None) -> None:
        """Write the run published at ``out`` to the database of ``[sink] to``, unless there is
        none or the database holds it already."""
        if self.sink is None or published(out) is None:
            return
        written = self.sink.write(out, RunFacts(source.uri, started))
        if not written.before:
            self.outcome.steps.append(written.summary())

    def _challenger(
        self,
        client: MlflowClient,
        champion: ModelVersion | None,
        source: TableSource,
        record: dict[str, str],
        reasons: list[str],
    ) -> None:
        """Make the challenger to put through the gate: one a killed refresh trained on this
        data and settings and never gated, else a new one, trained now and tagged with both."""
        waiting = version_by_alias(client, self.name, CHALLENGER)
        floor = int(champion.version) if champion is not None else 0
        due = "; ".join(reasons)
        if (
            waiting is not None
            and int(waiting.version) > floor
            and waiting.tags.get(REFRESH_DATA) == record["data"]
            and waiting.tags.get(REFRESH_SETTINGS) == record["settings"]
            and "promotion" not in waiting.tags
            and client.get_run(str(waiting.run_id)).info.status
            == RunStatus.to_string(RunStatus.FINISHED)
        ):
            self.outcome.steps.append(
                f"retrain due ({due}): v{waiting.version}, trained on this data by a refresh "
                "that ended before the gate, goes to the gate"
            )
            return
        job = TrainJob(self.data, self.feature_settings, self.train, self.tracking, self.promotion)
        result = job.run(source)
        client.set_model_version_tag(self.name, result.version, REFRESH_DATA, record["data"])
        client.set_model_version_tag(
            self.name, result.version, REFRESH_SETTINGS, record["settings"]
        )
        self.outcome.warnings += result.warnings
        self.outcome.steps.append(f"retrained ({due}) as v{result.version}")


def _write_state(out: Path, state: dict[str, Any]) -> None:
    """Record what the outputs at ``out`` now are, with the run published there."""
    run = published(out)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    state = {**state, "run": run.manifest["run"] if run else None, "recorded_at": stamp}
    write_json_atomic(state, sidecar(out, STATE))


def _scored(out: Path, record: dict[str, str], champion: ModelVersion | None) -> bool:
    """Whether the outputs at ``out`` are the champion's scores of this data and settings (or,
    with no champion, nothing), as the last refresh recorded them, and still published."""
    try:
        state = json.loads(sidecar(out, STATE).read_text(encoding="utf-8"))
        run = published(out)
    except (OSError, ValueError, RunError):
        return False
    return (
        isinstance(state, dict)
        and all(state.get(k) == v for k, v in record.items())
        and state.get("model_version") == (str(champion.version) if champion else None)
        and state.get("run") == (run.manifest["run"] if run else None)
    )
