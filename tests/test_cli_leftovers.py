"""What a killed or finished command leaves behind (issue 15, leftovers): no worker process of a
killed `features`, no temporary file once the next run is over (a killed train's, MLflow's copy
of the model among them), no temporary test set after `promote`, no promotion of a version whose
training was killed, and (issue 31) never a mix of two
scoring runs after a killed `score`."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from features.settings import DataSettings, FeatureSettings
from inmarket.synthetic import WorldSpec, generate_world
from serving.batch import score_batch
from serving.published import ScoringCache
from tests.commands import run_cli
from tests.processes import children, running
from tests.stores import client_of, copy_store
from training.job import TrainResult
from training.registry import CHALLENGER, load_model, version_by_alias

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


# `inmarket train`, killed with SIGKILL inside MLflow's registration of its model, right after
# the new version is created: its run is left RUNNING, and MLflow's temporary copy of the saved
# model is still on disk
_KILLED_TRAIN = """
import os, signal, sys
from mlflow.tracking._model_registry import fluent
from inmarket.cli import main

register = fluent._register_model

def register_then_die(*args, **kwargs):
    register(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

fluent._register_model = register_then_die
sys.argv = ["inmarket", *sys.argv[1:]]
main()
"""


def test_a_killed_train_is_marked_failed_its_version_removed_and_its_files_too(
    trained: tuple[Path, TrainResult], world_dir: Path, world_features: Path, tmp_path: Path
) -> None:
    # given a store whose challenger is the session model, and a training killed once MLflow
    # registered its version, with its own temporary folder
    store = copy_store(trained[0], tmp_path / "mlruns")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {**os.environ, "TMPDIR": str(temporary)}
    config = tmp_path / "inmarket.toml"
    config.write_text("[train]\nablations = false\nbootstrap_rounds = 100\n", encoding="utf-8")
    args = ["--config", config, "train", world_dir, "--features", world_features, "--store", store]
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_TRAIN, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert sorted(temporary.rglob("MLmodel")), (
        f"no saved model left: {sorted(temporary.rglob('*'))}"
    )
    client = client_of(store)  # (registry too: an earlier test may have set another)
    newest = max(client.search_model_versions("name='inmarket'"), key=lambda v: int(v.version))
    run_id = str(newest.run_id)
    assert str(newest.version) != trained[1].version
    assert client.get_run(run_id).info.status == "RUNNING"
    # and the killed run's version is not the challenger (the alias is set last, once the run
    # has finished and its files are listed)
    challenger = version_by_alias(client, "inmarket", CHALLENGER)
    assert challenger is not None and str(challenger.version) == trained[1].version
    # when `inmarket promote` runs, with the same temporary folder
    promoted = subprocess.run(
        [sys.executable, "-m", "inmarket.cli", "promote", "--store", str(store)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    # then the run is marked FAILED, said in one line, its version deleted, and the challenger
    # that finished is the one judged
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    marked = promoted.stderr.strip().splitlines()[-1]
    assert marked == f"marked 1 run(s) FAILED, left RUNNING by a process that died: {run_id}"
    assert f"inmarket v{trained[1].version} promoted to champion" in promoted.stdout
    assert "Traceback" not in promoted.stderr
    assert client.get_run(run_id).info.status == "FAILED"
    versions = client.search_model_versions("name='inmarket'")
    assert [str(v.version) for v in versions] == [trained[1].version]
    # and the killed run's temporary files, MLflow's copy of the model among them, are gone
    assert sorted(p.name for p in temporary.iterdir()) == []


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


# `inmarket score` on a copy of a folder, killed with SIGKILL right before its first, second, ...
# change of the folder that a reader can see (a file renamed into place, a folder removed; not
# its own temporary files), until a run is not killed. Each run is a fork of one process that
# imported the command once; it prints how each run ended.
_KILLED_SCORES = """
import os, shutil, signal, sys
import inmarket.cli, serving.batch, training.registry  # imported once, before the forks

template, args = sys.argv[1], sys.argv[2:]


def kill_before_change(folder, at):
    seen = 0

    def hook(event, values):
        nonlocal seen
        place = {"os.rename": 1, "shutil.rmtree": 0}.get(event)
        if place is None or not isinstance(values[place], (str, bytes, os.PathLike)):
            return
        path = os.fsdecode(os.fspath(values[place]))
        if path.startswith(folder) and not os.path.basename(path).startswith(".inmarket."):
            seen += 1
            if seen == at:
                os.kill(os.getpid(), signal.SIGKILL)

    return hook


for at in range(1, 30):
    folder = f"{template}-killed-at-{at}"
    shutil.copytree(template, folder)
    child = os.fork()
    if child == 0:
        sys.addaudithook(kill_before_change(folder, at))
        sys.argv = ["inmarket", *(a.replace("{folder}", folder) for a in args)]
        inmarket.cli.main()
        os._exit(0)
    _, status = os.waitpid(child, 0)
    if not os.WIFSIGNALED(status):
        print("run", at, "finished", os.waitstatus_to_exitcode(status), flush=True)
        break
    print("run", at, "killed", os.WTERMSIG(status), flush=True)
"""


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small-world")
    generate_world(WorldSpec(accounts=120, seed=5), out)
    return out


def _digest(frame: pd.DataFrame) -> str:
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()[:12]


def _seen(out: Path) -> dict[str, str]:
    """What a fresh reader (the service's) gets of the scoring at ``out``, file by file."""
    scoring = ScoringCache(out).get()
    assert scoring is not None
    return {
        "list": _digest(scoring.ranked),
        "history": _digest(scoring.history),
        "activity": _digest(scoring.activity),
        "drift": str(scoring.drift and scoring.drift["as_of"]),
        "manifest": str(scoring.manifest and scoring.manifest["as_of"]),
    }


@linux_only
def test_a_killed_score_leaves_one_whole_run_never_a_mix(
    trained: tuple[Path, TrainResult], small_world: Path, tmp_path: Path
) -> None:
    # given a folder where two scorings were published, of the exports of 14 and 7 days ago
    store = copy_store(trained[0], tmp_path / "mlruns")
    uri = trained[1].model_uri
    model = load_model(uri)
    extract = pd.Timestamp(json.loads((small_world / "_extract.json").read_text())["extracted_at"])
    published = tmp_path / "published" / "ranked.parquet"
    for days in (14, 7):
        data = DataSettings(extracted_at=extract - pd.Timedelta(days=days))
        score_batch(model, small_world, published, data, FeatureSettings(), model_uri=uri)
    before = _seen(published)
    # when `inmarket score` of today's export runs on copies of that folder, killed with SIGKILL
    # before its first, second, ... change a reader can see, until a run is not killed
    args = ["score", small_world, "--out", "{folder}/ranked.parquet", "--store", store]
    runs = subprocess.run(
        [
            sys.executable,
            "-c",
            _KILLED_SCORES,
            *map(str, [published.parent, *args, "--model", uri]),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    ended = [line.split()[1:] for line in runs.stdout.splitlines() if line.startswith("run ")]
    assert runs.returncode == 0 and ended[-1][1:] == ["finished", "0"], runs.stderr[-2000:]
    killed = [int(at) for at, how, _ in ended if how == "killed"]
    assert all(int(n) == signal.SIGKILL for _, how, n in ended if how == "killed")
    seen = {
        at: _seen(Path(f"{published.parent}-killed-at-{at}") / "ranked.parquet") for at in killed
    }
    out = Path(f"{published.parent}-killed-at-{len(ended)}") / "ranked.parquet"
    after = _seen(out)
    # then after each kill a fresh reader got the scoring before, whole, or the new one, whole
    assert seen and after != before and set(after.values()).isdisjoint(before.values())
    for at, got in seen.items():
        assert got in (before, after), f"killed before change {at}: {got} mixes runs"
    # and the run that finished left its own run and the one before it, nothing else
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "ranked.csv",
        "ranked.manifest.json",
        "ranked.parquet",
        "ranked.runs",
    ]
    assert len(list(out.with_name("ranked.runs").iterdir())) == 2
