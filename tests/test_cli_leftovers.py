"""What a killed or finished command leaves behind (issue 15, leftovers): no worker process of a
killed `features`, no temporary file once the next run is over, no temporary test set after
`promote`, and no promotion of a version whose training was killed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.commands import run_cli
from tests.processes import children, running
from tests.stores import client_of, copy_store
from training.job import TrainResult
from training.registry import CHALLENGER, CHAMPION, version_by_alias

pytestmark = pytest.mark.slow
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc; workers die by prctl")

FEATURE_FILES = ["features.parquet", "features.rejects.parquet", "features.report.json"]


@pytest.fixture
def killed_features(world_dir: Path, tmp_path: Path) -> Iterator[tuple[set[int], Path, Path]]:
    """`inmarket features` with two workers, killed with SIGKILL while they work: the workers'
    pids, the configuration file and the output path. Workers still alive after the test are
    killed, so a failing test does not leave them running."""
    config = tmp_path / "inmarket.toml"
    config.write_text("[features]\nworkers = 2\nbuckets = 8\n", encoding="utf-8")
    out = tmp_path / "out" / "features.parquet"
    args = ["--config", config, "features", world_dir, "--out", out, "--all-history"]
    run = subprocess.Popen(
        [sys.executable, "-m", "inmarket.cli", *map(str, [*args, "--every-days", "7"])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: set[int] = set()
    deadline = time.monotonic() + 120
    while len(workers) < 2 and run.poll() is None and time.monotonic() < deadline:
        workers = children(run.pid)
        time.sleep(0.02)
    run.kill()
    run.wait()
    try:
        assert len(workers) == 2, f"saw workers {workers} before the run ended ({run.returncode})"
        yield workers, config, out
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@linux_only
def test_killed_features_leaves_no_worker_running(
    killed_features: tuple[set[int], Path, Path],
) -> None:
    # given `inmarket features` killed with SIGKILL while its two workers build buckets
    workers, _, _ = killed_features
    # when a few seconds pass
    deadline = time.monotonic() + 5
    while any(running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    # then no worker is left running
    assert not [pid for pid in workers if running(pid)], "workers outlived the killed run"


@linux_only
def test_the_next_features_run_removes_the_killed_runs_files(
    killed_features: tuple[set[int], Path, Path], world_dir: Path
) -> None:
    # given the bucket files a killed `inmarket features` left beside its output
    _, config, out = killed_features
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")]
    # when `inmarket features` runs again to the same output
    again = run_cli("--config", config, "features", world_dir, "--out", out, "--snapshots", "2")
    # then it succeeds and nothing but its three files is left
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == FEATURE_FILES


# `inmarket train`, killed with SIGKILL right after registering its model as the challenger,
# before its MLflow run ends: the case of a run left RUNNING whose version was then promoted
_KILLED_TRAIN = """
import os, signal, sys
from inmarket.cli import main
from training import job

register = job.register_model

def register_then_die(*args, **kwargs):
    register(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

job.register_model = register_then_die
sys.argv = ["inmarket", *sys.argv[1:]]
main()
"""


def test_a_killed_train_is_marked_failed_and_its_version_never_promoted(
    world_dir: Path, world_features: Path, tmp_path: Path
) -> None:
    # given a training killed after it registered the challenger, its run left RUNNING
    store = tmp_path / "mlruns"
    args = ["train", world_dir, "--features", world_features, "--store", store]
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_TRAIN, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    client = client_of(store)  # (registry too: an earlier test may have set another)
    challenger = client.get_model_version_by_alias("inmarket", CHALLENGER)
    run_id = str(challenger.run_id)
    assert client.get_run(run_id).info.status == "RUNNING"
    # when `inmarket promote` runs
    promoted = run_cli("promote", "--store", store)
    # then the run is marked FAILED, said in one line, and the version is refused in one line
    # naming it and its run's status, with exit 2
    assert promoted.returncode == 2, promoted.stdout + promoted.stderr
    marked, refused = promoted.stderr.strip().splitlines()[-2:]
    assert marked == f"marked 1 run(s) FAILED, left RUNNING by a process that died: {run_id}"
    assert refused.startswith(
        f"error: model 'inmarket' version {challenger.version} is not promoted: its training "
        f"run {run_id} is FAILED, not FINISHED"
    )
    assert "Traceback" not in promoted.stderr
    assert client.get_run(run_id).info.status == "FAILED"
    assert version_by_alias(client, "inmarket", CHAMPION) is None


def test_promote_leaves_no_temporary_test_set(
    trained: tuple[Path, TrainResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a champion and a challenger (the same model, registered again), so that promotion
    # compares them on the challenger's test set
    store = copy_store(trained[0], tmp_path / "mlruns")
    assert run_cli("promote", "--store", store).returncode == 0
    client = client_of(store)
    first = client.get_model_version("inmarket", trained[1].version)
    second = client.create_model_version("inmarket", str(first.source), first.run_id)
    client.set_registered_model_alias("inmarket", CHALLENGER, second.version)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    # when `inmarket promote` runs with its own temporary folder
    promoted = run_cli("promote", "--store", store)
    # then it compared the models (the same model gains nothing: refused, exit 1) and left
    # nothing in the temporary folder
    assert promoted.returncode == 1, promoted.stderr
    assert "on the same" in promoted.stdout and "not promoted" in promoted.stdout
    assert sorted(p.name for p in temporary.iterdir()) == []
