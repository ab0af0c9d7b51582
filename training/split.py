"""Labelled snapshots and how they are held out.

With history enough, a time split: train <= T1 < validation <= T2 < test, with an embargo of
one label horizon between the parts. With less (a team that switched marketing automation on
nine months ago), short-history mode: the accounts are split into groups, no account in two,
and the model is cross-validated over the groups (``Folds``); every snapshot is still
point-in-time and every label window fully observed. Below ``SHORT_MIN_POSITIVES`` labelled
positives, or when no snapshot has ``SHORT_MIN_EVENT_DAYS`` of events before it and a whole
label horizon after it, training is refused with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from features.errors import InMarketError
from training.labels import DECIDED, LabelCounts, label_snapshots
from training.model import LABEL
from training.settings import TrainSettings


class SplitError(InMarketError, ValueError):
    """Not enough labelled history for the requested split."""


@dataclass
class Split:
    """The labelled snapshots cut in time: train, validation and test."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    # training and validation labels left out: decided after the next window began
    decided_late: int = 0

    def describe(self) -> dict[str, Any]:
        def span(f: pd.DataFrame) -> str:
            return f"{f['as_of'].min():%Y-%m-%d}..{f['as_of'].max():%Y-%m-%d}"

        return {
            "evaluation": "time_split",
            "decided_late": self.decided_late,
            **{
                f"{n}_{k}": v
                for n, f in (("train", self.train), ("valid", self.valid), ("test", self.test))
                for k, v in (
                    ("rows", len(f)),
                    ("positives", int(f[LABEL].sum())),
                    ("as_of", span(f)),
                )
            },
        }


def time_split(
    labelled: pd.DataFrame,
    *,
    test_days: int,
    validation_days: int,
    embargo_days: int,
    decided: pd.Series | None = None,
) -> Split:
    """train <= T1 < validation <= T2 < test, with a gap of one label horizon between them, so
    no training label window overlaps the validation or test period; and, given when each
    label was ``decided``, a training (validation) label decided after the validation (test)
    window begins is left out and counted, as a deal created in the window but closed months
    later would otherwise be learned from."""
    last = labelled["as_of"].max()
    test_start = last - pd.Timedelta(days=test_days)
    t2 = test_start - pd.Timedelta(days=embargo_days)
    valid_start = t2 - pd.Timedelta(days=validation_days)
    t1 = valid_start - pd.Timedelta(days=embargo_days)
    in_train = (labelled["as_of"] <= t1).to_numpy()
    in_valid = ((labelled["as_of"] > valid_start) & (labelled["as_of"] <= t2)).to_numpy()
    late = np.zeros(len(labelled), dtype=bool)
    if decided is not None:
        late = (in_train & (decided > valid_start).to_numpy()) | (
            in_valid & (decided > test_start).to_numpy()
        )
    split = Split(
        labelled[in_train & ~late],
        labelled[in_valid & ~late],
        labelled[labelled["as_of"] > test_start],
        int(late.sum()),
    )
    for name, part in (("train", split.train), ("validation", split.valid), ("test", split.test)):
        if part.empty or part[LABEL].nunique() < 2:
            raise SplitError(
                f"the {name} window has {len(part)} labelled rows and "
                f"{int(part[LABEL].sum()) if len(part) else 0} positives: it needs both classes. "
                "Use more history, or shorten train.test_days / train.validation_days."
            )
    return split


SHORT_MIN_POSITIVES = 10  # accounts with a positive snapshot: two a group at five groups
SHORT_MIN_EVENT_DAYS = 21  # days of events a snapshot needs before it in short-history mode


@dataclass
class Folds:
    """Short-history mode: the labelled snapshots with each row's group of accounts.

    Fold ``k`` is tested by a model trained on the other groups but one, which stops it early
    and calibrates it (``part``). The model that is registered is fitted the same way with
    group 0 as its validation (``train``, ``valid``); ``test`` is every row, each scored
    out of fold."""

    rows: pd.DataFrame
    fold: np.ndarray
    reason: str  # why the time windows did not fit
    folds: int = 5
    notes: list[str] = field(default_factory=list)

    def part(self, k: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(train, validation, test) of fold ``k``: test group k, validation group k+1."""
        valid = (k + 1) % self.folds
        return (
            self.rows[(self.fold != k) & (self.fold != valid)],
            self.rows[self.fold == valid],
            self.rows[self.fold == k],
        )

    @property
    def train(self) -> pd.DataFrame:
        return self.rows[self.fold != 0]

    @property
    def valid(self) -> pd.DataFrame:
        return self.rows[self.fold == 0]

    @property
    def test(self) -> pd.DataFrame:
        return self.rows

    def describe(self) -> dict[str, Any]:
        rows = self.rows
        return {
            "evaluation": "grouped_cv",
            "folds": self.folds,
            "test_rows": len(rows),
            "test_positives": int(rows[LABEL].sum()),
            "test_accounts": int(rows["account_id"].nunique()),
            "test_as_of": f"{rows['as_of'].min():%Y-%m-%d}..{rows['as_of'].max():%Y-%m-%d}",
            "train_rows": len(self.train),
            "valid_rows": len(self.valid),
        }


def grouped_folds(labelled: pd.DataFrame, *, folds: int, seed: int, reason: str) -> Folds:
    """Split the accounts into ``folds`` groups, keeping the share of positives alike in each
    (``StratifiedGroupKFold``), or refuse below the documented minimum."""
    from sklearn.model_selection import StratifiedGroupKFold

    # one won deal labels several snapshots of one account: what counts is accounts
    positives = labelled.loc[labelled[LABEL] == 1, "account_id"].nunique() if len(labelled) else 0
    accounts = labelled["account_id"].nunique() if len(labelled) else 0
    if positives < SHORT_MIN_POSITIVES or accounts < 2 * folds:
        span = (
            f"{labelled['as_of'].min():%Y-%m-%d}..{labelled['as_of'].max():%Y-%m-%d}"
            if len(labelled)
            else "none"
        )
        raise SplitError(
            f"{reason}; short-history mode needs at least {SHORT_MIN_POSITIVES} accounts with "
            f"a positive labelled snapshot, and has {positives} (snapshots {span}, {accounts} "
            "accounts): "
            "export more history, or label opportunities instead of wins (--label opportunity)"
        )
    fold = np.empty(len(labelled), dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    groups = labelled["account_id"].astype(str).to_numpy()
    for k, (_, test) in enumerate(splitter.split(labelled, labelled[LABEL], groups)):
        fold[test] = k
    result = Folds(labelled.reset_index(drop=True), fold, reason, folds)
    for k in range(folds):  # every model needs both classes to learn, stop and calibrate
        for name, part in zip(("training", "validation", "test"), result.part(k), strict=True):
            if part[LABEL].nunique() < 2:
                raise SplitError(
                    f"{reason}; short-history mode: group {k}'s {name} rows hold one class "
                    f"only ({positives} accounts with a positive snapshot over {folds} groups): "
                    "export more history, or label opportunities instead of wins "
                    "(--label opportunity)"
                )
    return result


def label_and_split(
    table: pd.DataFrame,
    opportunities: pd.DataFrame,
    extracted_at: datetime,
    settings: TrainSettings,
) -> tuple[pd.DataFrame, LabelCounts, Split | Folds]:
    """Label the feature table's snapshots and cut them in time, as the settings say, or,
    when the history is too short for time windows, group them by account (``Folds``)."""
    labelled, counts = label_snapshots(
        table,
        opportunities,
        extracted_at=pd.Timestamp(extracted_at),
        horizon_days=settings.horizon_days,
        kind=settings.label,
        include_customers=settings.include_customers,
    )
    decided = labelled.pop(DECIDED)  # when each label was known: for the split, not a feature
    try:
        split: Split | Folds = time_split(
            labelled,
            test_days=settings.test_days,
            validation_days=settings.validation_days,
            embargo_days=settings.horizon_days,
            decided=decided,
        )
    except SplitError as exc:
        if not settings.short_history:
            raise
        split = grouped_folds(
            labelled,
            folds=settings.folds,
            seed=settings.seed,
            reason=_why_short(labelled, settings, exc),
        )
    return labelled, counts, split


def _why_short(labelled: pd.DataFrame, settings: TrainSettings, exc: SplitError) -> str:
    """The reason the time windows do not fit, in days of history."""
    need = settings.test_days + settings.validation_days + 2 * settings.horizon_days
    if labelled.empty:
        return (
            f"no snapshot has {SHORT_MIN_EVENT_DAYS} days of events before it and its whole "
            f"{settings.horizon_days}-day label window before the export time: training needs "
            f"at least {SHORT_MIN_EVENT_DAYS + settings.horizon_days} days of history"
        )
    days = (labelled["as_of"].max() - labelled["as_of"].min()).days
    return (
        f"the labelled snapshots span {days} days; time windows with embargoes need more than "
        f"{need} (test {settings.test_days}, validation {settings.validation_days}, two "
        f"embargoes of {settings.horizon_days})"
    )


def window_lines(counts: LabelCounts, split: Split | Folds) -> list[str]:
    """Each evaluation window's labelled snapshots and positives, in words: what validate
    forecasts and what train says before it fits anything."""
    s = split.describe()
    lines = [
        f"  {counts.labelled:,} snapshots labelled, {counts.positives:,} positive; left out "
        f"{counts.window_not_observed:,} not fully observed, {counts.in_pipeline:,} in "
        f"pipeline, {counts.customers:,} customers, {counts.outcome_open:,} still open",
    ]
    if isinstance(split, Folds):
        lines.append(
            f"  short-history mode, {split.folds} groups of accounts (no account in two): "
            f"{s['test_rows']:,} snapshots {s['test_as_of']} of {s['test_accounts']:,} "
            f"accounts, {s['test_positives']:,} positive, each scored by a model that never "
            "saw its account"
        )
        return lines
    for name, part in (("train", "train"), ("validation", "valid"), ("test", "test")):
        lines.append(
            f"  {name:<10} {s[f'{part}_as_of']}: {s[f'{part}_rows']:,} labelled, "
            f"{s[f'{part}_positives']:,} positive"
        )
    lines.append(
        f"  left out {s['decided_late']:,} labels decided only after the next window began"
    )
    return lines
