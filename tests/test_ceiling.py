"""The ceiling measures its oracles on the training job's own test rows and later-won deals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inmarket.synthetic.ceiling import MQL, RANKINGS, ceiling_table
from training.job import TrainJob, TrainResult
from training.settings import TrainSettings

pytestmark = pytest.mark.slow


def test_the_ceiling_measures_every_ranking_on_the_rows_and_deals_training_compares(
    trained: tuple[Path, TrainResult], world_dir: Path, world_features: Path
) -> None:
    # given the session world, and the session model's comparison on its test rows
    evaluation = trained[1].evaluation
    # when the ceiling is measured with the same settings (fewer replicates: quicker)
    table = ceiling_table(
        world_dir, TrainJob(train=TrainSettings(bootstrap_rounds=50)), world_features
    )
    # then the rule and the model without intent are exactly what training measured: the
    # same rows, the same deals
    assert list(table.index) == list(RANKINGS)
    for name in (MQL, "no_intent"):
        assert table.loc[name, "recall_at_10"] == pytest.approx(
            evaluation.metrics[name]["recall_at_10"]
        )
        assert table.loc[name, "deals_flagged"] == evaluation.lead_times[name][1]
    assert (table["deals"] == evaluation.deals).all() and evaluation.deals > 0
    # and knowing the visible cycles finds at least what the model and the rule find
    oracle = table.loc["visible_then_model"]
    assert oracle["recall_at_10"] >= table.loc[["no_intent", MQL], "recall_at_10"].max()
    # and the rule's ratio to itself is 1 in every replicate; no ranking flags more deals
    # than there are
    assert table.loc[MQL, ["x_mql_lo", "x_mql_rule", "x_mql_hi"]].tolist() == [1.0, 1.0, 1.0]
    assert np.all(table["deals_flagged"] <= table["deals"])
