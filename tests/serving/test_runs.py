"""A scoring run's files as one unit (serving/runs.py): written apart, published by one rename of
the manifest, read back only as the manifest names them (issue 31)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from features.leftovers import this_host
from serving.runs import RunError, new_run, published
from tests.processes import ended_pid


def _publish(out: Path, text: str) -> dict[str, object]:
    """A run whose list, CSV and history hold ``text``."""
    with new_run(out) as run:
        for path in (run.path(), run.path().with_suffix(".csv"), run.path("history.parquet")):
            path.write_text(text, encoding="utf-8")
        return run.publish({"as_of": text})


def _runs(out: Path) -> list[str]:
    return sorted(p.name for p in out.with_name("ranked.runs").iterdir())


def test_a_run_is_published_whole_and_the_one_before_is_kept(tmp_path: Path) -> None:
    # given three runs published one after the other
    out = tmp_path / "ranked.parquet"
    first, second, third = (_publish(out, text) for text in ("one", "two", "three"))
    # when the published run is read
    run = published(out)
    # then it is the third, each of its files as its manifest names it (size and SHA-256), the
    # list and CSV beside the manifest are its copies, and only the run before is kept
    assert run is not None and run.manifest == third
    assert json.loads(out.with_name("ranked.manifest.json").read_text()) == third
    files = third["files"]
    assert isinstance(files, dict)
    assert set(files) == {"ranked.parquet", "ranked.csv", "ranked.history.parquet"}
    for name in ("ranked.parquet", "ranked.csv", "ranked.history.parquet"):
        data = run.read(name)
        assert data == b"three" and run.manifest["files"][name] == {
            "bytes": 5,
            "sha256": hashlib.sha256(b"three").hexdigest(),
        }
    assert out.read_text() == out.with_suffix(".csv").read_text() == "three"
    assert _runs(out) == sorted(Path(str(m["run"])).name for m in (second, third))
    assert str(first["run"]) != str(second["run"])


def test_a_file_changed_after_publishing_is_refused_by_name(tmp_path: Path) -> None:
    # given a published run whose history was then overwritten in place
    out = tmp_path / "ranked.parquet"
    _publish(out, "one")
    run = published(out)
    assert run is not None
    (run.folder / "ranked.history.parquet").write_text("onf", encoding="utf-8")
    # when it is read, the list still is, the history is refused, naming the file
    assert run.read("ranked.parquet") == b"one"
    with pytest.raises(RunError, match=r"ranked.history.parquet of run .* is not the file its"):
        run.read("ranked.history.parquet")


def test_a_list_without_a_manifest_is_refused_and_nothing_is_none(tmp_path: Path) -> None:
    out = tmp_path / "ranked.parquet"
    assert published(out) is None
    out.write_bytes(b"PAR1 written by hand")
    with pytest.raises(RunError, match=r"ranked.parquet has no manifest \(ranked.manifest.json\)"):
        published(out)
    # a manifest of before run folders (its files a list, no run) is refused in words too
    out.with_name("ranked.manifest.json").write_text(json.dumps({"files": ["ranked.parquet"]}))
    with pytest.raises(RunError, match=r"ranked\.manifest\.json names no run folder"):
        published(out)


def test_a_run_that_fails_is_not_published_and_leaves_nothing(tmp_path: Path) -> None:
    # given a published run, and a second one failing while it writes
    out = tmp_path / "ranked.parquet"
    before = _publish(out, "one")
    with pytest.raises(RuntimeError), new_run(out) as run:
        run.path().write_text("two", encoding="utf-8")
        raise RuntimeError("the model failed")
    # then the first is still the published run and no folder of the second is left
    assert json.loads(out.with_name("ranked.manifest.json").read_text()) == before
    assert _runs(out) == [Path(str(before["run"])).name]


def test_the_folder_of_a_killed_run_is_removed_by_the_next(tmp_path: Path) -> None:
    # given the folder of a run whose writer died before publishing it
    out = tmp_path / "ranked.parquet"
    left = out.with_name("ranked.runs") / f".inmarket.{ended_pid()}@{this_host()}.run.x"
    left.mkdir(parents=True)
    (left / "ranked.parquet").write_text("half", encoding="utf-8")
    # when the next run is published
    done = _publish(out, "two")
    # then only that run is left
    assert _runs(out) == [Path(str(done["run"])).name]


def test_a_publication_removes_only_runs_older_than_the_one_before(tmp_path: Path) -> None:
    # given a published run, a run older than it (left by a crash after its own publication)
    # and a newer one another `score` has named but not yet published
    out = tmp_path / "ranked.parquet"
    before = Path(str(_publish(out, "one")["run"])).name
    runs = out.with_name("ranked.runs")
    older, newer = "20000101T000000000000Z-00000000", "99991231T235959999999Z-00000000"
    for name in (older, newer):
        (runs / name).mkdir()
    # when the next run is published
    done = Path(str(_publish(out, "two")["run"])).name
    # then the older run is gone; the run before and the one not yet published stay
    assert _runs(out) == sorted([before, done, newer])
