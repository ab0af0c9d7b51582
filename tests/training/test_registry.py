"""Runs left RUNNING by a dead process are marked FAILED, and a version whose training run did
not finish is never promoted; on an empty store, no training needed. The gate's decision
(``paired_gain``), over many seeded trials: how often noise passes it, and a real gain does."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from pydantic import ValidationError

from features.leftovers import this_host
from tests.processes import ended_pid
from tests.stores import client_of, copy_store
from training.registry import (
    CHALLENGER,
    CHAMPION,
    HOST_TAG,
    PID_TAG,
    RegistryError,
    Verdict,
    attempt_level,
    fail_abandoned_runs,
    paired_gain,
    promote,
    version_by_alias,
)
from training.settings import PromotionSettings, TrackingSettings


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the experiment and nothing else, made once (creating its tables is slow)."""
    store = tmp_path_factory.mktemp("empty") / "mlruns"
    client_of(store)
    return store


@pytest.fixture
def client(empty_store: Path, tmp_path: Path) -> MlflowClient:
    return client_of(copy_store(empty_store, tmp_path / "mlruns"))


def _experiment(client: MlflowClient) -> str:
    found = client.get_experiment_by_name("inmarket")
    assert found is not None
    return str(found.experiment_id)


def test_runs_left_running_by_a_dead_process_of_this_host_are_marked_failed(
    client: MlflowClient,
) -> None:
    # given four RUNNING runs: owned by a dead process of this host, by this living process, by
    # a process of another host, and by no one known (a run from before owners were recorded)
    experiment = _experiment(client)
    dead = ended_pid()
    owners = {
        "dead": {PID_TAG: str(dead), HOST_TAG: this_host()},
        "living": {PID_TAG: str(os.getpid()), HOST_TAG: this_host()},
        "elsewhere": {PID_TAG: str(dead), HOST_TAG: f"{this_host()}-elsewhere"},
        "unknown": {},
    }
    runs = {name: client.create_run(experiment, tags=tags).info for name, tags in owners.items()}
    # when the runs left behind are looked for
    failed = fail_abandoned_runs(client, "inmarket")
    # then only the dead process's run is marked FAILED
    assert failed == [runs["dead"].run_id]
    assert {name: client.get_run(run.run_id).info.status for name, run in runs.items()} == {
        "dead": "FAILED",
        "living": "RUNNING",
        "elsewhere": "RUNNING",
        "unknown": "RUNNING",
    }


@pytest.mark.parametrize("status", ["RUNNING", "FAILED", "KILLED"])
def test_a_version_whose_run_did_not_finish_is_never_promoted(
    client: MlflowClient, status: str
) -> None:
    # given a challenger registered by a run that is still RUNNING, or FAILED, or KILLED
    experiment = _experiment(client)
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


def test_a_project_names_its_own_model_and_experiment() -> None:
    # given settings with a project, with a project and a model name, and with neither
    hub = TrackingSettings.model_validate({"project": "hubspot"})
    named = TrackingSettings.model_validate({"project": "hubspot", "model_name": "crm"})
    # then the project's model and experiment are its own unless named, and the default stays
    assert (hub.model_name, hub.experiment) == ("inmarket-hubspot", "inmarket-hubspot")
    assert (named.model_name, named.experiment) == ("crm", "inmarket-hubspot")
    assert TrackingSettings().model_name == "inmarket"
    with pytest.raises(ValidationError, match="project"):
        TrackingSettings.model_validate({"project": "../other store"})


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
