"""Training end to end with a real SQLite MLflow store: run, registry, promotion, honesty checks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from features.engine import build_feature_table
from features.errors import ConfigError, ContractError
from features.settings import DataSettings, FeatureSettings
from tests.serving.server import Server
from tests.stores import client_of, copy_store, train_job
from tests.worlds import WORLD_SPEC
from training.job import EvaluateJob, TrainResult
from training.registry import (
    CHALLENGER,
    CHAMPION,
    ROLLED_BACK,
    RegistryError,
    load_model,
    promote,
    roll_back,
    tracking_uri,
)
from training.settings import TrackingSettings
from training.split import SplitError, time_split

pytestmark = pytest.mark.slow


@pytest.fixture
def store(trained: tuple[Path, TrainResult], tmp_path: Path) -> Path:
    return copy_store(trained[0], tmp_path / "mlruns")


def test_run_logs_everything_and_registers_a_challenger(trained: tuple[Path, TrainResult]) -> None:
    # given the session's training run on a SQLite store
    store, result = trained
    client = client_of(store)
    # when its run, plots and registered version are read back
    run = client.get_run(result.run_id)
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    version = client.get_model_version_by_alias("inmarket", CHALLENGER)
    info = mlflow.models.get_model_info(result.model_uri)
    # then the run has every metric, the data's fingerprint and dataset, the four plots, and the
    # model is the challenger with a signature and an input example
    assert {
        "test_roc_auc",
        "test_pr_auc",
        "test_brier",
        "test_lift_at_10",
        "test_recall_at_10",
        "mql_rule_test_recall_at_10",
        "logistic_test_pr_auc",
        "engagement_test_roc_auc",
        "test_lead_time_deals",
        "labels_positives",
    } <= set(run.data.metrics)
    assert run.data.params["data_fingerprint"] == result.fingerprint
    assert run.inputs is not None
    assert run.inputs.dataset_inputs and run.inputs.dataset_inputs[0].dataset.digest
    assert artifacts == {
        "plots/gains_and_lift.png",
        "plots/calibration.png",
        "plots/feature_importance.png",
        "plots/model_vs_mql.png",
    }
    assert str(version.version) == result.version and version.run_id == result.run_id
    assert info.signature is not None and info.saved_input_example_info is not None
    assert store.joinpath("mlflow.db").exists()
    assert tracking_uri(store).startswith("sqlite:///")


def test_pyfunc_returns_probabilities_not_classes(
    trained: tuple[Path, TrainResult], world_features: Path
) -> None:
    # given the trained model and 2,000 rows with categories as strings, as JSON has them
    store, result = trained
    client_of(store)
    rows = pd.read_parquet(world_features).sample(2000, random_state=0)
    rows = rows.astype({c: "str" for c in ("industry", "region", "employee_band")})  # as JSON
    # when the model is loaded as an MLflow pyfunc and predicts them
    probabilities = mlflow.pyfunc.load_model(result.model_uri).predict(rows)
    # then the answers are many distinct probabilities, not 0/1 classes
    assert probabilities.min() >= 0 and probabilities.max() <= 1
    assert len(np.unique(probabilities)) > 20 and not set(np.unique(probabilities)) <= {0, 1}


def test_model_beats_the_mql_rule_on_the_same_rows(trained: tuple[Path, TrainResult]) -> None:
    metrics = trained[1].evaluation.metrics
    assert metrics["model"]["roc_auc"] > metrics["mql_rule"]["roc_auc"]
    assert metrics["model"]["recall_at_10"] > metrics["mql_rule"]["recall_at_10"]
    assert set(metrics) == {"model", "mql_rule", "logistic", "engagement"}


def test_same_seed_same_data_same_metrics(
    trained: tuple[Path, TrainResult], world_dir: Path, world_features: Path, tmp_path: Path
) -> None:
    # given the session's training run
    # when the same job is run again on the same data, into another store
    again = train_job(tmp_path / "mlruns").run(world_dir, world_features)
    # then every metric of every scorer is the same
    for name, values in trained[1].evaluation.metrics.items():
        for metric, value in values.items():
            assert again.evaluation.metrics[name][metric] == pytest.approx(value, abs=1e-6)


def test_shuffled_labels_give_a_coin_flip(
    world_dir: Path, world_features: Path, tmp_path: Path
) -> None:
    # given the session's world and features
    # when a model is trained on shuffled labels
    result = train_job(tmp_path / "mlruns", shuffle_labels=True).run(world_dir, world_features)
    # then its test ROC AUC is a coin flip
    assert abs(result.evaluation.metrics["model"]["roc_auc"] - 0.5) < 0.1


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


def test_promotion_refuses_worse_and_accepts_better(
    store: Path, world_dir: Path, world_features: Path
) -> None:
    # given a store with a challenger and no champion
    client = client_of(store)
    # when it is promoted, then a worse model and then a better one are trained and promoted
    # then, step by step: the first becomes champion, the worse one is refused and the better
    # one accepted, each tagged with the decision
    first = promote(client, "inmarket")
    assert first.promoted and first.reason.startswith("no champion yet; test PR AUC")
    assert "beats the MQL rule's" in first.reason
    champion = client.get_model_version_by_alias("inmarket", CHAMPION).version

    worse = train_job(store, shuffle_labels=True).run(world_dir, world_features)
    refused = promote(client, "inmarket")
    assert not refused.promoted and "worse than" in refused.reason
    assert client.get_model_version_by_alias("inmarket", CHAMPION).version == champion
    assert client.get_model_version("inmarket", worse.version).tags["promotion"] == "refused"

    better = train_job(store).run(world_dir, world_features)
    accepted = promote(client, "inmarket")
    assert accepted.promoted and "not worse than" in accepted.reason
    assert str(client.get_model_version_by_alias("inmarket", CHAMPION).version) == better.version
    assert client.get_model_version("inmarket", better.version).tags["promotion"] == "accepted"


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


def test_a_first_model_worse_than_the_mql_rule_is_refused_without_force(
    store: Path, world_dir: Path, world_features: Path, tmp_path: Path
) -> None:
    # given an empty store and a model trained on shuffled labels
    empty = tmp_path / "empty"
    train_job(empty, shuffle_labels=True).run(world_dir, world_features)
    client = client_of(empty)
    # when it is promoted, rolled back to, then forced
    refused = promote(client, "inmarket")
    with pytest.raises(RegistryError, match="has never been champion"):
        roll_back(client, "inmarket", str(refused.version))
    forced = promote(client, "inmarket", force=True)
    # then the gate compares it with the MQL rule on its test rows and refuses, a rollback
    # cannot slip it in, until forced
    assert not refused.promoted and "does not beat the MQL rule's" in refused.reason
    assert forced.promoted and forced.reason.endswith("(forced)")


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


def test_a_rolled_back_champion_is_not_put_back_by_a_plain_promote(
    store: Path, world_dir: Path, world_features: Path
) -> None:
    # given a champion v1 and a retrain put over it (v2)
    client = client_of(store)
    first = promote(client, "inmarket")
    train_job(store, seed=11).run(world_dir, world_features)
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


def test_force_promotes_a_worse_model_and_says_so(
    store: Path, world_dir: Path, world_features: Path
) -> None:
    # given a champion and a worse challenger trained on shuffled labels
    client = client_of(store)
    promote(client, "inmarket")
    worse = train_job(store, shuffle_labels=True).run(world_dir, world_features)
    # when the challenger is promoted with force
    forced = promote(client, "inmarket", force=True)
    # then it becomes the champion, the reason says forced, and it loads
    assert forced.promoted and forced.reason.endswith("(forced)")
    assert str(client.get_model_version_by_alias("inmarket", CHAMPION).version) == worse.version
    assert isinstance(load_model(f"models:/inmarket@{CHAMPION}").features, list)


def test_cli_train_and_promote(world_dir: Path, world_features: Path, tmp_path: Path) -> None:
    # given a world, its features and an empty store
    store = tmp_path / "mlruns"
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
    assert "mql_rule" in run.stdout and "the later wins the MQL rule finds" in run.stdout
    assert first.returncode == 0 and "promoted to champion" in first.stdout
    assert MlflowClient(tracking_uri(store)).get_model_version_by_alias("inmarket", CHAMPION)


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
    eventless_world: Path, tmp_path: Path, given: str
) -> None:
    """Found by probing: a model was registered from 0 events."""
    # given a world none of whose events can be used (its features built first, or not)
    features = None
    if given == "features":
        features = tmp_path / "features.parquet"
        settings = FeatureSettings(every_days=14, snapshots=None).with_spec(WORLD_SPEC)
        build_feature_table(eventless_world, features, DataSettings(), settings)
    store = tmp_path / "mlruns"
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


def test_too_little_history_is_a_clear_error() -> None:
    frame = pd.DataFrame(
        {"as_of": pd.to_datetime(["2025-01-01"] * 4, utc=True), "label": [0, 1, 0, 1]}
    )
    with pytest.raises(SplitError, match="the train window has 0 labelled rows"):
        time_split(frame, test_days=120, validation_days=90, embargo_days=90)


def test_reference_world_meets_the_quality_bar(tmp_path: Path) -> None:
    """The issue's bar, on the synthetic world of 5,000 accounts, seed 7: test ROC AUC at
    least 0.85 and at least 1.5x the later wins the MQL rule finds in its top 10%."""
    from inmarket.synthetic import WorldSpec, generate_world

    # given the reference world
    world = tmp_path / "world"
    generate_world(WorldSpec(accounts=5000, seed=7), world)
    # when a model is trained on it
    result = train_job(tmp_path / "mlruns").run(world)
    # then it meets the bar against the MQL rule and flags later wins ahead of time
    model, mql = result.evaluation.metrics["model"], result.evaluation.metrics["mql_rule"]
    assert model["roc_auc"] >= 0.85
    assert model["recall_at_10"] >= 1.5 * mql["recall_at_10"]
    assert result.evaluation.lead_times["model"][1] > 0


def test_mlflow_ui_serves_the_store(trained: tuple[Path, TrainResult], tmp_path: Path) -> None:
    """`mlflow ui` pointed at the store shows the experiment, the run and the registered model."""
    # given `mlflow ui` on the store with a trained challenger
    store, result = trained
    api = "/api/2.0/mlflow"
    with Server(
        {},
        tmp_path,
        lambda port: [
            str(Path(sys.executable).with_name("mlflow")),
            "ui",
            "--backend-store-uri",
            tracking_uri(store),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
    ) as server:
        # when its API is asked for the run and for the challenger
        run = server.wait(f"{api}/runs/get?run_id={result.run_id}")
        challenger = httpx.get(
            f"{server.url}{api}/registered-models/alias?name=inmarket&alias={CHALLENGER}",
            timeout=5,
        )
        # then the run has its metrics and the challenger is that run's model
        assert run.status_code == 200, run.text
        metrics = {m["key"] for m in run.json()["run"]["data"]["metrics"]}
        assert {"test_pr_auc", "mql_rule_test_recall_at_10"} <= metrics
        assert challenger.status_code == 200, challenger.text
        assert challenger.json()["model_version"]["run_id"] == result.run_id


def test_matrix_predictions_equal_the_pandas_path(
    trained: tuple[Path, TrainResult], world_features: Path
) -> None:
    """The serving path predicts from a NumPy matrix; LightGBM's own pandas path is the
    reference: same margins and contributions, unknown categories treated as missing."""
    from training.model import prepare

    # given the trained model and 3,000 feature rows, some with a missing industry and one
    # with an unknown region, and LightGBM's answers on its pandas path
    model = load_model(trained[1].model_uri)
    frame = pd.read_parquet(world_features).head(3000)
    frame.loc[frame.index[:50], "industry"] = pd.NA
    reference = prepare(frame, model.features, model.categories)
    expected = model.booster.predict(reference, raw_score=True)
    rows = frame.astype({c: "object" for c in model.categories}).to_dict(orient="records")
    rows[0]["region"] = "atlantis"  # unknown: missing, as LightGBM does with pandas
    # when the model predicts from the frame, from the records' matrix, and explains
    from_frame = model.predict(frame, raw_score=True)
    from_records = model.predict(model.matrix_from_records(rows), raw_score=True)
    explained = model.contributions(frame.iloc[1:200]).to_numpy()
    # then margins and contributions are LightGBM's own, exactly
    assert np.array_equal(from_frame, expected)
    reference.loc[reference.index[0], "region"] = None
    expected[0] = model.booster.predict(reference.iloc[:1], raw_score=True)[0]
    assert np.array_equal(from_records, expected)
    contributions = np.asarray(model.booster.predict(reference.iloc[1:200], pred_contrib=True))[
        :, :-1
    ]
    assert np.array_equal(explained, contributions)
