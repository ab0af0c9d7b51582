"""``inmarket refresh`` as a scheduler runs it (issue 25): a second run on the same data does
nothing; a worse challenger is refused (exit 3) and the scores stay the old champion's; refused
data, a bad configuration, an unreachable tracking server and a held lock each end in their one
line and exit code; a refresh killed at any point leaves the outputs and aliases as they were,
and the next one completes. The stores are copies of the session's; two refreshes train."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pandas as pd
import pytest
from mlflow.entities.model_registry import ModelVersion, ModelVersionTag
from mlflow.tracking import MlflowClient

from features.settings import DataSettings, FeatureSettings
from features.sources import open_source
from inmarket.cli_refresh import RefreshExit
from inmarket.config import RefreshSettings
from inmarket.refresh import (
    REFRESH_DATA,
    RefreshJob,
    RefreshRunning,
    data_identity,
    lock_path,
    newest_labelled,
    project_lock,
)
from serving.runs import published
from tests.commands import run_cli, write_csvs
from tests.stores import client_of, copy_store, experiment_id
from tests.worlds import WORLD_SPEC
from training.job import TrainResult
from training.promotion import promote
from training.registry import CHALLENGER, CHAMPION, version_by_alias
from training.settings import PromotionSettings, TrackingSettings, TrainSettings

# the session model's features, so that a retrain compares with it; a quick train
CONFIG = f"""
[features]
windows = {list(WORLD_SPEC.windows)}
intent_delay_days = {WORLD_SPEC.intent_delay_days}

[train]
ablations = false
bootstrap_rounds = 100
"""
OUTPUTS = ("ranked.parquet", "ranked.csv", "ranked.manifest.json", "ranked.refresh.json")


@pytest.fixture(scope="module")
def champion_store(
    trained: tuple[Path, TrainResult], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The session store with its model promoted to champion, made once and copied."""
    store = copy_store(trained[0], tmp_path_factory.mktemp("champion") / "mlruns")
    assert promote(client_of(store), "inmarket").promoted
    return store


@pytest.fixture
def project(champion_store: Path, tmp_path: Path) -> tuple[Path, MlflowClient, str]:
    """A copy of the champion store, a client of it and the champion's version."""
    store = copy_store(champion_store, tmp_path / "mlruns")
    client = client_of(store)
    return store, client, str(client.get_model_version_by_alias("inmarket", CHAMPION).version)


def _config(folder: Path, extra: str = "") -> Path:
    path = folder / "inmarket.toml"
    path.write_text(CONFIG + extra, encoding="utf-8")
    return path


def _refresh(config: Path, data: Path, out: Path, store: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("--config", config, "refresh", data, "--out", out, "--store", store)


def _what(client: MlflowClient) -> tuple[list[str], list[str]]:
    """The store's runs and model versions."""
    runs = client.search_runs([experiment_id(client)])
    versions = client.search_model_versions("name = 'inmarket'")
    return sorted(r.info.run_id for r in runs), sorted(v.version for v in versions)


def _scored_by(out: Path) -> set[str]:
    """The model versions of the published run: its manifest's and its list's rows'."""
    run = published(out)
    assert run is not None
    listed = set(pd.read_parquet(out)["model_version"].dropna())
    return {str(run.manifest["model_version"]), *listed}


def _files(out: Path) -> dict[str, tuple[int, int, bytes]]:
    """Each output file's inode, modification time and bytes."""
    found = {}
    for name in OUTPUTS:
        stat = (out.parent / name).stat()
        found[name] = (stat.st_ino, stat.st_mtime_ns, (out.parent / name).read_bytes())
    return found


def _summary(done: subprocess.CompletedProcess[str]) -> str:
    """The one line a refresh prints."""
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("refresh: "), done.stdout + done.stderr
    return lines[0]


# ---- the retrain's clock and the data's identity, on their own


@pytest.mark.parametrize("hour", [0, 9, 23])
@pytest.mark.parametrize("every_days,horizon_days", [(14, 90), (7, 30), (30, 7)])
def test_the_newest_labelled_snapshot_is_the_last_whose_window_closed(
    hour: int, every_days: int, horizon_days: int
) -> None:
    # given an export time and a training grid
    export = pd.Timestamp(f"2025-06-30 {hour:02d}:30", tz="UTC")
    train = TrainSettings(every_days=every_days, horizon_days=horizon_days)
    # when the newest labelled snapshot is worked out
    newest = newest_labelled(export.to_pydatetime(), train)
    # then it is on the grid anchored at the export day, its label window has closed by the
    # export time, and the next snapshot's has not
    assert (export.floor("D") - newest).days % every_days == 0
    assert newest + pd.Timedelta(days=horizon_days) <= export
    assert newest + pd.Timedelta(days=every_days + horizon_days) > export


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """A folder holding the four required tables (two rows each): enough to be a source."""
    accounts = pd.DataFrame({"account_id": ["a1", "a2"], "name": ["Acme", "Beta"]})
    tables = ("accounts", "people", "events", "opportunities")
    return write_csvs(tmp_path / "data", dict.fromkeys(tables, accounts))


def test_the_data_identity_changes_with_a_byte_of_a_table_or_the_export_time(
    tiny_data: Path,
) -> None:
    # given a folder of tables and its identity
    given = DataSettings(extracted_at=datetime(2025, 6, 30))
    first = data_identity(open_source(tiny_data, given), given)
    # when nothing changes, one byte of a table changes, or the export time given changes
    same = data_identity(open_source(tiny_data, given), given)
    later = DataSettings(extracted_at=datetime(2025, 7, 1))
    moved = data_identity(open_source(tiny_data, later), later)
    accounts = pd.read_csv(tiny_data / "accounts.csv")
    write_csvs(tiny_data, {"accounts": accounts.replace("Acme", "Acmf")})
    edited = data_identity(open_source(tiny_data, given), given)
    # then only a change makes another identity
    assert first == same
    assert len({first, moved, edited}) == 3


def test_a_renamed_partition_folder_is_other_data(tiny_data: Path) -> None:
    """Found in review: a Parquet folder's files counted by name only, but its hive folders are
    columns: ``region=EU/`` renamed ``region=FR/`` was the same data to a refresh."""
    # given the events as a Parquet folder partitioned by a hive folder, and its identity
    given = DataSettings(extracted_at=datetime(2025, 6, 30))
    events = pd.read_csv(tiny_data / "events.csv")
    (tiny_data / "events.csv").unlink()
    (tiny_data / "events" / "batch=a").mkdir(parents=True)
    events.to_parquet(tiny_data / "events" / "batch=a" / "part-0.parquet", index=False)
    first = data_identity(open_source(tiny_data, given), given)
    # when only the folder's name changes
    (tiny_data / "events" / "batch=a").rename(tiny_data / "events" / "batch=b")
    renamed = data_identity(open_source(tiny_data, given), given)
    # then it is another identity
    assert renamed != first


class _Registry:
    """The two registry reads a retrain decision makes: versions, and a run's ``test_as_of``."""

    def __init__(self, until: pd.Timestamp, versions: list[ModelVersion]) -> None:
        self.until, self.versions = until, versions

    def search_model_versions(self, filter_string: str) -> list[ModelVersion]:
        return self.versions

    def get_run(self, run_id: str) -> SimpleNamespace:
        params = {"test_as_of": f"2024-01-01..{self.until:%Y-%m-%d}"}
        return SimpleNamespace(data=SimpleNamespace(params=params))


def _version(version: str, days_ago: float, **tags: str) -> ModelVersion:
    registered = (time.time() - days_ago * 86_400) * 1000
    listed = [ModelVersionTag(k, v) for k, v in tags.items()]
    return ModelVersion("inmarket", version, int(registered), run_id=f"run{version}", tags=listed)


@pytest.mark.parametrize(
    "later_days,days_ago,tags,due",
    [
        (0, 1, {}, []),
        (13, 1, {}, []),
        (14, 1, {}, ["1 new labelled window(s)"]),
        (29, 1, {}, ["2 new labelled window(s)"]),
        (0, 31, {}, ["registered 31.0 days ago, past 30"]),
        (0, 31, {REFRESH_DATA: "this data"}, []),
        (14, 31, {REFRESH_DATA: "this data"}, ["1 new labelled window(s)"]),
    ],
)
def test_a_retrain_is_due_at_a_new_labelled_window_or_past_the_age(
    tiny_data: Path, later_days: int, days_ago: float, tags: dict[str, str], due: list[str]
) -> None:
    # given a champion trained on an export of 2025-06-30 and registered days_ago, and an
    # export of later_days after it
    train = TrainSettings()
    until = newest_labelled(datetime(2025, 6, 30, 9, tzinfo=UTC), train)
    data = DataSettings(extracted_at=datetime(2025, 6, 30, 9) + timedelta(days=later_days))
    job = _job(data, train)
    champion = _version("1", days_ago, **tags)
    registry = cast(MlflowClient, _Registry(until, [champion]))
    # when the job works out whether a retrain is due
    reasons, why_not = job.reasons(registry, champion, "this data", open_source(tiny_data, data))
    # then it is due at each window of every_days with outcomes the champion has not seen, or
    # when the champion is older than retrain_after_days unless trained on this very data
    assert [r.split(":")[0].split(" (")[0] for r in reasons] == [
        d if "window" in d else f"v1 {d}" for d in due
    ], reasons
    assert why_not.startswith("no retrain due: v1")


def test_a_refused_challenger_is_the_basis_so_a_refusal_is_not_retried(tiny_data: Path) -> None:
    # given a champion registered 40 days ago and a challenger the gate refused a day ago, on
    # labelled snapshots two windows newer
    train = TrainSettings()
    data = DataSettings(extracted_at=datetime(2025, 6, 30, 9))
    until = newest_labelled(datetime(2025, 6, 30, 9, tzinfo=UTC), train)
    champion = _version("3", 40)
    refused = _version("5", 1, promotion="refused", promotion_reason="is worse")
    other = _version("4", 2, promotion="refused")
    registry = cast(MlflowClient, _Registry(until, [champion, other, refused]))
    # when the job works out whether a retrain is due
    reasons, why_not = _job(data, train).reasons(
        registry, champion, "this data", open_source(tiny_data, data)
    )
    # then it is not: the newest model is the refused one, a day old, on the same windows
    assert reasons == []
    assert why_not.startswith("no retrain due: v5 (refused by the gate, registered 1.0 days")


def _job(data: DataSettings, train: TrainSettings) -> RefreshJob:
    return RefreshJob(
        data,
        FeatureSettings(),
        train,
        TrackingSettings(),
        PromotionSettings(),
        RefreshSettings(retrain_after_days=30),
    )


def test_the_lock_names_its_holder_and_is_released_when_its_holder_is_killed(
    tmp_path: Path,
) -> None:
    tracking = TrackingSettings(store=tmp_path / "mlruns")
    # given the project's lock held here, a second taker is refused, naming this process
    held = pytest.raises(RefreshRunning, match=f"pid {os.getpid()} on")
    with project_lock(tracking), held, project_lock(tracking):
        pass
    # given the lock held by a process killed with SIGKILL (no clean-up of its own)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            "handle = open(sys.argv[1], 'a+')\n"
            "fcntl.flock(handle, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(600)\n",
            str(lock_path(tracking)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    with pytest.raises(RefreshRunning), project_lock(tracking):
        pass
    holder.kill()
    holder.wait()
    # then the next taker gets it
    with project_lock(tracking) as path:
        assert path == lock_path(tracking)


# ---- the command


def test_a_bad_configuration_exits_2_in_one_line(tmp_path: Path) -> None:
    # given a [refresh] section with a negative age, and one with an unknown key
    for section, where in (
        ("retrain_after_days = -1", "refresh.retrain_after_days"),
        ("retrain_every = 3", "refresh.retrain_every"),
    ):
        config = _config(tmp_path, f"\n[refresh]\n{section}\n")
        # when a refresh runs with it
        done = _refresh(config, tmp_path, tmp_path / "out" / "ranked.parquet", tmp_path / "m")
        # then it exits 2 with one line naming the setting, and writes nothing
        assert done.returncode == RefreshExit.CONFIG_ERROR, done.stderr
        assert done.stderr.startswith("error: invalid configuration") and where in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and not done.stdout
        assert not (tmp_path / "out").exists()


def test_an_unforeseen_error_or_an_unwritable_lock_is_not_data_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in review: any error but the user's exited 1, "data refused", with a traceback
    (a lock file of another user, a run the server deleted), and the data team was paged."""
    from click.testing import CliRunner

    from inmarket import refresh as job_module
    from inmarket.cli import cli

    def crash(*args: object) -> None:
        raise RuntimeError("a fault nobody foresaw")

    args = ["refresh", str(tmp_path), "--store", str(tmp_path / "m")]
    # given a refresh whose job crashes, and one whose lock file it may not open
    monkeypatch.setattr(job_module.RefreshJob, "run", crash)
    crashed = CliRunner().invoke(cli, args, obj={})
    monkeypatch.setattr(job_module, "lock_path", lambda tracking: tmp_path / "no" / "such" / "x")
    locked = CliRunner().invoke(cli, args, obj={})
    # then the crash exits 70 with its traceback and one line saying to report it, and the
    # lock exits 2 (configuration) naming the file and what to do
    assert crashed.exit_code == RefreshExit.UNFORESEEN, crashed.output
    assert (
        "Traceback" in crashed.stderr and "RuntimeError: a fault nobody foresaw" in crashed.stderr
    )
    assert crashed.stderr.strip().splitlines()[-1].startswith("error: refresh stopped on an")
    assert locked.exit_code == RefreshExit.CONFIG_ERROR, locked.output
    (line,) = locked.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot open the refresh lock {tmp_path / 'no'}"), line


def test_refused_data_exits_1_in_one_line_and_scores_nothing(
    champion_store: Path, world_dir: Path, tmp_path: Path
) -> None:
    # given the world with its events' event_type column dropped
    data = tmp_path / "data"
    shutil.copytree(world_dir, data)
    events = pd.read_parquet(data / "events.parquet").drop(columns="event_type")
    events.to_parquet(data / "events.parquet", index=False)
    store = copy_store(champion_store, tmp_path / "mlruns")
    # when a refresh runs on it
    done = _refresh(_config(tmp_path), data, tmp_path / "out" / "ranked.parquet", store)
    # then it exits 1 with one line naming the table and column, and scores nothing
    assert done.returncode == RefreshExit.DATA_REFUSED, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: events") and "event_type" in line, line
    assert not (tmp_path / "out" / "ranked.parquet").exists()


def test_an_unreachable_tracking_server_exits_4_in_one_line(
    world_dir: Path, tmp_path: Path
) -> None:
    # given a tracking URI on a port of this machine nothing listens on
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = _config(tmp_path, f'\n[tracking]\nuri = "http://127.0.0.1:{port}"\n')
    # when a refresh runs against it
    began = time.monotonic()
    done = _refresh(config, world_dir, tmp_path / "out" / "ranked.parquet", tmp_path / "m")
    # then it exits 4 with one line naming the server, soon, and writes nothing
    assert done.returncode == RefreshExit.TRACKING_UNREACHABLE, done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    assert f"127.0.0.1:{port}" in line and "Traceback" not in done.stderr
    assert time.monotonic() - began < 120  # bounds a hang (MLflow's retries), not a speed
    assert not (tmp_path / "out").exists()


def test_a_refresh_while_another_holds_the_lock_exits_5_naming_it(
    champion_store: Path, world_dir: Path, tmp_path: Path
) -> None:
    # given the project's lock held by this process
    store = copy_store(champion_store, tmp_path / "mlruns")
    out = tmp_path / "out" / "ranked.parquet"
    with project_lock(TrackingSettings(store=store)):
        # when a refresh of the same project runs
        done = _refresh(_config(tmp_path), world_dir, out, store)
    # then it exits 5 with one line naming the holder, and does nothing
    assert done.returncode == RefreshExit.RUNNING, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert f"another refresh of model 'inmarket' is running (pid {os.getpid()} on" in line
    assert not out.parent.exists()


@pytest.mark.slow
def test_a_second_refresh_on_the_same_data_does_nothing(
    project: tuple[Path, MlflowClient, str], world_dir: Path, tmp_path: Path
) -> None:
    # given a store whose champion was trained on the world, and a refresh that scored it
    store, client, champion = project
    out, config = tmp_path / "out" / "ranked.parquet", _config(tmp_path)
    first = _refresh(config, world_dir, out, store)
    assert first.returncode == RefreshExit.DONE, first.stderr
    line = _summary(first)
    assert f"prospects with v{champion} into {out}" in line and "no retrain due" in line
    assert _scored_by(out) == {champion}
    files, store_had = _files(out), _what(client)
    # when the same refresh runs again
    second = _refresh(config, world_dir, out, store)
    # then it exits 0 saying there was nothing to do: no run, no version, no file written
    assert second.returncode == RefreshExit.DONE, second.stderr
    assert _summary(second).startswith(f"refresh: nothing to do: {world_dir.name} (data ")
    assert f"already scored with v{champion} into {out}" in second.stdout
    assert _files(out) == files
    assert _what(client) == store_had


# `inmarket refresh`, killed with SIGKILL at a chosen point: after it published its scores
# ("scored"), when the model's fitting starts ("training"), when it calls the gate ("trained"),
# or right after the gate's decision ("gated")
_KILLED_AT = """
import os, signal, sys
from inmarket import refresh
from inmarket.cli import main
from training import job

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

def then_die(call):
    def called(*args, **kwargs):
        call(*args, **kwargs)
        die()
    return called

point = sys.argv[1]
if point == "scored":
    refresh.score_batch = then_die(refresh.score_batch)
elif point == "training":
    job.fit_model = die
elif point == "trained":
    refresh.promote = die
elif point == "gated":
    refresh.promote = then_die(refresh.promote)
sys.argv = ["inmarket", *sys.argv[2:]]
main()
"""


def _killed_at(point: str, config: Path, data: Path, out: Path, store: Path) -> None:
    args = ["--config", config, "refresh", data, "--out", out, "--store", store]
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_AT, point, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]


@pytest.mark.slow
def test_after_killed_refreshes_a_worse_challenger_is_refused_with_the_old_champions_list(
    project: tuple[Path, MlflowClient, str], world_dir: Path, tmp_path: Path
) -> None:
    # given a champion, and settings that train on shuffled labels with a retrain due at once
    store, client, champion = project
    # (CONFIG ends in its [train] section)
    config = _config(tmp_path, "shuffle_labels = true\n\n[refresh]\nretrain_after_days = 0\n")
    out = tmp_path / "out" / "ranked.parquet"
    versions = _what(client)[1]
    # when a refresh is killed right after it published its scores, then the next one while
    # its model is being fitted (each holding the project's lock when killed)
    for point in ("scored", "training"):
        _killed_at(point, config, world_dir, out, store)
        # then each time the list is the champion's, whole, and no alias or version moved
        assert _scored_by(out) == {champion}
        assert str(client.get_model_version_by_alias("inmarket", CHAMPION).version) == champion
        assert _what(client)[1] == versions
    # when the next refresh runs to its end
    refused = _refresh(config, world_dir, out, store)
    # then it kept the list it had recorded, retrained because of the champion's age, the
    # gate refused the worse model, it exits 3, and the list is still the old champion's
    assert refused.returncode == RefreshExit.GATE_REFUSED, refused.stderr[-2000:]
    line = _summary(refused)
    assert f"scores of this data by v{champion} already in {out}" in line
    assert f"retrained (v{champion} registered 0.0 days ago, past 0) as v" in line, line
    challenger = line.split("retrained (")[1].split(") as v")[1].split(";")[0]
    assert f"v{challenger} refused by the gate: test PR AUC" in line and "is worse" in line
    assert _scored_by(out) == {champion}
    assert str(client.get_model_version_by_alias("inmarket", CHAMPION).version) == champion
    assert client.get_model_version("inmarket", challenger).tags["promotion"] == "refused"
    # and when it runs again, the refused model (trained on this data) is not retried
    again = _refresh(config, world_dir, out, store)
    assert again.returncode == RefreshExit.DONE, again.stderr
    assert _summary(again).startswith("refresh: nothing to do")
    not_again = f"no retrain due: v{challenger} (refused by the gate, trained on this data)"
    assert not_again in again.stdout


@pytest.mark.slow
def test_a_refresh_killed_before_or_after_the_gate_is_completed_by_the_next(
    trained: tuple[Path, TrainResult], world_dir: Path, tmp_path: Path
) -> None:
    # given a store with no champion
    store = copy_store(trained[0], tmp_path / "mlruns")
    client = client_of(store)
    config, out = _config(tmp_path), tmp_path / "out" / "ranked.parquet"
    # when a refresh trains a first model and is killed as it calls the gate
    _killed_at("trained", config, world_dir, out, store)
    # then there is no champion and no list; the challenger is its model, its run finished
    assert version_by_alias(client, "inmarket", CHAMPION) is None and not out.exists()
    waiting = client.get_model_version_by_alias("inmarket", CHALLENGER)
    assert REFRESH_DATA in waiting.tags and "promotion" not in waiting.tags
    assert client.get_run(str(waiting.run_id)).info.status == "FINISHED"
    runs = _what(client)[0]
    # when the next refresh is killed right after the gate's decision
    _killed_at("gated", config, world_dir, out, store)
    # then it put that challenger through the gate without training again: promoted over the
    # MQL rule, and killed before scoring with it
    champion = version_by_alias(client, "inmarket", CHAMPION)
    assert champion is not None and str(champion.version) == str(waiting.version)
    assert champion.tags["promotion"] == "accepted" and not out.exists()
    assert _what(client)[0] == runs
    # and the next refresh completes: it scores with that champion and does not train again
    done = _refresh(config, world_dir, out, store)
    assert done.returncode == RefreshExit.DONE, done.stderr[-2000:]
    line = _summary(done)
    assert f"prospects with v{champion.version} into {out}" in line
    assert f"no retrain due: v{champion.version} (trained on this data)" in line
    assert _scored_by(out) == {str(champion.version)}
    assert _what(client)[0] == runs
    recorded = json.loads(out.with_name("ranked.refresh.json").read_text())
    assert recorded["model_version"] == str(champion.version)
