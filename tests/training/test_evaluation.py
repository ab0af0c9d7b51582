"""The evaluation of a trained model: every method on the same rows, a bar on the reference
world, and shuffled labels give a coin flip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.stores import train_job
from training.job import TrainResult

pytestmark = pytest.mark.slow


def test_model_beats_the_mql_rule_on_the_same_rows(trained: tuple[Path, TrainResult]) -> None:
    metrics = trained[1].evaluation.metrics
    assert metrics["model"]["roc_auc"] > metrics["mql_rule"]["roc_auc"]
    assert metrics["model"]["recall_at_10"] > metrics["mql_rule"]["recall_at_10"]
    assert set(metrics) == {
        "model",
        "no_intent",
        "buying_group",
        "mql_rule",
        "logistic",
        "engagement",
    }


def test_shuffled_labels_give_a_coin_flip(
    world_dir: Path, world_features: Path, tmp_path: Path
) -> None:
    from sklearn.metrics import roc_auc_score

    from training.evaluation import shuffled
    from training.model import fit_model

    # given the session's world and features
    # when a model is trained on shuffled labels (by `train --shuffle-labels`), and four more
    # with other shuffles: one noise-fitted model can land anywhere from 0.3 to 0.7 (a few
    # trees on activity, their sign a coin toss), so one draw proves little either way
    job = train_job(tmp_path / "mlruns", shuffle_labels=True)
    result = job.run(world_dir, world_features)
    labelled = job.labelled(world_dir, world_features)
    aucs = [result.evaluation.metrics["model"]["roc_auc"]]
    for seed in range(1, 5):
        settings = job.train.model_copy(update={"seed": seed})
        train, valid = shuffled(labelled.split.train, labelled.split.valid, settings)
        model = fit_model(train, valid, seed=seed, params=settings.lightgbm, spec=labelled.spec)
        test = labelled.split.test
        aucs.append(roc_auc_score(test["label"], model.predict(test, raw_score=True)))
    # then on average their test ROC AUC is a coin flip, and none comes near the real model's
    assert abs(np.mean(aucs) - 0.5) < 0.08, aucs
    assert max(aucs) < 0.8, aucs


def test_reference_world_meets_the_quality_bar(tmp_path: Path) -> None:
    """The bar on the synthetic world of 5,000 accounts, seed 7: test ROC AUC at least 0.85,
    and more of the later wins than the MQL rule in its top 10% by more than noise (the lower
    end of the paired 95% interval of the ratio above 1), with and without third-party intent.
    (The bar was 1.5x while the world's intent was nearly a label; with intent as noisy as a
    provider's, docs/world.md, the model measures about 1.5x and 1.2x without intent.)"""
    from inmarket.synthetic import WorldSpec, generate_world

    # given the reference world
    world = tmp_path / "world"
    generate_world(WorldSpec(accounts=5000, seed=7), world)
    # when a model is trained on it
    result = train_job(tmp_path / "mlruns", ablations=True, bootstrap_rounds=500).run(world)
    # then it meets the bar against the MQL rule and flags later wins ahead of time
    evaluation = result.evaluation
    model, mql = evaluation.metrics["model"], evaluation.metrics["mql_rule"]
    assert model["roc_auc"] >= 0.85
    assert model["recall_at_10"] > mql["recall_at_10"] and evaluation.ratios["model"][0] > 1
    assert evaluation.ratios["no_intent"][0] > 1
    assert result.evaluation.lead_times["model"][1] > 0
