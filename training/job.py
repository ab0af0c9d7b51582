"""Training and evaluation jobs: features -> labels -> time split -> model and baselines ->
metrics and plots -> one MLflow run -> a registered model version with alias ``challenger``."""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.sources import LocalArtifactDatasetSource  # type: ignore[attr-defined]
from mlflow.models import infer_signature

from features.engine import build_feature_table, load_small_tables
from features.families import FeatureConfig
from features.mapping import Mapping
from features.tables import Dataset
from inmarket.config import Config
from serving.drift import reference_bins
from training import plots
from training.baselines import fit_baselines
from training.labels import LabelCounts, label_snapshots
from training.metrics import evaluate_scores, lead_time_days
from training.model import LABEL, InMarketModel, InMarketPyfunc, LightGBMParams, fit_model
from training.registry import CHALLENGER, TEST_SET, connect, load_model


class SplitError(ValueError):
    """Not enough labelled history for the requested split."""


@dataclass
class Split:
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame

    def describe(self) -> dict[str, Any]:
        def span(f: pd.DataFrame) -> str:
            return f"{f['as_of'].min():%Y-%m-%d}..{f['as_of'].max():%Y-%m-%d}"

        return {
            f"{n}_{k}": v
            for n, f in (("train", self.train), ("valid", self.valid), ("test", self.test))
            for k, v in (("rows", len(f)), ("positives", int(f[LABEL].sum())), ("as_of", span(f)))
        }


def time_split(
    labelled: pd.DataFrame, *, test_days: int, validation_days: int, embargo_days: int
) -> Split:
    """train <= T1 < validation <= T2 < test, with a gap of one label horizon between them, so
    no training label window overlaps the validation or test period."""
    last = labelled["as_of"].max()
    test_start = last - pd.Timedelta(days=test_days)
    t2 = test_start - pd.Timedelta(days=embargo_days)
    valid_start = t2 - pd.Timedelta(days=validation_days)
    t1 = valid_start - pd.Timedelta(days=embargo_days)
    split = Split(
        labelled[labelled["as_of"] <= t1],
        labelled[(labelled["as_of"] > valid_start) & (labelled["as_of"] <= t2)],
        labelled[labelled["as_of"] > test_start],
    )
    for name, part in (("train", split.train), ("validation", split.valid), ("test", split.test)):
        if part.empty or part[LABEL].nunique() < 2:
            raise SplitError(
                f"the {name} window has {len(part)} labelled rows and "
                f"{int(part[LABEL].sum()) if len(part) else 0} positives: it needs both classes. "
                "Use more history, or shorten train.test_days / train.validation_days."
            )
    return split


def data_fingerprint(frame: pd.DataFrame) -> str:
    hashed = pd.util.hash_pandas_object(
        frame.astype(
            {c: "str" for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)}
        ),
        index=False,
    ).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


@dataclass
class Evaluation:
    metrics: dict[str, dict[str, float]]
    lead_times: dict[str, tuple[float, int]]
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)

    def table(self) -> str:
        columns = ["roc_auc", "pr_auc", "brier", "lift_at_10", "recall_at_10"]
        lines = [f"{'':<12}" + "".join(f"{c:>14}" for c in columns) + f"{'lead days':>12}"]
        for name, m in self.metrics.items():
            lead, n = self.lead_times[name]
            lines.append(
                f"{name:<12}" + "".join(f"{m[c]:>14.4f}" for c in columns) + f"{lead:>8.0f} ({n})"
            )
        return "\n".join(lines)


def evaluate(
    model: InMarketModel, baselines: list[Any], test: pd.DataFrame, opportunities: pd.DataFrame
) -> Evaluation:
    """Model and baselines on the same test rows."""
    labels, as_of = test[LABEL].to_numpy(), test["as_of"].to_numpy()
    scores = {"model": model.margin(test)}
    probabilities = {"model": model.predict_proba(test)}
    for baseline in baselines:
        scores[baseline.name] = np.asarray(baseline.score(test), dtype=float)
        probabilities[baseline.name] = baseline.predict_proba(test)
    metrics = {n: evaluate_scores(scores[n], probabilities[n], labels, as_of) for n in scores}
    leads = {n: lead_time_days(test, scores[n], opportunities) for n in scores}
    return Evaluation(metrics, leads, scores, probabilities)


@dataclass
class TrainResult:
    run_id: str
    version: str
    model_uri: str
    evaluation: Evaluation
    counts: LabelCounts
    split: dict[str, Any]
    fingerprint: str


class TrainJob:
    """``inmarket train``: everything from tables (or a feature file) to a challenger."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def features(self, data: Path, features_path: Path | None) -> tuple[pd.DataFrame, Dataset]:
        """The feature table (read, or built from ``data``) and the validated small tables."""
        cfg = self.config
        mapping = Mapping.load(cfg.data.mapping) if cfg.data.mapping else None
        tables = load_small_tables(data, mapping, cfg.data.extracted_at, cfg.data.max_bad_share)
        if features_path is not None:
            return pd.read_parquet(features_path), tables
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "features.parquet"
            build_feature_table(
                data,
                out,
                mapping=cfg.data.mapping,
                extracted_at=cfg.data.extracted_at,
                max_bad_share=cfg.data.max_bad_share,
                every_days=cfg.train.every_days,
                snapshots=None,
                engine=cfg.features.engine,
                buckets=cfg.features.buckets,
                spark_master=cfg.features.spark_master,
                config=FeatureConfig(cfg.features.windows, cfg.features.intent_delay_days),
            )
            return pd.read_parquet(out), tables

    def run(self, data: Path, features_path: Path | None = None) -> TrainResult:
        cfg, tc = self.config, self.config.train
        table, dataset = self.features(data, features_path)
        labelled, counts = label_snapshots(
            table,
            dataset.opportunities,
            extracted_at=dataset.report.extracted_at,
            horizon_days=tc.horizon_days,
            kind=tc.label,
            include_customers=tc.include_customers,
        )
        split = time_split(
            labelled,
            test_days=tc.test_days,
            validation_days=tc.validation_days,
            embargo_days=tc.horizon_days,
        )
        if tc.shuffle_labels:  # permutation check: learn from noise, test on the truth
            rng = np.random.default_rng(tc.seed)
            for part in (split.train, split.valid):
                part[LABEL] = rng.permutation(part[LABEL].to_numpy())
        params = LightGBMParams(
            learning_rate=tc.learning_rate,
            num_leaves=tc.num_leaves,
            min_data_in_leaf=tc.min_data_in_leaf,
            max_rounds=tc.max_rounds,
            early_stopping_rounds=tc.early_stopping_rounds,
        )
        model = fit_model(split.train, split.valid, seed=tc.seed, params=params)
        baselines = fit_baselines(split.train, split.valid, seed=tc.seed)
        evaluation = evaluate(model, baselines, split.test, dataset.opportunities)
        fingerprint = data_fingerprint(labelled)
        model.info.update(
            {
                "trained_at": pd.Timestamp.now("UTC").isoformat(timespec="seconds"),
                "test_metrics": evaluation.metrics["model"],
                "mql_test_metrics": evaluation.metrics["mql_rule"],
                "horizon_days": tc.horizon_days,
                # the score 0-100 is the percentile among the test window's accounts
                "reference": reference_bins(split.train, model.features),
                "score_quantiles": np.quantile(
                    evaluation.probabilities["model"], np.linspace(0, 1, 101)
                ).tolist(),
                "label": tc.label,
            }
        )
        client = connect(cfg.tracking.store, cfg.tracking.uri, cfg.tracking.experiment)
        with mlflow.start_run() as run:
            self._log(
                str(Path(data).resolve()), model, split, evaluation, counts, labelled, fingerprint
            )
            version = self._register(client, run.info.run_id, model, split)
        return TrainResult(
            run.info.run_id,
            version,
            f"models:/{cfg.tracking.model_name}/{version}",
            evaluation,
            counts,
            split.describe(),
            fingerprint,
        )

    def _log(
        self,
        source: str,
        model: InMarketModel,
        split: Split,
        evaluation: Evaluation,
        counts: LabelCounts,
        labelled: pd.DataFrame,
        fingerprint: str,
    ) -> None:
        tc = self.config.train
        mlflow.log_dict(json.loads(self.config.model_dump_json()), "config.json")
        mlflow.log_params({k: v for k, v in tc.model_dump().items()})
        mlflow.log_params(
            {
                "best_iteration": model.info["best_iteration"],
                "n_features": len(model.features),
                "data_fingerprint": fingerprint,
                **{k: v for k, v in split.describe().items()},
            }
        )
        # The data's identity without re-reading a million rows: our own fingerprint, the
        # source folder and the schema of a sample.
        sample = labelled.head(1000).astype(
            {
                c: "str"
                for c in labelled.columns
                if isinstance(labelled[c].dtype, pd.CategoricalDtype)
            }
        )
        mlflow.log_input(
            MetaDataset(  # type: ignore[abstract]
                LocalArtifactDatasetSource(source),
                name="labelled_snapshots",
                digest=fingerprint,
                schema=infer_signature(sample).inputs,
            ),
            context="training",
            tags={"rows": str(len(labelled)), "positives": str(int(labelled[LABEL].sum()))},
        )
        for name, values in evaluation.metrics.items():
            prefix = "test" if name == "model" else f"{name}_test"
            mlflow.log_metrics({f"{prefix}_{k}": v for k, v in values.items()})
            lead, deals = evaluation.lead_times[name]
            if not np.isnan(lead):
                mlflow.log_metric(f"{prefix}_lead_time_days", lead)
            mlflow.log_metric(f"{prefix}_lead_time_deals", deals)
        mlflow.log_metrics({f"labels_{k}": v for k, v in counts.as_dict().items()})
        mlflow.set_tags({"data_fingerprint": fingerprint, "label": tc.label})
        labels = split.test[LABEL].to_numpy()
        # mean |SHAP| on a seeded sample of test rows: the ranking of features is stable long
        # before every row is explained
        explained = split.test.sample(min(len(split.test), 20_000), random_state=tc.seed)
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
        mlflow.log_dict(
            {
                "metrics": evaluation.metrics,
                "lead_times": evaluation.lead_times,
                "labels": counts.as_dict(),
            },
            "evaluation/metrics.json",
        )
        mlflow.log_dict(
            {"gain": gain.to_dict(), "mean_abs_shap": shap.to_dict()}, "evaluation/importance.json"
        )
        with tempfile.TemporaryDirectory() as tmp:
            test_file = Path(tmp) / Path(TEST_SET).name
            split.test.to_parquet(test_file, index=False)
            mlflow.log_artifact(str(test_file), str(Path(TEST_SET).parent))

    def _register(self, client: Any, run_id: str, model: InMarketModel, split: Split) -> str:
        name = self.config.tracking.model_name
        example = split.test[model.features].head(5)
        example = example.astype({c: "str" for c in model.categories})
        with tempfile.TemporaryDirectory() as tmp:
            folder = model.save(Path(tmp) / "model")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=InMarketPyfunc(),
                artifacts={"model": str(folder)},
                signature=infer_signature(example, model.predict_proba(example)),
                input_example=example,
                registered_model_name=name,
            )
        version = str(info.registered_model_version)
        client.set_registered_model_alias(name, CHALLENGER, version)
        client.set_model_version_tag(
            name, version, "test_pr_auc", f"{model.info['test_metrics']['pr_auc']:.6f}"
        )
        return version


class EvaluateJob:
    """``inmarket evaluate``: re-score any registered version on any data."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def run(self, model_uri: str, data: Path, features_path: Path | None = None) -> Evaluation:
        cfg = self.config
        connect(cfg.tracking.store, cfg.tracking.uri, cfg.tracking.experiment)
        model = load_model(model_uri)
        table, dataset = TrainJob(cfg).features(data, features_path)
        labelled, _ = label_snapshots(
            table,
            dataset.opportunities,
            extracted_at=dataset.report.extracted_at,
            horizon_days=cfg.train.horizon_days,
            kind=cfg.train.label,
            include_customers=cfg.train.include_customers,
        )
        split = time_split(
            labelled,
            test_days=cfg.train.test_days,
            validation_days=cfg.train.validation_days,
            embargo_days=cfg.train.horizon_days,
        )
        baselines = fit_baselines(split.train, split.valid, seed=cfg.train.seed)
        return evaluate(model, baselines, split.test, dataset.opportunities)
