"""The jobs end to end on a real SQLite MLflow store: training is repeatable, refuses what it
cannot train on honestly, switches to short-history mode and says so; evaluate re-scores a
registered version."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from features.engine import build_feature_table
from features.errors import ContractError
from features.settings import DataSettings, FeatureSettings
from serving.batch import score_batch
from tests.stores import client_of, copy_store, train_job
from tests.worlds import WORLD_SPEC
from training.forecast import ForecastJob
from training.job import EvaluateJob, TrainResult
from training.registry import CHAMPION, load_model, tracking_uri
from training.settings import TrackingSettings
from training.split import SplitError

pytestmark = pytest.mark.slow


def test_same_seed_same_data_same_metrics(
    trained: tuple[Path, TrainResult], world_dir: Path, world_features: Path, new_store: Path
) -> None:
    # given the session's training run
    # when the same job is run again on the same data, into another store
    again = train_job(new_store).run(world_dir, world_features)
    # then every metric of every scorer is the same (the session run also trained ablations)
    for name, values in again.evaluation.metrics.items():
        for metric, value in values.items():
            assert trained[1].evaluation.metrics[name][metric] == pytest.approx(value, abs=1e-6)


def test_evaluate_rescores_a_registered_version(
    trained: tuple[Path, TrainResult], world_dir: Path, world_features: Path
) -> None:
    # given the session's registered model
    store, result = trained
    # when it is evaluated again on the same data
    evaluation = EvaluateJob(tracking=TrackingSettings(store=store)).run(
        result.model_uri, world_dir, world_features
    )
    # then the model's metrics are those training logged
    assert evaluation.metrics["model"] == pytest.approx(result.evaluation.metrics["model"])


def test_cli_train_and_promote(world_dir: Path, world_features: Path, new_store: Path) -> None:
    # given a world, its features and an empty store
    store = new_store
    # when `inmarket train` and then `inmarket promote` run on them
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "inmarket.cli",
            "train",
            str(world_dir),
            "--features",
            str(world_features),
            "--store",
            str(store),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    first = subprocess.run(
        [sys.executable, "-m", "inmarket.cli", "promote", "--store", str(store)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # then training compares the model with the MQL rule, and promotion makes it the champion
    assert run.returncode == 0, run.stderr[-2000:]
    assert "mql_rule" in run.stdout and "the MQL rule's recall in the top 10%" in run.stdout
    assert first.returncode == 0 and "promoted to champion" in first.stdout
    uri = tracking_uri(store)  # its registry too: an earlier test's `connect` set another
    assert MlflowClient(uri, uri).get_model_version_by_alias("inmarket", CHAMPION)
    # and neither prints MLflow's noise, which a user cannot act on and would learn to ignore
    for printed in (run.stderr, first.stderr):
        assert "Inferred schema contains integer column" not in printed
        assert "CloudPickle" not in printed
        assert "Downloading artifacts" not in printed


@pytest.fixture(scope="module")
def eventless_world(world_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session world, every event naming an account that is not in it."""
    out = tmp_path_factory.mktemp("eventless")
    for path in world_dir.iterdir():
        if path.is_file():
            shutil.copy(path, out / path.name)
    events = pd.read_parquet(world_dir / "events.parquet")
    events.assign(account_id="A404").to_parquet(out / "events.parquet", index=False)
    return out


@pytest.mark.parametrize("given", ["data", "features"])
def test_training_refuses_a_world_without_usable_events(
    eventless_world: Path, new_store: Path, tmp_path: Path, given: str
) -> None:
    """Found by probing: a model was registered from 0 events."""
    # given a world none of whose events can be used (its features built first, or not)
    features = None
    if given == "features":
        features = tmp_path / "features.parquet"
        settings = FeatureSettings(every_days=14, snapshots=None).with_spec(WORLD_SPEC)
        build_feature_table(eventless_world, features, DataSettings(), settings)
    store = new_store
    # when a model is trained on it, then training refuses, naming the events and the reason
    with pytest.raises(
        ContractError,
        match=r"^events: none of its [\d,]+ rows can be used \(rejected: unknown_account [\d,]+\)"
        r", so the features hold no engagement",
    ):
        train_job(store).run(eventless_world, features)
    # and no MLflow run was made
    client = client_of(store)
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_a_nine_month_history_trains_in_short_history_mode(
    nine_months: Path,
    nine_month_trained: tuple[Path, TrainResult, list[str]],
    empty_store: Path,
    tmp_path: Path,
) -> None:
    # given nine months of history, too short for train / validation / test windows with
    # embargoes (they need more than 390 days of labelled snapshots)
    # when a model is trained on it (the session's)
    store, result, heard = nine_month_trained
    # then it is cross-validated over groups of accounts, says so and records it, and its
    # comparison with the MQL rule carries intervals on all labelled rows
    assert result.split["evaluation"] == "grouped_cv"
    assert result.split["test_rows"] == result.counts.labelled
    assert any(
        w.startswith("short-history mode: the labelled snapshots span") for w in result.warnings
    )
    run = client_of(store).get_run(result.run_id)
    assert run.data.tags["evaluation"] == "grouped_cv" and run.data.tags["short_history"] == "true"
    assert "test_recall_at_10_vs_mql_lo" in run.data.metrics
    lo, hi = result.evaluation.intervals["model"]["recall_at_10"]
    assert lo < result.evaluation.metrics["model"]["recall_at_10"] < hi
    served = load_model(result.model_uri)
    assert served.info["evaluation"] == "grouped_cv"
    # and `validate` told the same before any event was counted
    from features.validation import load_dataset

    report = load_dataset(nine_months, DataSettings()).report
    forecast = ForecastJob(report).lines(nine_months)
    counted = f"  {result.counts.labelled:,} snapshots labelled, {result.counts.positives:,} "
    assert any(line.startswith(counted + "positive;") for line in forecast), forecast
    # and the model is not evaluated on the snapshots it was fitted on
    with pytest.raises(SplitError, match="evaluate it on a later export"):
        EvaluateJob(tracking=TrackingSettings(store=store)).run(result.model_uri, nine_months)
    assert any(line.startswith("  short-history mode, 5 groups") for line in forecast)
    # and train told the export time, the spans and the same windows before it fitted
    windows = [line for line in forecast[1:] if not line.startswith("  note:")]
    assert heard[0].startswith("export time ") and "events from" in "".join(heard)
    assert heard[-len(windows) :] == windows, (heard, windows)

    class Stop(Exception):
        pass

    def stop(lines: list[str]) -> None:
        raise Stop

    stopping = copy_store(empty_store, tmp_path / "stopped")
    with pytest.raises(Stop):
        train_job(stopping, bootstrap_rounds=200).run(nine_months, announce=stop)
    stopped = client_of(stopping)
    experiments = [e.experiment_id for e in stopped.search_experiments()]
    assert not stopped.search_runs(experiments) and not stopped.search_registered_models()


def test_four_months_train_and_less_is_one_line(new_store: Path, tmp_path: Path) -> None:
    from inmarket.synthetic import WorldSpec, generate_world

    # given four months of history of 5,000 accounts, and of 2,000 (too few later wins)
    four, three = tmp_path / "four", tmp_path / "small"
    generate_world(WorldSpec(accounts=5000, seed=7, days=120), four)
    generate_world(WorldSpec(accounts=2000, seed=7, days=120), three)
    # when each is trained
    result = train_job(new_store).run(four)
    refused = subprocess.run(
        [sys.executable, "-m", "inmarket.cli", "train", str(three), "--store", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    # then four months give a short-history model whose snapshots start before the windows
    # are full (and it says so); the smaller world is refused in one line saying what is
    # missing
    assert result.split["evaluation"] == "grouped_cv"
    assert any("windows are not yet full" in w for w in result.warnings)
    # with its comparison against the MQL rule carrying intervals
    lo, hi = result.evaluation.ratios["model"]
    assert lo < hi and "interval" in result.evaluation.versus_mql("model")
    # and scored on the newest snapshot, whose windows are full (unlike most it was trained
    # on), its stages keep their meaning: a tenth of prospects in-market or ready
    model = load_model(result.model_uri)
    out = tmp_path / "ranked.parquet"
    ranked = score_batch(model, four, out, DataSettings(), FeatureSettings())
    prospects = ranked.ranked[ranked.ranked["status"] == "prospect"]
    top = prospects["stage"].isin(["in-market", "ready"]).mean()
    assert 0.08 <= top <= 0.12, prospects["stage"].value_counts()
    assert refused.returncode == 2
    error = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "short-history mode needs at least 10 accounts with" in error[0]
    assert "Traceback" not in refused.stderr
