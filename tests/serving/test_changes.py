"""What changed since the previous period (serving/changes.py): which accounts rose into in-market
or ready and which fell out, against the run published before; the same period scored again
keeps what its run compared with."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from features.io import write_json_atomic
from serving.changes import (
    CHANGES,
    Baseline,
    changes_in_words,
    changes_record,
    compare,
    previous_period,
)
from serving.runs import new_run

MAY, JUNE = "2026-05-02 00:00:00+00:00", "2026-06-01 00:00:00+00:00"


def _list(stages: dict[str, str], scores: dict[str, int] | None = None) -> pd.DataFrame:
    """A ranked list of the given accounts' stages (scores: 50 unless given)."""
    ids = list(stages)
    score = pd.array([(scores or {}).get(a, 50) for a in ids], dtype="Int64")
    return pd.DataFrame(
        {
            "account_id": ids,
            "name": [f"Account {a}" for a in ids],
            "domain": [f"{a.lower()}.com" for a in ids],
            "owner": ["Jane Park" if a < "C" else None for a in ids],
            "stage": list(stages.values()),
            "score": score,
            "top_reasons": "pricing pages",
            "roles_missing": [["finance"] for _ in ids],
        }
    )


def _publish(out: Path, ranked: pd.DataFrame, as_of: str, baseline: Baseline | None) -> None:
    """Publish ``ranked`` at ``out`` as a scoring run of ``as_of`` compared with ``baseline``."""
    ranked = compare(ranked, baseline)
    with new_run(out) as run:
        ranked.to_parquet(run.path(), index=False)
        run.path().with_suffix(".csv").write_text("the list\n", encoding="utf-8")
        write_json_atomic(changes_record(ranked, as_of, baseline, "first"), run.path(CHANGES))
        run.publish({"as_of": as_of})


BEFORE = {
    "A": "engaged",  # -> in-market: rose
    "B": "in-market",  # -> ready: rose (a rise within the worked stages counts)
    "C": "ready",  # -> in-market: still worked, neither
    "D": "ready",  # -> engaged: fell out
    "E": "in-market",  # -> in-pipeline: converted, not fallen (its owner is not told it fell)
    "F": "cold",  # -> aware: no change that matters
}
AFTER = {"A": "in-market", "B": "ready", "C": "in-market", "D": "engaged", "E": "in-pipeline"}


def test_rises_into_in_market_or_ready_and_falls_out_are_told_apart() -> None:
    # given the previous period's stages, and the list now with G new since then
    baseline = Baseline(MAY, "ranked.runs/x", _list(BEFORE, {"D": 98}))
    now = _list({**AFTER, "F": "aware", "G": "ready"}, {"G": 99})
    # when compared
    changed = compare(now, baseline).set_index("account_id")
    # then A, B and G (not listed before) rose; D fell out; C, E (now in pipeline) and F no
    assert changed["change"].dropna().to_dict() == {
        "A": "rose",
        "B": "rose",
        "D": "fell",
        "G": "rose",
    }
    assert changed.loc["D", "stage_before"] == "ready" and changed.loc["D", "score_before"] == 98
    assert pd.isna(changed.loc["G", "stage_before"]) and pd.isna(changed.loc["G", "score_before"])


def test_the_record_lists_each_change_with_reasons_roles_owner_and_scores() -> None:
    baseline = Baseline(MAY, "ranked.runs/x", _list(BEFORE, {"B": 95}))
    ranked = compare(_list(AFTER, {"B": 99}), baseline)
    record = changes_record(ranked, JUNE, baseline, None)
    assert record["compared_with"] == {"as_of": MAY, "run": "ranked.runs/x"}
    assert [i["account_id"] for i in record["rose"]] == ["A", "B"]
    assert [i["account_id"] for i in record["fell"]] == ["D"]
    assert record["rose"][1] == {
        "account_id": "B",
        "name": "Account B",
        "domain": "b.com",
        "owner": "Jane Park",
        "stage_before": "in-market",
        "stage": "ready",
        "score_before": 95,
        "score": 99,
        "top_reasons": "pricing pages",
        "roles_missing": ["finance"],
    }
    json.dumps(record)  # as the side file holds it
    assert changes_in_words(record, shown=1) == (
        "changes since 2026-05-02: 2 moved up into in-market or ready (Account A and 1 more); "
        "1 fell out (Account D)"
    )


def test_a_first_run_compares_with_nothing_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "ranked.parquet"
    baseline, note = previous_period(out, JUNE)
    assert baseline is None and note == "first run at ranked.parquet: nothing to compare with"
    ranked = compare(_list(AFTER), baseline)
    assert ranked["change"].isna().all() and ranked["stage_before"].isna().all()
    record = changes_record(ranked, JUNE, baseline, note)
    assert record["compared_with"] is None and record["rose"] == record["fell"] == []
    assert changes_in_words(record).endswith("nothing to compare with; nothing alerted")


def test_the_previous_period_is_the_run_published_before(tmp_path: Path) -> None:
    # given May's run published
    out = tmp_path / "ranked.parquet"
    _publish(out, _list(BEFORE), MAY, None)
    # when June is compared, May's stages are the baseline
    baseline, note = previous_period(out, JUNE)
    assert baseline is not None and note is None and baseline.as_of == MAY
    assert baseline.stages.set_index("account_id")["stage"].to_dict() == BEFORE
    # and a run of an earlier as_of than the one published compares with nothing
    earlier, why = previous_period(out, "2026-04-01 00:00:00+00:00")
    assert earlier is None and why == "the published run is of a later as_of (2026-05-02): " + (
        "nothing compared"
    )


def test_the_same_period_scored_again_keeps_what_its_run_compared_with(tmp_path: Path) -> None:
    # given May's run, then June's compared with it
    out = tmp_path / "ranked.parquet"
    _publish(out, _list(BEFORE), MAY, None)
    june, _ = previous_period(out, JUNE)
    _publish(out, _list(AFTER), JUNE, june)
    # when June is scored again (a newly promoted model), its baseline is still May's
    again, note = previous_period(out, JUNE)
    assert again is not None and note is None and again.as_of == MAY
    ranked = compare(_list(AFTER), again)
    assert ranked.set_index("account_id")["change"].dropna().to_dict() == {
        "A": "rose",
        "B": "rose",
        "D": "fell",
    }


@pytest.mark.parametrize("broken", ["manifest", "changes", "columns"])
def test_a_published_run_that_cannot_be_compared_with_is_said_not_raised(
    tmp_path: Path, broken: str
) -> None:
    out = tmp_path / "ranked.parquet"
    if broken == "columns":  # a run of the same as_of whose list has no columns of before
        with new_run(out) as run:
            _list(BEFORE).to_parquet(run.path(), index=False)
            run.path().with_suffix(".csv").write_text("the list\n", encoding="utf-8")
            compared = {"compared_with": {"as_of": MAY, "run": "ranked.runs/x"}}
            write_json_atomic(compared, run.path(CHANGES))
            run.publish({"as_of": JUNE})
    else:
        _publish(out, _list(BEFORE), JUNE, None)
    if broken == "manifest":
        out.with_name("ranked.manifest.json").write_text("{}", encoding="utf-8")
    elif broken == "changes":  # the same as_of's side file changed after publishing
        folder = next(p for p in out.with_name("ranked.runs").iterdir())
        (folder / "ranked.changes.json").write_text("{}", encoding="utf-8")
    baseline, note = previous_period(out, JUNE)
    assert baseline is None and note is not None
    assert note.startswith("the published run cannot be compared with (")
