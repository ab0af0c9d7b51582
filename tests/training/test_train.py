"""Training end to end with a real SQLite MLflow store: run, registry, promotion, honesty checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.stores import client_of, copy_store, train_job
from training.job import EvaluateJob, TrainResult
from training.registry import CHALLENGER, CHAMPION, load_model, promote, tracking_uri
from training.settings import TrackingSettings
from training.split import SplitError, time_split

pytestmark = pytest.mark.slow


@pytest.fixture
def store(trained: tuple[Path, TrainResult], tmp_path: Path) -> Path:
    return copy_store(trained[0], tmp_path / "mlruns")


def test_run_logs_everything_and_registers_a_challenger(trained: tuple[Path, TrainResult]) -> None:
    store, result = trained
    client = client_of(store)
    run = client.get_run(result.run_id)
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
    assert run.inputs.dataset_inputs and run.inputs.dataset_inputs[0].dataset.digest
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert artifacts == {
        "plots/gains_and_lift.png",
        "plots/calibration.png",
        "plots/feature_importance.png",
        "plots/model_vs_mql.png",
    }
    version = client.get_model_version_by_alias("inmarket", CHALLENGER)
    assert str(version.version) == result.version and version.run_id == result.run_id
    info = mlflow.models.get_model_info(result.model_uri)
    assert info.signature is not None and info.saved_input_example_info is not None
    assert store.joinpath("mlflow.db").exists()
    assert tracking_uri(store).startswith("sqlite:///")


def test_pyfunc_returns_probabilities_not_classes(
    trained: tuple[Path, TrainResult], world_features: Path
) -> None:
    store, result = trained
    client_of(store)
    rows = pd.read_parquet(world_features).sample(2000, random_state=0)
    rows = rows.astype({c: "str" for c in ("industry", "region", "employee_band")})  # as JSON
    probabilities = mlflow.pyfunc.load_model(result.model_uri).predict(rows)
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
    again = train_job(tmp_path / "mlruns").run(world_dir, world_features)
    for name, values in trained[1].evaluation.metrics.items():
        for metric, value in values.items():
            assert again.evaluation.metrics[name][metric] == pytest.approx(value, abs=1e-6)


def test_shuffled_labels_give_a_coin_flip(
    world_dir: Path, world_features: Path, tmp_path: Path
) -> None:
    result = train_job(tmp_path / "mlruns", shuffle_labels=True).run(world_dir, world_features)
    assert abs(result.evaluation.metrics["model"]["roc_auc"] - 0.5) < 0.1


def test_evaluate_rescores_a_registered_version(
    trained: tuple[Path, TrainResult], world_dir: Path, world_features: Path
) -> None:
    store, result = trained
    evaluation = EvaluateJob(tracking=TrackingSettings(store=store)).run(
        result.model_uri, world_dir, world_features
    )
    assert evaluation.metrics["model"] == pytest.approx(result.evaluation.metrics["model"])


def test_promotion_refuses_worse_and_accepts_better(
    store: Path, world_dir: Path, world_features: Path
) -> None:
    client = client_of(store)
    first = promote(client, "inmarket")
    assert first.promoted and first.reason == "no champion yet"
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


def test_force_promotes_a_worse_model_and_says_so(
    store: Path, world_dir: Path, world_features: Path
) -> None:
    client = client_of(store)
    promote(client, "inmarket")
    worse = train_job(store, shuffle_labels=True).run(world_dir, world_features)
    forced = promote(client, "inmarket", force=True)
    assert forced.promoted and forced.reason.endswith("(forced)")
    assert str(client.get_model_version_by_alias("inmarket", CHAMPION).version) == worse.version
    assert isinstance(load_model(f"models:/inmarket@{CHAMPION}").features, list)


def test_cli_train_and_promote(world_dir: Path, world_features: Path, tmp_path: Path) -> None:
    store = tmp_path / "mlruns"
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
    assert run.returncode == 0, run.stderr[-2000:]
    assert "mql_rule" in run.stdout and "the later wins the MQL rule finds" in run.stdout
    first = subprocess.run(
        [sys.executable, "-m", "inmarket.cli", "promote", "--store", str(store)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0 and "promoted to champion" in first.stdout
    assert MlflowClient(tracking_uri(store)).get_model_version_by_alias("inmarket", CHAMPION)


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

    world = tmp_path / "world"
    generate_world(WorldSpec(accounts=5000, seed=7), world)
    result = train_job(tmp_path / "mlruns").run(world)
    model, mql = result.evaluation.metrics["model"], result.evaluation.metrics["mql_rule"]
    assert model["roc_auc"] >= 0.85
    assert model["recall_at_10"] >= 1.5 * mql["recall_at_10"]
    assert result.evaluation.lead_times["model"][1] > 0


def test_mlflow_ui_serves_the_store(trained: tuple[Path, TrainResult]) -> None:
    """`mlflow ui` pointed at the store shows the experiment, the run and the registered model."""
    import json
    import socket
    import time
    import urllib.request

    store, result = trained
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")),
            "ui",
            "--backend-store-uri",
            tracking_uri(store),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/api/2.0/mlflow"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(
                    f"{base}/runs/get?run_id={result.run_id}", timeout=5
                ) as response:
                    run = json.load(response)["run"]
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(1)
        metrics = {m["key"] for m in run["data"]["metrics"]}
        assert {"test_pr_auc", "mql_rule_test_recall_at_10"} <= metrics
        with urllib.request.urlopen(
            f"{base}/registered-models/alias?name=inmarket&alias={CHALLENGER}", timeout=5
        ) as response:
            assert json.load(response)["model_version"]["run_id"] == result.run_id
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_matrix_predictions_equal_the_pandas_path(
    trained: tuple[Path, TrainResult], world_features: Path
) -> None:
    """The serving path predicts from a NumPy matrix; LightGBM's own pandas path is the
    reference: same margins and contributions, unknown categories treated as missing."""
    from training.model import prepare

    model = load_model(trained[1].model_uri)
    frame = pd.read_parquet(world_features).head(3000)
    frame.loc[frame.index[:50], "industry"] = pd.NA
    reference = prepare(frame, model.features, model.categories)
    expected = model.booster.predict(reference, raw_score=True)
    assert np.array_equal(model.predict(frame, raw_score=True), expected)
    rows = frame.astype({c: "object" for c in model.categories}).to_dict(orient="records")
    rows[0]["region"] = "atlantis"  # unknown: missing, as LightGBM does with pandas
    reference.loc[reference.index[0], "region"] = None
    expected[0] = model.booster.predict(reference.iloc[:1], raw_score=True)[0]
    assert np.array_equal(model.predict(model.matrix_from_records(rows), raw_score=True), expected)
    contributions = model.booster.predict(reference.iloc[1:200], pred_contrib=True)[:, :-1]
    assert np.array_equal(model.contributions(frame.iloc[1:200]).to_numpy(), contributions)
