"""Labelled snapshots and their time split: train <= T1 < validation <= T2 < test, with an
embargo of one label horizon between the parts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from features.errors import InMarketError
from training.labels import LabelCounts, label_snapshots
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

    def describe(self) -> dict[str, Any]:
        def span(f: pd.DataFrame) -> str:
            return f"{f['as_of'].min():%Y-%m-%d}..{f['as_of'].max():%Y-%m-%d}"

        return {
            f"{n}_{k}": v
            for n, f in (("train", self.train), ("valid", self.valid), ("test", self.test))
            for k, v in (("rows", len(f)), ("positives", int(f[LABEL].sum())), ("as_of", span(f)))
        }


def time_split(
    labelled: pd.DataFrame, *, test_days: int, validation_days: int, embargo_days: int
) -> Split:
    """train <= T1 < validation <= T2 < test, with a gap of one label horizon between them, so
    no training label window overlaps the validation or test period."""
    last = labelled["as_of"].max()
    test_start = last - pd.Timedelta(days=test_days)
    t2 = test_start - pd.Timedelta(days=embargo_days)
    valid_start = t2 - pd.Timedelta(days=validation_days)
    t1 = valid_start - pd.Timedelta(days=embargo_days)
    split = Split(
        labelled[labelled["as_of"] <= t1],
        labelled[(labelled["as_of"] > valid_start) & (labelled["as_of"] <= t2)],
        labelled[labelled["as_of"] > test_start],
    )
    for name, part in (("train", split.train), ("validation", split.valid), ("test", split.test)):
        if part.empty or part[LABEL].nunique() < 2:
            raise SplitError(
                f"the {name} window has {len(part)} labelled rows and "
                f"{int(part[LABEL].sum()) if len(part) else 0} positives: it needs both classes. "
                "Use more history, or shorten train.test_days / train.validation_days."
            )
    return split


def label_and_split(
    table: pd.DataFrame,
    opportunities: pd.DataFrame,
    extracted_at: datetime,
    settings: TrainSettings,
) -> tuple[pd.DataFrame, LabelCounts, Split]:
    """Label the feature table's snapshots and cut them in time, as the settings say."""
    labelled, counts = label_snapshots(
        table,
        opportunities,
        extracted_at=pd.Timestamp(extracted_at),
        horizon_days=settings.horizon_days,
        kind=settings.label,
        include_customers=settings.include_customers,
    )
    split = time_split(
        labelled,
        test_days=settings.test_days,
        validation_days=settings.validation_days,
        embargo_days=settings.horizon_days,
    )
    return labelled, counts, split
