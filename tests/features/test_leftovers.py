"""Workers that die with their parent, and temporary files removed by the next run once their
owner has died (``features.leftovers``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import pytest

from features.io import write_text_atomic
from features.leftovers import die_with_parent, scratch_dir, this_host
from tests.processes import ended_pid, running

# a parent that forks one worker (set up as the feature engine sets up its workers), prints the
# worker's pid and waits to be killed
_PARENT = """
import os, time
from features.leftovers import die_with_parent

parent = os.getpid()
worker = os.fork()
if worker == 0:
    die_with_parent(parent)
    time.sleep(120)
    os._exit(0)
print(worker, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_a_worker_dies_when_its_parent_is_killed() -> None:
    # given a parent process with a worker set up by die_with_parent
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())
    try:
        time.sleep(0.2)  # the worker has called prctl
        assert running(worker)
        # when the parent is killed with SIGKILL (no clean-up of its own)
        parent.kill()
        parent.wait()
        # then the worker is gone within a few seconds
        deadline = time.monotonic() + 5
        while running(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running(worker), f"worker {worker} outlived its killed parent"
    finally:
        if running(worker):
            os.kill(worker, signal.SIGKILL)


@pytest.mark.parametrize(("parent", "exitcode"), [("self", 0), ("another", 1)])
def test_a_worker_whose_parent_died_before_it_started_exits_at_once(
    parent: str, exitcode: int
) -> None:
    # given a worker told its parent is this process, or a process that is not its parent (as
    # when the parent died before the worker could ask to die with it)
    expected = os.getpid() if parent == "self" else ended_pid()
    worker = get_context("fork").Process(target=die_with_parent, args=(expected,))
    # when it starts
    worker.start()
    worker.join(10)
    # then it runs on only under its real parent
    assert worker.exitcode == exitcode


def test_the_next_run_removes_only_what_dead_owners_of_this_host_left(tmp_path: Path) -> None:
    # given what runs left in a folder: a dead owner's temporary file and scratch folder, a
    # living owner's file, another host's folder (its owner cannot be checked) and a file that
    # is not a temporary file of this project
    dead, host = ended_pid(), this_host()
    dead_file = tmp_path / f".inmarket.{dead}@{host}.features.parquet.tmp"
    dead_folder = tmp_path / f".inmarket.{dead}@{host}.features.parquet.buckets.x1"
    living = tmp_path / f".inmarket.{os.getpid()}@{host}.ranked.parquet.tmp"
    elsewhere = tmp_path / f".inmarket.{dead}@{host}-elsewhere.score.x2"
    other = tmp_path / ".features.parquet.123.tmp"
    for path in (dead_file, living, other):
        path.write_text("partial")
    for path in (dead_folder / "bucket=0", elsewhere):
        path.mkdir(parents=True)
    # when a run makes its scratch folder there, and another writes a file there
    with scratch_dir("features.parquet.buckets", tmp_path) as scratch:
        assert scratch.parent == tmp_path and scratch.is_dir()
        assert scratch.name.startswith(f".inmarket.{os.getpid()}@{host}.features.parquet.")
    dead_file.write_text("partial")
    write_text_atomic("done", tmp_path / "report.json")
    # then the dead owners' leftovers are gone, the rest stays, and so does no scratch folder
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [living.name, elsewhere.name, other.name, "report.json"]
    )


def test_a_scratch_folder_is_removed_when_the_run_fails(tmp_path: Path) -> None:
    # given a run that fails while its scratch folder holds a file
    with pytest.raises(RuntimeError, match="boom"), scratch_dir("score", tmp_path) as scratch:
        (scratch / "features.parquet").write_text("partial")
        raise RuntimeError("boom")
    # then nothing is left
    assert list(tmp_path.iterdir()) == []
