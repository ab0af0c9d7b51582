"""What ``inmarket train`` would get from a folder, told by ``inmarket validate`` before any
event is counted (``ForecastJob``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from features.contract import empty_table
from features.errors import ContractError
from features.families import build_features
from features.plan import plan_build
from features.report import ValidationReport
from features.settings import FeatureSpec
from features.snapshots import snapshot_grid
from features.sources import TableSource, open_source
from features.validation import Dataset
from training.job import Job
from training.labels import label_words
from training.split import SplitError, window_lines


class ForecastJob(Job):
    """What ``inmarket train`` would get from a folder under the current settings, told before
    any event is counted (``inmarket validate``): labels need only the deals and the accounts'
    pipeline and customer status, so the snapshots are built without events, on the grid and
    with the rules training uses (short-history mode and its earlier start included)."""

    def __init__(self, events_report: ValidationReport, **sections: Any) -> None:
        super().__init__(**sections)
        self.events_report = events_report

    def features(
        self, data: TableSource, features_path: Path | None, start: pd.Timestamp | None = None
    ) -> tuple[pd.DataFrame, FeatureSpec, Dataset]:
        settings = self.training_grid(start)
        plan = plan_build(data, self.data, settings)
        base = plan.base
        table = build_features(
            snapshot_grid(base.accounts, plan.as_ofs),
            base.accounts,
            base.people,
            empty_table("events"),
            base.intent,
            base.opportunities,
            settings,
            plan.categories,
            base.account_history,
        )
        return table, settings.spec(), base

    def lines(self, data: TableSource | Path) -> list[str]:
        """The forecast in words: each window's labelled snapshots and positives, or why
        training is impossible and what to change."""
        tc = self.train
        head = (
            f"what `inmarket train` would get (label: {label_words(tc.label, tc.horizon_days)}; "
            f"snapshots every {tc.every_days} days):"
        )
        try:
            _, counts, split, _, _ = self.labelled(open_source(data, self.data), None)
        except (SplitError, ContractError) as exc:
            return [head, f"  training is not possible: {exc}"]
        lines = [head, *window_lines(counts, split)]
        lines += [f"  note: {w}" for w in self.grid_warnings]
        return lines
