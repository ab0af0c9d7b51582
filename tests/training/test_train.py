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
from serving.batch import score_batch
from tests.serving.server import Server
from tests.stores import client_of, copy_store, train_job
from tests.worlds import WORLD_SPEC
from training.job import EvaluateJob, ForecastJob, TrainResult
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


def test_run_logs_everything_and_registers_a_challenger(
    trained: tuple[Path, TrainResult], world_dir: Path
) -> None:
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
        # every metric with its interval; the ablations on the same rows
        "test_recall_at_10_lo",
        "test_recall_at_10_hi",
        "mql_rule_test_pr_auc_lo",
        "no_intent_test_recall_at_10",
        "no_intent_test_recall_at_10_vs_mql_lo",
        "buying_group_test_roc_auc_hi",
        "test_lead_time_deals_total",
    } <= set(run.data.metrics)
    for name in ("model", "no_intent", "buying_group", "mql_rule", "logistic", "engagement"):
        prefix = "test" if name == "model" else f"{name}_test"
        for metric in ("roc_auc", "pr_auc", "recall_at_10"):
            value = run.data.metrics[f"{prefix}_{metric}"]
            lo, hi = (
                run.data.metrics[f"{prefix}_{metric}_lo"],
                run.data.metrics[f"{prefix}_{metric}_hi"],
            )
            assert lo <= value <= hi and lo < hi, (name, metric)
        # lead days too, over the same replicates
        lead = run.data.metrics[f"{prefix}_lead_time_days"]
        lo, hi = (
            run.data.metrics[f"{prefix}_lead_time_days_lo"],
            run.data.metrics[f"{prefix}_lead_time_days_hi"],
        )
        assert lo <= lead <= hi and lo < hi, (name, "lead days")
    # and the model keeps every method's comparison for its card
    kept = load_model(result.model_uri).info["comparison"]
    assert set(kept) == {"model", "no_intent", "buying_group", "mql_rule", "logistic", "engagement"}
    assert kept["no_intent"]["lead_days_interval"][0] <= kept["no_intent"]["lead_days"]
    comparison = client.download_artifacts(result.run_id, "evaluation/comparison.txt")
    assert (
        "no_intent" in Path(comparison).read_text()
        and "95% interval" in Path(comparison).read_text()
    )
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
    # and the run is named and described, with the model's metrics on the rows it was fitted
    # and stopped on beside test
    assert run.info.run_name.startswith(f"{world_dir.name} · won, created within 90d · 20")
    assert run.data.tags["dataset"] == world_dir.name
    described = run.data.tags["mlflow.note.content"]
    assert (
        "Label `won`: a new-business deal created within 90 days, won" in described
        and "the MQL rule's" in described
    )
    for part in ("train", "valid"):
        assert 0.5 < run.data.metrics[f"{part}_roc_auc"] <= 1, part
        assert 0 < run.data.metrics[f"{part}_recall_at_10"] <= 1, part
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
    assert set(metrics) == {
        "model",
        "no_intent",
        "buying_group",
        "mql_rule",
        "logistic",
        "engagement",
    }


def test_same_seed_same_data_same_metrics(
    trained: tuple[Path, TrainResult], world_dir: Path, world_features: Path, tmp_path: Path
) -> None:
    # given the session's training run
    # when the same job is run again on the same data, into another store
    again = train_job(tmp_path / "mlruns").run(world_dir, world_features)
    # then every metric of every scorer is the same (the session run also trained ablations)
    for name, values in again.evaluation.metrics.items():
        for metric, value in values.items():
            assert trained[1].evaluation.metrics[name][metric] == pytest.approx(value, abs=1e-6)


def test_shuffled_labels_give_a_coin_flip(
    world_dir: Path, world_features: Path, tmp_path: Path
) -> None:
    from sklearn.metrics import roc_auc_score

    from training.job import _shuffled
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
        train, valid = _shuffled(labelled.split.train, labelled.split.valid, settings)
        model = fit_model(train, valid, seed=seed, params=settings.lightgbm, spec=labelled.spec)
        test = labelled.split.test
        aucs.append(roc_auc_score(test["label"], model.predict(test, raw_score=True)))
    # then on average their test ROC AUC is a coin flip, and none comes near the real model's
    assert abs(np.mean(aucs) - 0.5) < 0.08, aucs
    assert max(aucs) < 0.8, aucs


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
    # then, step by step: the first beats the MQL rule beyond noise and becomes champion, the
    # worse one is refused, and each is tagged with the decision
    first = promote(client, "inmarket")
    assert first.promoted and first.reason.startswith("no champion yet; test recall in the top")
    assert "vs the MQL rule's" in first.reason and "beats it by more than noise" in first.reason
    champion = client.get_model_version_by_alias("inmarket", CHAMPION).version

    worse = train_job(store, shuffle_labels=True).run(world_dir, world_features)
    refused = promote(client, "inmarket")
    assert not refused.promoted and "is worse" in refused.reason
    assert client.get_model_version_by_alias("inmarket", CHAMPION).version == champion
    assert client.get_model_version("inmarket", worse.version).tags["promotion"] == "refused"


def test_the_same_model_retrained_is_not_promoted_over_itself(
    store: Path, world_dir: Path, world_features: Path
) -> None:
    # given the session model as champion, retrained on the same data twice: with the same
    # seed (the same model) and with another seed (a model as good, trained by other chance)
    client = client_of(store)
    promote(client, "inmarket")
    same = train_job(store).run(world_dir, world_features)
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


def test_a_clearly_better_challenger_is_promoted(
    store: Path, world_dir: Path, world_features: Path, tmp_path: Path
) -> None:
    # given a champion trained on shuffled labels (forced in) and the real model after it
    empty = tmp_path / "fresh"
    train_job(empty, shuffle_labels=True).run(world_dir, world_features)
    client = client_of(empty)
    assert promote(client, "inmarket", force=True).promoted
    better = train_job(empty).run(world_dir, world_features)
    # when the real model is promoted
    accepted = promote(client, "inmarket")
    # then it beats the champion by more than noise on the same rows and is champion
    assert accepted.promoted and "beats it by more than noise" in accepted.reason
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
    assert not refused.promoted and "vs the MQL rule's" in refused.reason
    assert "beats it" not in refused.reason
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


@pytest.fixture(scope="module")
def nine_months(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from inmarket.synthetic import WorldSpec, generate_world

    world = tmp_path_factory.mktemp("nine_months")
    generate_world(WorldSpec(accounts=2500, seed=7, days=270), world)
    return world


def test_a_nine_month_history_trains_in_short_history_mode(
    nine_months: Path, tmp_path: Path
) -> None:
    # given nine months of history, too short for train / validation / test windows with
    # embargoes (they need more than 390 days of labelled snapshots)
    store = tmp_path / "mlruns"
    # when a model is trained on it
    heard: list[str] = []
    result = train_job(store, bootstrap_rounds=200).run(nine_months, announce=heard.extend)
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

    with pytest.raises(Stop):
        train_job(tmp_path / "stopped", bootstrap_rounds=200).run(nine_months, announce=stop)
    stopped = client_of(tmp_path / "stopped")
    experiments = [e.experiment_id for e in stopped.search_experiments()]
    assert not stopped.search_runs(experiments) and not stopped.search_registered_models()


def test_the_gate_needs_rows_the_champion_was_not_fitted_on(
    nine_months: Path, tmp_path: Path
) -> None:
    # given a short-history champion, fitted on every labelled snapshot of the world, and the
    # same training again as challenger
    store = tmp_path / "mlruns"
    train_job(store).run(nine_months)
    client = client_of(store)
    assert promote(client, "inmarket", force=True).promoted
    train_job(store, seed=11).run(nine_months)
    # when the challenger is promoted
    refused = promote(client, "inmarket")
    # then the gate refuses to compare them on rows the champion was fitted on
    assert not refused.promoted and "unseen by both" in refused.reason, refused.reason


def test_four_months_train_and_less_is_one_line(tmp_path: Path) -> None:
    from inmarket.synthetic import WorldSpec, generate_world

    # given four months of history of 5,000 accounts, and of 2,000 (too few later wins)
    four, three = tmp_path / "four", tmp_path / "small"
    generate_world(WorldSpec(accounts=5000, seed=7, days=120), four)
    generate_world(WorldSpec(accounts=2000, seed=7, days=120), three)
    # when each is trained
    result = train_job(tmp_path / "mlruns").run(four)
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
