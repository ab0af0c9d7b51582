"""What a training run records in MLflow: its configuration and parameters, the data's identity
(a fingerprint and the source it came from), every method's metrics with their intervals, the
plots, the test rows it was measured on, and the registered model (alias ``challenger``)."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, DataType, Schema

from features.leftovers import scratch_dir
from features.report import ValidationReport
from features.sources import TableSource
from training import plots
from training.evaluation import ABLATIONS, Evaluation
from training.labels import LabelCounts, label_words
from training.metrics import evaluate_scores
from training.model import LABEL, PYFUNC_CODE, InMarketModel
from training.registry import CHALLENGER, RegistryError, version_uri
from training.settings import TrainSettings
from training.split import Folds, Split

TEST_SET = "evaluation/test_set.parquet"
# beside the test rows: the challenger's own ranking score on each, as its evaluation scored
# it: its margin, or in short-history mode an out-of-fold calibrated probability (the
# registered model has seen every row, fitted on groups 1-4 of the accounts and stopped early
# and calibrated on group 0)
EVALUATED_SCORE = "score_as_evaluated"


def data_fingerprint(frame: pd.DataFrame) -> str:
    """A short hash of a table's values: the identity of the data a model was trained on."""
    hashed = pd.util.hash_pandas_object(_categories_as_text(frame), index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def _categories_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype(
        {c: "str" for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)}
    )


def run_name(dataset: str, settings: TrainSettings, extracted_at: datetime) -> str:
    """The run's name in MLflow: the dataset, the label and the export day."""
    return (
        f"{dataset} · {settings.label}, created within {settings.horizon_days}d · "
        f"{extracted_at:%Y-%m-%d}"
    )


def run_description(
    source: TableSource,
    split: Split | Folds,
    evaluation: Evaluation,
    counts: LabelCounts,
    report: ValidationReport,
    settings: TrainSettings,
) -> str:
    """The run's description in MLflow: what was trained on what, and what it showed."""
    m = evaluation.metrics
    mode = (
        f"cross-validated over {split.folds} groups of accounts (short history)"
        if isinstance(split, Folds)
        else "time split: train, validation and test windows with embargoes"
    )
    lines = [
        f"Trained on `{source.uri}` (export time {report.extracted_at:%Y-%m-%d}, taken from "
        f"{report.extracted_from}).",
        f"Label `{settings.label}`: {label_words(settings.label, settings.horizon_days)} after "
        f"a snapshot; {mode}; "
        f"{counts.labelled:,} labelled snapshots, {counts.positives:,} positive.",
        f"Test: recall in the top 10% {m['model']['recall_at_10']:.3f} against the MQL "
        f"rule's {m['mql_rule']['recall_at_10']:.3f}: {evaluation.versus_mql('model')}; "
        f"ROC AUC {m['model']['roc_auc']:.3f}, PR AUC {m['model']['pr_auc']:.3f}.",
    ]
    if "no_intent" in m:
        lines.append(f"Without third-party intent: {evaluation.versus_mql('no_intent')}.")
    return "\n\n".join(lines)


def log_run(
    *,
    config: dict[str, Any],
    settings: TrainSettings,
    source: TableSource,
    model: InMarketModel,
    split: Split | Folds,
    evaluation: Evaluation,
    counts: LabelCounts,
    labelled: pd.DataFrame,
    fingerprint: str,
) -> None:
    """Everything a training run records in the active MLflow run but the model itself."""
    _log_config(config, settings, model, split, fingerprint)
    _log_dataset(source, labelled, fingerprint)
    _log_comparison(evaluation)
    _log_fitted(model, split)
    mlflow.log_text(evaluation.table(), "evaluation/comparison.txt")
    mlflow.log_metrics({f"labels_{k}": v for k, v in counts.as_dict().items()})
    mode = split.describe()["evaluation"]
    mlflow.set_tags(
        {
            "data_fingerprint": fingerprint,
            "label": settings.label,
            "evaluation": mode,  # time_split, or grouped_cv: short-history mode
            "short_history": str(mode == "grouped_cv").lower(),
            **({"short_history_reason": split.reason} if isinstance(split, Folds) else {}),
        }
    )
    importance = _log_plots(model, split, evaluation, settings.seed)
    mlflow.log_dict(
        {
            "metrics": evaluation.metrics,
            "intervals": evaluation.intervals,
            "confidence": evaluation.confidence,
            "recall_at_10_vs_mql_intervals": evaluation.ratios,
            "lead_times": evaluation.lead_times,
            "lead_time_intervals": evaluation.lead_intervals,
            "deals_found_intervals": evaluation.found_intervals,
            "lead_time_deals": evaluation.deals,
            "ablations": ABLATIONS,
            "labels": counts.as_dict(),
        },
        "evaluation/metrics.json",
    )
    mlflow.log_dict(importance, "evaluation/importance.json")
    _log_test_set(split.test, evaluation.scores["model"])


def _log_config(
    config: dict[str, Any],
    settings: TrainSettings,
    model: InMarketModel,
    split: Split | Folds,
    fingerprint: str,
) -> None:
    """The configuration as JSON; the settings, the booster's size and the split as params."""
    mlflow.log_dict(config, "config.json")
    mlflow.log_params(
        {**settings.model_dump(exclude={"lightgbm"}), **settings.lightgbm.model_dump()}
    )
    mlflow.log_params(
        {
            "best_iteration": model.info["best_iteration"],
            "n_features": len(model.features),
            "data_fingerprint": fingerprint,
            **{k: v for k, v in split.describe().items()},
        }
    )


class TablesDatasetSource(DatasetSource):
    """A run's dataset source as MLflow records it: the input source's lineage (kind, URI, the
    parts of each table, a mapping file), whatever the kind, and of any length a run may hold
    (MLflow caps an input tag at 500 characters, a dataset source at 64 KB)."""

    def __init__(self, lineage: dict[str, Any]) -> None:
        self.lineage = lineage

    @staticmethod
    def _get_source_type() -> str:
        return "inmarket_tables"

    def load(self) -> str:
        """The URI of the tables (read them with ``features.sources.open_source``)."""
        return str(self.lineage["uri"])

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return False  # made from a TableSource only, never guessed from a raw URI

    @classmethod
    def _resolve(cls, raw_source: Any) -> TablesDatasetSource:
        raise NotImplementedError("made from a TableSource's lineage, not from a raw source")

    def to_dict(self) -> dict[str, Any]:
        return dict(self.lineage)

    @classmethod
    def from_dict(cls, source_dict: dict[Any, Any]) -> TablesDatasetSource:
        return cls(dict(source_dict))


def _log_dataset(source: TableSource, labelled: pd.DataFrame, fingerprint: str) -> None:
    """The data's identity without re-reading a million rows: our own fingerprint, where the
    tables came from (the source's URI and parts) and the schema of a sample."""
    sample = _categories_as_text(labelled.head(1000))
    # the label is declared, not inferred: an inferred integer column warns on every run
    # that it cannot hold missing values, and a label is never missing
    inferred = infer_signature(sample.drop(columns=LABEL)).inputs
    schema = Schema([*inferred.inputs, ColSpec(DataType.long, LABEL)])
    mlflow.log_input(
        MetaDataset(  # type: ignore[abstract]
            TablesDatasetSource(source.lineage()),
            name="labelled_snapshots",
            digest=fingerprint,
            schema=schema,
        ),
        context="training",
        tags={"rows": str(len(labelled)), "positives": str(int(labelled[LABEL].sum()))},
    )


def _log_comparison(evaluation: Evaluation) -> None:
    """Every method's test metrics, their intervals, its ratio to the MQL rule and its lead
    time, as ``test_*`` (the model) and ``<method>_test_*``."""
    for name, values in evaluation.metrics.items():
        prefix = "test" if name == "model" else f"{name}_test"
        mlflow.log_metrics({f"{prefix}_{k}": v for k, v in values.items()})
        for k, (lo, hi) in evaluation.intervals.get(name, {}).items():
            mlflow.log_metrics({f"{prefix}_{k}_lo": lo, f"{prefix}_{k}_hi": hi})
        if name in evaluation.ratios:
            ratio = values["recall_at_10"] / evaluation.metrics["mql_rule"]["recall_at_10"]
            lo, hi = evaluation.ratios[name]
            mlflow.log_metrics(
                {
                    f"{prefix}_recall_at_10_vs_mql": ratio,
                    f"{prefix}_recall_at_10_vs_mql_lo": lo,
                    f"{prefix}_recall_at_10_vs_mql_hi": hi,
                }
            )
        lead, deals = evaluation.lead_times[name]
        if not np.isnan(lead):
            mlflow.log_metric(f"{prefix}_lead_time_days", lead)
        mlflow.log_metric(f"{prefix}_deals_found", evaluation.deals_found(name))
        for key, bounds in (
            ("deals_found", evaluation.found_intervals),
            ("lead_time_days", evaluation.lead_intervals),
        ):
            lo, hi = bounds.get(name, (np.nan, np.nan))
            if np.isfinite(lo) and np.isfinite(hi):
                mlflow.log_metrics({f"{prefix}_{key}_lo": lo, f"{prefix}_{key}_hi": hi})
        mlflow.log_metric(f"{prefix}_lead_time_deals", deals)
    mlflow.log_metric("test_lead_time_deals_total", evaluation.deals)


def _log_fitted(model: InMarketModel, split: Split | Folds) -> None:
    """The model on the rows it was fitted on and stopped on: beside test, the gap says how
    much it memorised."""
    for part, frame in (("train", split.train), ("valid", split.valid)):
        fitted = evaluate_scores(
            model.predict(frame, raw_score=True),
            model.predict(frame),
            frame[LABEL].to_numpy(),
            frame["as_of"].to_numpy(),
        )
        mlflow.log_metrics({f"{part}_{k}": v for k, v in fitted.items() if np.isfinite(v)})


def _log_plots(
    model: InMarketModel, split: Split | Folds, evaluation: Evaluation, seed: int
) -> dict[str, dict[str, float]]:
    """The four plots; the features' importance they show (gain and mean |SHAP|)."""
    labels = split.test[LABEL].to_numpy()
    # mean |SHAP| on a seeded sample of test rows: the ranking of features is stable long
    # before every row is explained
    explained = split.test.sample(min(len(split.test), 20_000), random_state=seed)
    shap = model.contributions(explained).abs().mean()
    gain = pd.Series(model.booster.feature_importance("gain"), index=model.features)
    figures = {
        "plots/gains_and_lift.png": plots.gains_chart(labels, evaluation.scores),
        "plots/calibration.png": plots.calibration_plot(labels, evaluation.probabilities),
        "plots/feature_importance.png": plots.importance_plot(gain, shap),
        "plots/model_vs_mql.png": plots.comparison_plot(evaluation.metrics),
    }
    for path, figure in figures.items():
        mlflow.log_figure(figure, path)
        plt.close(figure)
    return {"gain": gain.to_dict(), "mean_abs_shap": shap.to_dict()}


def _log_test_set(test: pd.DataFrame, scores: np.ndarray) -> None:
    """The test rows with the model's score as evaluated (``EVALUATED_SCORE``): what
    ``promote`` compares a challenger and the champion on."""
    with scratch_dir("train") as tmp:
        test_file = tmp / Path(TEST_SET).name
        test.assign(**{EVALUATED_SCORE: scores}).to_parquet(test_file, index=False)
        mlflow.log_artifact(str(test_file), str(Path(TEST_SET).parent))


@contextmanager
def owned_temporary_files(label: str) -> Iterator[Path]:
    """A scratch folder (``scratch_dir``) that is, while open, the process's temporary folder
    (``tempfile.tempdir``), so MLflow makes its own temporary files inside it: the model it saves
    before logging it, each figure and dict. Named ``tmpXXXX``, no owner in the name, a killed
    run's would stay in the system's temporary folder forever; in a folder named by its owner,
    the next run removes them. The setting is the process's: for a run's main thread."""
    with scratch_dir(label) as folder:
        saved = tempfile.tempdir
        tempfile.tempdir = str(folder)
        try:
            yield folder
        finally:
            tempfile.tempdir = saved


def read_test_set(run_id: str, columns: list[str] | None = None) -> pd.DataFrame:
    """The test rows a training run logged (``columns`` of them, else all)."""
    with scratch_dir("promote") as tmp:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=TEST_SET, dst_path=str(tmp)
        )
        return pd.read_parquet(local, columns=columns)


def register_model(
    client: MlflowClient, name: str, model: InMarketModel, example: pd.DataFrame
) -> str:
    """Log the model as a pyfunc (models from code) with a signature and an input example from
    ``example``'s rows and register it as a new version of ``name``; the version. MLflow uploads
    the files before it creates the version. It is not the challenger yet: ``make_challenger``
    moves that alias once the run has finished."""
    example = example[model.features].head(5).astype({c: "str" for c in model.categories})
    with scratch_dir("train") as tmp:
        folder = model.save(tmp / "model")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=PYFUNC_CODE,
            artifacts={"model": str(folder)},
            signature=infer_signature(example, model.predict(example)),
            input_example=example,
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    client.set_model_version_tag(
        name, version, "test_pr_auc", f"{model.info['test_metrics']['pr_auc']:.6f}"
    )
    return version


def make_challenger(client: MlflowClient, name: str, version: str) -> None:
    """Point ``challenger`` at ``version``: the last step of a training, once its run has
    finished and the version's files are in the artifact store, so a training cut short (a
    server gone, a kill) leaves the alias where it was."""
    files = mlflow.artifacts.list_artifacts(artifact_uri=version_uri(name, version))
    listed = {Path(f.path).name for f in files}
    missing = {"MLmodel", "artifacts"} - listed
    if missing:
        raise RegistryError(
            f"model '{name}' version {version} lacks {', '.join(sorted(missing))} in the "
            "artifact store: it is not made challenger; train again"
        )
    client.set_registered_model_alias(name, CHALLENGER, version)
