"""The published run as the service reads it (serving/published.py): every table of one run, the
account views built on load, the run before kept while the next one is written or is broken."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from features.activity import ACTIVITY_COLUMNS
from inmarket.cli import cli
from serving.published import Scoring, ScoringCache
from serving.review import ListQuery, records, select, summary
from serving.runs import new_run
from tests.serving.test_review import AS_OF, _crm_people, _ranked
from tests.stores import copy_store
from training.job import TrainResult


def _write(out: Path, version: str, *, publish: bool = True, without: tuple[str, ...] = ()) -> None:
    """A run of the four accounts scored by model ``version``, published or only written;
    ``without`` some columns, as an older version wrote it."""
    ranked = _ranked().drop(columns=["_name", "_domain", *without]).assign(model_version=version)
    history = ranked[["account_id", "as_of", "score", "stage", "probability"]]
    with new_run(out) as run:
        ranked.to_parquet(run.path())
        ranked.drop(columns=["reasons"]).to_csv(run.path().with_suffix(".csv"))
        history.to_parquet(run.path("history.parquet"))
        pd.DataFrame(columns=ACTIVITY_COLUMNS).to_parquet(run.path("activity.parquet"))
        pd.DataFrame({"account_id": ["A2"], "opportunity_id": [f"O{version}"]}).to_parquet(
            run.path("opportunities.parquet")
        )
        _crm_people().to_parquet(run.path("people.parquet"))
        run.path("drift.json").write_text(json.dumps({"model": version}), encoding="utf-8")
        if publish:
            meta = {"model": f"models:/inmarket/{version}", "model_version": version}
            run.publish({**meta, "as_of": str(AS_OF)})


def _version(scoring: Scoring | None) -> set[str]:
    assert scoring is not None
    return {
        *scoring.ranked["model_version"],
        scoring.manifest["model_version"] if scoring.manifest else None,  # type: ignore[arg-type]
        scoring.drift["model"] if scoring.drift else None,  # type: ignore[arg-type]
        scoring.opportunities["opportunity_id"].iloc[0][1:],
    }


def test_the_service_takes_a_run_whole_once_it_is_published(tmp_path: Path) -> None:
    # given a run by version 3, read by the cache
    out = tmp_path / "ranked.parquet"
    _write(out, "3")
    cache = ScoringCache(out)
    first = cache.get()
    assert _version(first) == {"3"}
    # when version 4's run is being written (its files are there, not yet published)
    with new_run(out) as run:
        run.path().write_bytes(b"half a list")
        half = cache.get()
    # then the cache keeps version 3's run; it takes version 4's whole once it is published
    assert half is first
    _write(out, "4")
    done = cache.get()
    assert _version(done) == {"4"} and done is not first
    assert done is cache.get()  # read once per run, not per request
    view = done.views().answer("A2")  # type: ignore[union-attr]
    assert view is not None and json.loads(view)["opportunities"] == [{"opportunity_id": "O4"}]


def test_a_run_that_does_not_read_whole_is_not_served(tmp_path: Path) -> None:
    # given version 3's run served, then version 4's published with its history changed after
    out = tmp_path / "ranked.parquet"
    _write(out, "3")
    cache = ScoringCache(out)
    served = cache.get()
    _write(out, "4")
    manifest = json.loads(out.with_name("ranked.manifest.json").read_text())
    history = out.parent / manifest["run"] / "ranked.history.parquet"
    history.write_bytes(history.read_bytes()[:-8])
    # when the service looks
    kept = cache.get()
    # then it keeps serving version 3's run and says which file is wrong, naming no folder
    assert kept is served and cache.error is not None
    assert "ranked.history.parquet of run" in cache.error and str(tmp_path) not in cache.error
    # and takes the next run that reads whole
    _write(out, "5")
    assert _version(cache.get()) == {"5"} and cache.error is None


def test_nothing_published_is_none_and_a_list_alone_is_an_error(tmp_path: Path) -> None:
    out = tmp_path / "ranked.parquet"
    cache = ScoringCache(out)
    assert cache.get() is None and cache.error is None
    out.write_bytes(b"PAR1 not really")
    assert cache.get() is None
    assert cache.error is not None and "has no manifest" in cache.error


def test_the_report_names_the_model_that_scored_the_run(
    trained: tuple[Path, TrainResult], tmp_path: Path
) -> None:
    """Found in review: the report read the model from a drift file beside the list, which a
    run no longer writes there, so it named the champion, maybe not the model that scored."""
    # given a run scored by version 99, and a store without it (a copy: no new store to create)
    ranked = tmp_path / "ranked.parquet"
    _write(ranked, "99")
    # when the report is written
    out, store = str(tmp_path / "r.html"), str(copy_store(trained[0], tmp_path / "mlruns"))
    result = CliRunner().invoke(
        cli, ["report", "--ranked", str(ranked), "--out", out, "--store", store], obj={}
    )
    # then the card is of version 99 (here unreadable, and said so), not of the champion
    assert result.exit_code == 0, result.output
    assert "warning: no model card: cannot read models:/inmarket/99" in result.stderr


def test_a_run_an_older_version_published_reads_with_the_new_columns_empty(tmp_path: Path) -> None:
    out = tmp_path / "ranked.parquet"
    _write(out, "1", without=("stage_before", "score_before", "change"))
    scoring = Scoring.read(out)
    assert scoring is not None
    assert scoring.ranked[["stage_before", "score_before", "change"]].isna().all().all()
    assert select(scoring.ranked, ListQuery(new=True)).empty
    assert len(records(select(scoring.ranked, ListQuery()))) == 4
    assert summary(scoring.ranked)["new_this_period"] == 0
