"""What a training run records in MLflow: metrics with intervals, the data's identity, plots,
the run's name and description, and the registered challenger."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from tests.stores import client_of, experiment_id
from training.job import TrainResult
from training.registry import CHALLENGER, RegistryError, load_model, tracking_uri, version_by_alias
from training.tracking import make_challenger


@pytest.mark.slow
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
    # and where the tables came from: the input source's kind, URI and every table's parts
    dataset = run.inputs.dataset_inputs[0].dataset
    assert dataset.source_type == "inmarket_tables"
    assert json.loads(dataset.source) == {
        "kind": "folder",
        "uri": world_dir.resolve().as_uri(),
        "parts": {
            table: [f"{table}.parquet"]
            for table in ("accounts", "people", "events", "intent", "opportunities")
        },
    }
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


def test_a_version_whose_files_are_not_in_the_artifact_store_is_not_made_challenger(
    client: MlflowClient,
) -> None:
    # given a registered version whose model files never reached the artifact store
    run = client.create_run(experiment_id(client)).info
    client.create_registered_model("inmarket")
    client.create_model_version("inmarket", "file:///nowhere", run.run_id)
    # when it is to be made challenger
    with pytest.raises(RegistryError, match="version 1 lacks MLmodel, artifacts in the artifact"):
        make_challenger(client, "inmarket", "1")
    # then it is refused, and the alias is not set
    assert version_by_alias(client, "inmarket", CHALLENGER) is None
