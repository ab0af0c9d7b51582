"""What changed since the previous period: the accounts that moved up into ``in-market`` or
``ready`` (a rise from in-market to ready counts) and those that fell out of them.

Each batch scoring compares its list with the run published before it at the same ``--out``
(``serving.runs``) and saves what changed with the run, so every reader sees the same changes:

- three columns of the ranked list: ``stage_before`` and ``score_before`` (the account's in the
  previous period's run; none when it was not listed there) and ``change`` (``rose``, ``fell``
  or none): the page's "new this period", the API's filter and the exports read them;
- ``ranked.changes.json``: the accounts that rose and fell, each with its top reasons, missing
  roles, owner, score before and after; the CLI summary and the webhook send it.

The previous period is the published run of an earlier ``as_of``. A run of the same ``as_of``
(the list scored again, e.g. by a newly promoted model) compares with what that run compared
with (its ``*_before`` columns), so scoring again does not wipe "new this period". A first run,
or one after a run of a later ``as_of``, has nothing to compare with: it says so, and nothing
is alerted.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.io import sidecar
from serving.runs import RunError, published

WORKED_STAGES = ("in-market", "ready")  # the stages worth working now, lowest first
ROSE, FELL = "rose", "fell"
CHANGE_COLUMNS = ("stage_before", "score_before", "change")
CHANGES = "changes.json"  # the run's side file: ranked.changes.json
# what each account that changed is reported with
ITEM_COLUMNS = (
    "account_id",
    "name",
    "domain",
    "owner",
    "stage_before",
    "stage",
    "score_before",
    "score",
    "top_reasons",
    "roles_missing",
)


@dataclass(frozen=True)
class Baseline:
    """The previous period's list: its ``as_of``, the run it was published as, and each
    account's stage and score then (columns ``account_id``, ``stage``, ``score``)."""

    as_of: str
    run: str
    stages: pd.DataFrame


def previous_period(out: Path, as_of: str) -> tuple[Baseline | None, str | None]:
    """The previous period's list for a run of ``as_of`` at ``out``, or None and why not."""
    try:
        run = published(out)
        if run is None:
            return None, f"first run at {Path(out).name}: nothing to compare with"
        listed = Path(Path(out).name)
        before = pd.read_parquet(io.BytesIO(run.read(listed.name)))
        then = str(run.manifest.get("as_of"))
        if pd.Timestamp(then) < pd.Timestamp(as_of):
            return Baseline(
                then, str(run.manifest["run"]), before[["account_id", "stage", "score"]]
            ), None
        if pd.Timestamp(then) > pd.Timestamp(as_of):
            return None, f"the published run is of a later as_of ({then[:10]}): nothing compared"
        said = json.loads(run.read(sidecar(listed, CHANGES).name))
        compared = said.get("compared_with")
        if not compared:  # the same period scored again: as its run did, nothing to compare with
            return None, said.get("note")
        carried = before[["account_id", "stage_before", "score_before"]].rename(
            columns={"stage_before": "stage", "score_before": "score"}
        )
        return Baseline(compared["as_of"], compared["run"], carried.dropna(subset=["stage"])), None
    except (RunError, OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"the published run cannot be compared with ({exc})"


CONVERTED = ("in-pipeline", "customer")  # the stage of an account scored no more, and why


def _level(stages: pd.Series) -> np.ndarray:
    """0 below in-market, 1 in-market, 2 ready."""
    levels = {stage: i + 1 for i, stage in enumerate(WORKED_STAGES)}
    return stages.map(levels).fillna(0).to_numpy(dtype=int)


def compare(ranked: pd.DataFrame, baseline: Baseline | None) -> pd.DataFrame:
    """``ranked`` with each account's stage and score in the previous period's list and what
    changed (``CHANGE_COLUMNS``); all none when there is no previous period."""
    if baseline is None:
        none = pd.Series(None, index=ranked.index, dtype="str")
        return ranked.assign(
            stage_before=none,
            score_before=pd.array([None] * len(ranked), dtype="Int64"),
            change=none,
        )
    before = baseline.stages.drop_duplicates("account_id").set_index("account_id")
    stage_before = ranked["account_id"].map(before["stage"]).astype("str")
    score_before = ranked["account_id"].map(before["score"].astype("Float64")).astype("Int64")
    now, then = _level(ranked["stage"]), _level(stage_before)
    # an account that went on into pipeline or became a customer did not fall: it converted
    converted = ranked["stage"].isin(CONVERTED).to_numpy()
    change = np.select([now > then, (then > 0) & (now == 0) & ~converted], [ROSE, FELL], "")
    return ranked.assign(
        stage_before=stage_before,
        score_before=score_before,
        change=pd.Series(change, index=ranked.index, dtype="str").replace("", None),
    )


def _items(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of the list as the changes report them (JSON-ready: nulls as None, roles a list)."""
    table = rows[list(ITEM_COLUMNS)].astype(object)
    items: list[dict[str, Any]] = table.where(table.notna(), None).to_dict("records")
    for item in items:
        item["roles_missing"] = [str(role) for role in item["roles_missing"]]
        for key in ("score", "score_before"):
            item[key] = None if item[key] is None else int(item[key])
    return items


def changes_record(
    ranked: pd.DataFrame, as_of: str, baseline: Baseline | None, note: str | None
) -> dict[str, Any]:
    """The run's ``ranked.changes.json``: what it compared with (or why nothing), the accounts
    that rose and those that fell, in the list's order."""
    compared = {"as_of": baseline.as_of, "run": baseline.run} if baseline else None
    return {
        "as_of": as_of,
        "compared_with": compared,
        "note": None if baseline else note,
        "rose": _items(ranked[ranked["change"] == ROSE]),
        "fell": _items(ranked[ranked["change"] == FELL]),
    }


def _names(items: list[dict[str, Any]], shown: int) -> str:
    names = [str(item["name"] or item["account_id"]) for item in items[:shown]]
    more = f" and {len(items) - shown:,} more" if len(items) > shown else ""
    return ", ".join(names) + more


def changes_in_words(record: dict[str, Any], shown: int = 3) -> str:
    """One line for a command's summary: the counts and the first few names."""
    compared = record.get("compared_with")
    if not compared:
        return f"changes: {record.get('note')}; nothing alerted"
    rose, fell = record["rose"], record["fell"]
    line = f"changes since {str(compared['as_of'])[:10]}: {len(rose):,} moved up into "
    line += "in-market or ready"
    line += f" ({_names(rose, shown)})" if rose else ""
    line += f"; {len(fell):,} fell out" + (f" ({_names(fell, shown)})" if fell else "")
    return line
