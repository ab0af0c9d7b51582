"""The promotion gate on real stores: worse, equal and reseeded challengers refused, a real model
promoted over a weakened one of the same data, models that answer another question or come from
another dataset not compared, one promotion at a time, rollbacks; a version whose run did not
finish never promoted. Its decision (``paired_gain``), over many seeded trials: how often noise
passes it, and a real gain does."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from features.engine import build_feature_table
from features.errors import ConfigError
from features.settings import DataSettings, FeatureSettings
from tests.stores import client_of, copy_store, experiment_id, train_job
from training.job import EvaluateJob, TrainResult
from training.promotion import (
    ROLLED_BACK,
    Promotion,
    Verdict,
    attempt_level,
    paired_gain,
    promote,
    roll_back,
)
from training.registry import CHALLENGER, CHAMPION, RegistryError, load_model, version_by_alias
from training.settings import LightGBMParams, PromotionSettings, TrackingSettings


@pytest.fixture
def store(trained: tuple[Path, TrainResult], tmp_path: Path) -> Path:
    return copy_store(trained[0], tmp_path / "mlruns")


@pytest.fixture(scope="module")
def worse_store(
    trained: tuple[Path, TrainResult],
    world_dir: Path,
    world_features: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Promotion, TrainResult]:
    """The session model promoted as the first champion (and that decision), then a model
    trained on shuffled labels registered as the challenger: made once, each test copies it."""
    store = copy_store(trained[0], tmp_path_factory.mktemp("worse") / "mlruns")
    first = promote(client_of(store), "inmarket")
    worse = train_job(store, shuffle_labels=True).run(world_dir, world_features)
    return store, first, worse


@pytest.mark.slow
def test_promotion_refuses_worse_and_accepts_better(
    worse_store: tuple[Path, Promotion, TrainResult], tmp_path: Path
) -> None:
    # given a store whose first challenger (the session model) was promoted, then a worse model
    # trained on shuffled labels and registered as the challenger
    made, first, worse = worse_store
    client = client_of(copy_store(made, tmp_path / "mlruns"))
    # then the first beat the MQL rule beyond noise and became champion
    assert first.promoted and first.reason.startswith("no champion yet; test recall in the top")
    assert "vs the MQL rule's" in first.reason and "beats it by more than noise" in first.reason
    champion = client.get_model_version_by_alias("inmarket", CHAMPION).version
    assert str(champion) == str(first.version)
    # when the worse one is promoted
    refused = promote(client, "inmarket")
    # then it is refused, the champion stays, and the version is tagged with the decision
    assert not refused.promoted and "is worse" in refused.reason
    assert client.get_model_version_by_alias("inmarket", CHAMPION).version == champion
    assert client.get_model_version("inmarket", worse.version).tags["promotion"] == "refused"


@pytest.mark.slow
def test_the_same_model_again_or_reseeded_is_not_promoted_over_itself(
    store: Path, world_dir: Path, world_features: Path
) -> None:
    # given the session model as champion, then registered again as the challenger (the same
    # model: a retrain with the same seed is the same, test_job checks), then retrained with
    # another seed (a model as good, trained by other chance)
    client = client_of(store)
    first = promote(client, "inmarket")
    champion = client.get_model_version("inmarket", str(first.version))
    same = client.create_model_version("inmarket", str(champion.source), champion.run_id)
    client.set_registered_model_alias("inmarket", CHALLENGER, same.version)
    again = promote(client, "inmarket")
    other = train_job(store, seed=11).run(world_dir, world_features)
    reseeded = promote(client, "inmarket")
    # then neither is promoted: their gain is within what the choice of accounts explains
    assert not again.promoted and "gain +0.000000" in again.reason, again.reason
    assert "not better by more than noise" in again.reason
    assert not reseeded.promoted, reseeded.reason
    assert "lower bound" in reseeded.reason
    # and each attempt against this champion spends the gate's error budget: the second is
    # tested at a stricter level than the first
    assert "first attempt against it: tested at 97.0%" in again.reason, again.reason
    assert "attempt 2 against it: tested at 99.24%" in reseeded.reason, reseeded.reason
    assert client.get_model_version("inmarket", other.version).tags["gate_attempt"] == "2"
    assert client.get_model_version("inmarket", same.version).tags["promotion"] == "refused"
    assert client.get_model_version("inmarket", other.version).tags["promotion"] == "refused"


# a real model weakened: one tree of the same data, where the session model's early stopping
# kept 100 (measured on the session's test rows: PR AUC 0.065 against 0.155, the gain's
# one-sided 97% lower bound +0.038). Not stumps: 5 to 50 of them match the session model here
WEAK = LightGBMParams(max_rounds=1)


@pytest.mark.slow
def test_a_real_model_is_promoted_over_a_weakened_one_on_the_same_data(
    store: Path, trained: tuple[Path, TrainResult], world_dir: Path, world_features: Path
) -> None:
    # given a champion trained on the session's data and split as the session model was, but
    # weakened (stumps), forced in; and the session model named the challenger again
    client = client_of(store)
    weak = train_job(store, lightgbm=WEAK).run(world_dir, world_features)
    assert promote(client, "inmarket", force=True).promoted
    client.set_registered_model_alias("inmarket", CHALLENGER, trained[1].version)
    # when the session model is promoted
    accepted = promote(client, "inmarket")
    # then it beats the weakened champion by more than noise on the same rows and is champion
    assert accepted.promoted, accepted.reason
    assert f"vs champion v{weak.version}'s" in accepted.reason
    assert "beats it by more than noise" in accepted.reason
    champion = client.get_model_version_by_alias("inmarket", CHAMPION).version
    assert str(champion) == trained[1].version
    assert client.get_model_version("inmarket", champion).tags["promotion"] == "accepted"


@pytest.mark.slow
def test_models_that_build_features_differently_are_not_compared_on_one_test_set(
    store: Path, trained: tuple[Path, TrainResult], world_dir: Path, tmp_path: Path
) -> None:
    # given the session model (windows 7/30/120, intent delay 14) as champion, and a challenger
    # trained on features built with the default specification
    client = client_of(store)
    promote(client, "inmarket")
    default = tmp_path / "default.parquet"
    build_feature_table(
        world_dir, default, DataSettings(), FeatureSettings(every_days=14, snapshots=None)
    )
    train_job(store).run(world_dir, default)
    # when the challenger is promoted, and the champion evaluated on the default features
    refused = promote(client, "inmarket")
    # then the gate refuses to score the champion on the challenger's features, and evaluate
    # refuses features the model was not trained on
    assert not refused.promoted and "builds its features differently" in refused.reason
    with pytest.raises(ConfigError, match="was trained on"):
        EvaluateJob(tracking=TrackingSettings(store=store)).run(
            trained[1].model_uri, world_dir, default
        )


@pytest.mark.slow
def test_a_first_model_worse_than_the_mql_rule_is_refused_without_force(
    worse_store: tuple[Path, Promotion, TrainResult], tmp_path: Path
) -> None:
    # given a model trained on shuffled labels as the challenger and no champion (the session
    # model's alias removed: the gate's first-model case is "no champion alias")
    client = client_of(copy_store(worse_store[0], tmp_path / "mlruns"))
    client.delete_registered_model_alias("inmarket", CHAMPION)
    # when it is promoted, rolled back to, then forced
    refused = promote(client, "inmarket")
    with pytest.raises(RegistryError, match="has never been champion"):
        roll_back(client, "inmarket", str(refused.version))
    forced = promote(client, "inmarket", force=True)
    # then the gate compares it with the MQL rule on its test rows and refuses, a rollback
    # cannot slip it in, until forced
    assert str(refused.version) == worse_store[2].version
    assert not refused.promoted and "vs the MQL rule's" in refused.reason
    assert "beats it" not in refused.reason
    assert forced.promoted and forced.reason.endswith("(forced)")


@pytest.mark.slow
def test_a_challenger_with_another_label_is_not_compared(
    store: Path, world_dir: Path, world_features: Path
) -> None:
    # given the session champion (label won) and a challenger trained to predict opportunities
    client = client_of(store)
    promote(client, "inmarket")
    other = train_job(store, label="opportunity").run(world_dir, world_features)
    # when it is promoted
    refused = promote(client, "inmarket")
    # then it is refused as answering another question (it was promoted before)
    assert not refused.promoted and "answers another question" in refused.reason
    assert "label 'opportunity' vs 'won'" in refused.reason
    assert client.get_model_version("inmarket", other.version).tags["promotion"] == "refused"


@pytest.mark.slow
def test_a_challenger_trained_on_another_dataset_is_not_compared(
    store: Path, world_dir: Path, tmp_path: Path
) -> None:
    # given the session champion and another CRM's export: the same world under other ids
    client = client_of(store)
    promote(client, "inmarket")
    other = tmp_path / "other-crm"
    other.mkdir()
    shutil.copy(world_dir / "_extract.json", other)
    for table in world_dir.glob("*.parquet"):
        frame = pd.read_parquet(table)
        if "account_id" in frame:
            frame["account_id"] = "hs-" + frame["account_id"].astype(str)
        frame.to_parquet(other / table.name, index=False)
    # when a model is trained on it under the same model name, and promoted
    trained_there = train_job(store).run(other)
    refused = promote(client, "inmarket")
    # then training says so, and the gate refuses to compare the two
    assert any("trained on another dataset: only 0%" in w for w in trained_there.warnings)
    assert not refused.promoted and "trained on another dataset" in refused.reason, refused.reason
    assert "[tracking] project" in refused.reason


@pytest.mark.slow
def test_of_two_promotions_at_once_only_one_moves_the_alias(store: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    # given a store with a challenger and no champion
    client_of(store)
    # when two promotions run at once
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: promote(client_of(store), "inmarket"), range(2)))
    # then exactly one promoted; the other found it already the champion
    assert sorted(r.promoted for r in results) == [False, True]
    assert any("already the champion" in r.reason for r in results)


@pytest.mark.slow
def test_a_rolled_back_champion_is_not_put_back_by_a_plain_promote(
    worse_store: tuple[Path, Promotion, TrainResult], tmp_path: Path
) -> None:
    # given a champion v1 and another model put over it (v2, forced)
    client = client_of(copy_store(worse_store[0], tmp_path / "mlruns"))
    first = worse_store[1]
    second = promote(client, "inmarket", force=True)
    assert second.promoted, second.reason
    # when v1 is put back by hand, then a plain promote runs (v2 is still the challenger)
    back = roll_back(client, "inmarket", str(first.version))
    again = promote(client, "inmarket")
    # then v1 is champion, v2 is tagged rolled back and stays out until forced
    assert back.promoted and back.previous == second.version
    assert str(client.get_model_version_by_alias("inmarket", CHAMPION).version) == str(
        first.version
    )
    assert not again.promoted and "was rolled back" in again.reason
    assert ROLLED_BACK in client.get_model_version("inmarket", second.version).tags
    assert promote(client, "inmarket", force=True).promoted


@pytest.mark.slow
def test_force_promotes_a_worse_model_and_says_so(
    worse_store: tuple[Path, Promotion, TrainResult], tmp_path: Path
) -> None:
    # given a champion and a worse challenger trained on shuffled labels
    client = client_of(copy_store(worse_store[0], tmp_path / "mlruns"))
    # when the challenger is promoted with force
    forced = promote(client, "inmarket", force=True)
    # then it becomes the champion, the reason says forced, and it loads
    assert forced.promoted and forced.reason.endswith("(forced)")
    champion = client.get_model_version_by_alias("inmarket", CHAMPION).version
    assert str(champion) == worse_store[2].version
    assert isinstance(load_model(f"models:/inmarket@{CHAMPION}").features, list)


@pytest.mark.slow
def test_the_gate_needs_rows_the_champion_was_not_fitted_on(
    nine_month_trained: tuple[Path, TrainResult, list[str]], tmp_path: Path
) -> None:
    # given a short-history champion, fitted on every labelled snapshot of the world, and the
    # same training registered again as challenger
    client = client_of(copy_store(nine_month_trained[0], tmp_path / "mlruns"))
    assert promote(client, "inmarket", force=True).promoted
    first = client.get_model_version("inmarket", nine_month_trained[1].version)
    again = client.create_model_version("inmarket", str(first.source), first.run_id)
    client.set_registered_model_alias("inmarket", CHALLENGER, again.version)
    # when the challenger is promoted
    refused = promote(client, "inmarket")
    # then the gate refuses to compare them on rows the champion was fitted on
    assert not refused.promoted and "unseen by both" in refused.reason, refused.reason


@pytest.mark.parametrize("status", ["RUNNING", "FAILED", "KILLED"])
def test_a_version_whose_run_did_not_finish_is_never_promoted(
    client: MlflowClient, status: str
) -> None:
    # given a challenger registered by a run that is still RUNNING, or FAILED, or KILLED
    experiment = experiment_id(client)
    run = client.create_run(experiment).info
    if status != "RUNNING":
        client.set_terminated(run.run_id, status)
    client.create_registered_model("inmarket")
    version = client.create_model_version("inmarket", "file:///nowhere", run.run_id)
    client.set_registered_model_alias("inmarket", CHALLENGER, version.version)
    # when it is promoted, even with force, then it is refused with the version and the status
    with pytest.raises(
        RegistryError,
        match=rf"version {version.version} is not promoted: its training run {run.run_id} is "
        rf"{status}, not FINISHED",
    ):
        promote(client, "inmarket", force=True)
    assert version_by_alias(client, "inmarket", CHAMPION) is None


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_the_gate_spends_its_error_budget_over_attempts(confidence: float) -> None:
    # given the levels of the first 1,000 attempts against one champion
    levels = [attempt_level(k, confidence) for k in range(1, 1_001)]
    # then each attempt is stricter than the one before and than the configured level, and
    # the chances that noise passes, summed over every attempt, stay under 1 - confidence
    assert all(a < b for a, b in itertools.pairwise(levels))
    assert confidence < levels[0] < 1
    assert sum(1 - level for level in levels) < 1 - confidence


def _scored_test_rows(
    seed: int, slope: float, challenger_noise: float
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """5,000 test rows (1,000 accounts, 5 snapshots each, about 0.9% positive) and two scores
    of them, the challenger's and the champion's: each the same latent signal plus noise of its
    own, half of it the account's (a model misjudges an account at every snapshot), the
    challenger's scaled by ``challenger_noise`` (1: as good as the champion). The steeper the
    labels rise with the signal (``slope``), the fewer accounts hold the positives."""
    rng = np.random.default_rng(seed)
    accounts, snapshots = 1_000, 5
    account = np.repeat(np.arange(accounts), snapshots)
    latent = rng.normal(size=accounts)[account] + 0.5 * rng.normal(size=len(account))
    intercept = -3.0 - 2.0 * slope  # about 0.9% positive at slopes 1.5 and 3
    labels = (rng.random(len(account)) < 1 / (1 + np.exp(-intercept - slope * latent))).astype(int)

    def score(noise: float) -> np.ndarray:
        own = rng.normal(size=accounts)[account] + rng.normal(size=len(account))
        return latent + noise * 0.7 * own

    test = pd.DataFrame(
        {
            "account_id": account.astype(str),
            "as_of": pd.Timestamp("2025-01-01", tz="UTC")
            + pd.to_timedelta(14 * np.tile(np.arange(snapshots), accounts), unit="D"),
            "label": labels,
        }
    )
    return test, score(challenger_noise), score(1.0)


# the gate's default 1,000 replicates would take ten times as long; 100 (the least the settings
# allow) measured alike: 5.7% of 1,000 trials of the first world below passed with 100, 5.5%
# of 400 with 1,000
FEW_ROUNDS = PromotionSettings(rounds=100)


def _passes(trials: int, slope: float, challenger_noise: float) -> float:
    """The share of ``trials`` seeded test sets on which the challenger passes the gate at its
    configured one-sided 95%."""
    verdicts = (
        paired_gain(*_scored_test_rows(seed, slope, challenger_noise), FEW_ROUNDS)
        for seed in range(trials)
    )
    return sum(v.wins for v in verdicts) / trials


@pytest.mark.slow
def test_a_challenger_as_good_as_the_champion_passes_at_most_about_the_level() -> None:
    # given 200 seeded test sets (~46 positives each, PR AUC ~0.065, ROC AUC ~0.80: like the
    # demo's no_intent ablation), each scored by two equally good models
    # when the gate compares them at 95% one-sided, then noise passes it at most about 5% of
    # the time (here 14 of 200). At a true 5%, 200 trials pass 10 +- 3.1 (binomial); more than
    # 16 (8%) happens by chance 2.4% of the time, so a sound gate would fail this with those
    # odds on another choice of seeds (these are fixed: the test is deterministic). A gate
    # deciding on the point gain (gain > 0) passes 106 of 200 and fails it; one at a true 10%
    # would still pass it 21% of the time.
    # A known limit, measured, not tested here (another 20 s): with the positives held by
    # fewer accounts (slope 3: PR AUC ~0.16, ROC AUC ~0.91, like the demo's model) the
    # bootstrap understates how far PR AUC moves on ~47 positives (its sd by ~10%): noise
    # passes 23 of these 200 trials (11.5%), and, with 200 replicates, 10% at ~47 positives,
    # 8.5% at ~93, 5.0% at ~140 (200 trials each: +-1.5 points). See
    # docs/labels-and-evaluation.md, the promotion gate.
    assert _passes(200, slope=1.5, challenger_noise=1.0) <= 0.08


@pytest.mark.slow
def test_a_better_challenger_passes_the_gate_most_of_the_time() -> None:
    # given 50 seeded test sets where the challenger's noise is half the champion's (ROC AUC
    # ~0.96 against ~0.91, PR AUC ~0.32 against ~0.16, on ~46 positives; its point gain is
    # positive in 49 of 50, but the gain's interval is wide with so few positives)
    # when the gate compares them, then it passes most of them (35 of 50). At a true 70%,
    # fewer than 30 of 50 happens by chance 5% of the time; a gate at 99.5% passes 26 and fails
    assert _passes(50, 3.0, challenger_noise=0.5) >= 0.6


@pytest.mark.parametrize(("positives", "noted"), [(47, True), (165, False)])
def test_a_win_on_few_positives_says_the_gate_is_looser_there(positives: int, noted: bool) -> None:
    # given a challenger that passes the gate on test rows with few or enough positives, and
    # one that does not pass
    passed = Verdict(0.20, 0.15, 0.01, 0.09, 5000, "pr_auc", 0.95, positives)
    refused = Verdict(0.20, 0.19, -0.02, 0.04, 5000, "pr_auc", 0.95, positives)
    # when the verdicts are put in words
    said, not_passed = passed.words("champion v1"), refused.words("champion v1")
    # then a narrow pass on few positives carries the measured caveat, and nothing else does
    assert ("with only 47 positive test snapshots" in said) is noted
    assert "positive test snapshots" not in not_passed
