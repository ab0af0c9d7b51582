"""The Spark engine: the same ``build_bucket`` pandas function, run per bucket by Spark.

Spark reads each events part itself (``TableSource.spark_input``), a pandas step maps it to
canonical columns (``TableSource.to_canonical``) and tags each row with its account's hash
bucket, and ``cogroup(...).applyInPandas`` hands every bucket's events and accounts to
``features.plan.build_bucket``. Each bucket returns its feature rows plus one
row carrying its validation report, so the rejects are counted on Spark exactly as locally.

Point it at a cluster with ``--spark-master spark://host:7077`` (or ``yarn``, ``k8s://...``);
executors need Python 3.11 with this package and its dependencies installed (``pip install
inmarket[spark]``), and the data on storage they can read (a folder at the same path).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from features.catalogue import catalogue
from features.contract import DOMAIN_COLUMN
from features.io import ROW_COLUMN, SOURCE_COLUMN, RawSource, text_table
from features.plan import BuildPlan, bucket_of, build_bucket, event_buckets
from features.report import ValidationReport
from features.rules import DERIVED_PREFIX
from features.sources import SparkInput, TablePart, TableSource

_BUCKET, _REPORT = "_bucket", "_report"
# the events' columns as Spark carries them: text, bar the row number and the bucket
_TEXT_COLUMNS = (
    "event_id",
    "timestamp",
    "account_id",
    "person_id",
    "event_type",
    "channel",
    "topic",
    "weight",
    DOMAIN_COLUMN,
    DERIVED_PREFIX + "event_type",  # what a derivation rule did, for the report
)
_EVENT_COLUMNS = [*_TEXT_COLUMNS, ROW_COLUMN, SOURCE_COLUMN, _BUCKET]
_PANDAS3_WARNING = "ignore:PySpark does not yet fully support pandas:FutureWarning"


def spark_session(master: str) -> Any:
    """A Spark session in UTC with Arrow transfers, running this very Python.

    The driver's heap is 3 GB unless ``INMARKET_SPARK_DRIVER_MEMORY`` says otherwise (it only
    takes effect when this call starts the JVM)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master(master)
        .appName("inmarket-features")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.ui.enabled", "false")
        # Spark's 1 GB default driver heap runs out collecting 100,000 accounts' features
        .config("spark.driver.memory", os.environ.get("INMARKET_SPARK_DRIVER_MEMORY", "3g"))
        .config("spark.driver.maxResultSize", "2g")
        # PySpark 4.3 warns on every Arrow batch that pandas 3 is not fully supported (the parts
        # used here are checked: docs/architecture.md); one line a batch floods executors' logs
        .config("spark.executorEnv.PYTHONWARNINGS", _PANDAS3_WARNING)
        .getOrCreate()
    )


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column as text; timestamps as ISO 8601 UTC, numbers in their exact repr."""
    out = pd.DataFrame(index=frame.index)
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_datetime64_any_dtype(column):
            stamps = (
                column.dt.tz_localize("UTC")
                if column.dt.tz is None
                else column.dt.tz_convert("UTC")
            )
            out[name] = stamps.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        elif name == ROW_COLUMN:
            out[name] = column.astype("int64")
        else:
            out[name] = column.astype("str").where(column.notna())
    return out


def _for_arrow(frame: pd.DataFrame, text: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """pandas 3 text columns (Arrow-backed) as plain objects, which PySpark's Arrow path takes;
    the ``text`` columns become objects even when they are all missing."""
    for name in frame.columns:
        if name in text or pd.api.types.is_string_dtype(frame[name]) or frame[name].dtype == object:
            values = frame[name].astype(object)
            frame[name] = values.where(values.notna(), None)
    return frame


def _prepare(
    chunks: Iterator[pd.DataFrame], *, plan: BuildPlan, source: TableSource, part: TablePart
) -> Iterator[pd.DataFrame]:
    for chunk in chunks:
        frame = _as_text(source.to_canonical(part, chunk))
        frame[_BUCKET] = event_buckets(text_table(frame), plan)
        frame[SOURCE_COLUMN] = part.name
        yield _for_arrow(frame.reindex(columns=_EVENT_COLUMNS), _TEXT_COLUMNS)


def _bucket(
    events: pd.DataFrame, accounts: pd.DataFrame, *, plan: BuildPlan, columns: list[str]
) -> pd.DataFrame:
    raw = [
        RawSource(
            "events",
            str(name),
            part.drop(columns=[SOURCE_COLUMN, _BUCKET])
            .dropna(axis=1, how="all")
            .reset_index(drop=True),
            plan.formats.get(str(name), {}),
        )
        for name, part in events.groupby(SOURCE_COLUMN, sort=True)
    ]
    features, report, rejects = build_bucket(plan, raw, accounts["account_id"].to_numpy())
    for name in features.columns:
        if isinstance(features[name].dtype, pd.CategoricalDtype):
            features[name] = features[name].astype("str").where(features[name].notna())
    features[_REPORT] = None
    summary = {"report": report.to_dict(), "rejects": rejects.to_dict(orient="list")}
    marker = pd.DataFrame({_REPORT: [json.dumps(summary, default=str)]})
    return _for_arrow(pd.concat([features, marker], ignore_index=True).reindex(columns=columns))


def _report_from(data: dict[str, Any], plan: BuildPlan) -> ValidationReport:
    """A partition's report from its JSON, with the dates its events span (as local builds)."""
    return replace(ValidationReport.from_dict(data), extracted_at=plan.extracted_at)


def _events(spark: Any, plan: BuildPlan, source: TableSource, inputs: list[SparkInput]) -> Any:
    """Every events part read by Spark, numbered, in canonical text columns and bucketed."""
    from pyspark.sql import types as st

    schema = st.StructType(
        [
            *(st.StructField(c, st.StringType()) for c in _TEXT_COLUMNS),
            st.StructField(ROW_COLUMN, st.LongType()),
            st.StructField(SOURCE_COLUMN, st.StringType()),
            st.StructField(_BUCKET, st.LongType()),
        ]
    )
    prepared = None
    for part, given in zip(plan.events, inputs, strict=True):
        frame = spark.read.format(given.format).options(**given.options).load(given.path)
        numbered = frame.rdd.zipWithIndex().map(lambda pair: (*pair[0], pair[1]))
        frame = spark.createDataFrame(numbered, frame.schema.add(ROW_COLUMN, st.LongType()))
        frame = frame.mapInPandas(partial(_prepare, plan=plan, source=source, part=part), schema)
        prepared = frame if prepared is None else prepared.unionByName(frame)
    return prepared


def _output_schema(plan: BuildPlan) -> Any:
    """The schema of a bucket's rows: the features (as an empty bucket has them) and the report."""
    from pyspark.sql import types as st

    sample = build_bucket(plan, [], np.array([], dtype=object))[0]
    fields = []
    for name in sample.columns:
        dtype = sample[name].dtype
        if name == "as_of":
            fields.append(st.StructField(name, st.TimestampType()))
        elif pd.api.types.is_float_dtype(dtype) or pd.api.types.is_integer_dtype(dtype):
            fields.append(st.StructField(name, st.DoubleType()))
        else:
            fields.append(st.StructField(name, st.StringType()))
    fields.append(st.StructField(_REPORT, st.StringType()))
    return st.StructType(fields)


def _collected(
    collected: pd.DataFrame, plan: BuildPlan
) -> tuple[pd.DataFrame, ValidationReport, pd.DataFrame]:
    """The features, the merged report and the rejects of the rows the buckets returned."""
    markers = collected[collected[_REPORT].notna()]
    features = collected[collected[_REPORT].isna()].drop(columns=[_REPORT])
    features = features.reset_index(drop=True)
    features["as_of"] = pd.to_datetime(features["as_of"], utc=True).astype("datetime64[us, UTC]")
    for name, levels in plan.categories.items():
        if name in features:
            features[name] = pd.Categorical(features[name], categories=list(levels))
    report = ValidationReport({}, plan.extracted_at)
    rejects = []
    for text in markers[_REPORT]:
        data = json.loads(text)
        report = report.merge(_report_from(data["report"], plan))
        rejects.append(pd.DataFrame(data["rejects"]))
    names = ["account_id", "as_of", "in_pipeline", *[f.name for f in catalogue(plan.settings)]]
    return features[names], report, pd.concat(rejects, ignore_index=True)


def run_spark(
    plan: BuildPlan, source: TableSource, master: str
) -> Iterator[tuple[pd.DataFrame, ValidationReport, pd.DataFrame]]:
    """Build the features on Spark; yields one (features, report, rejects) for the whole run.

    A source Spark cannot read itself is refused before Spark starts."""
    inputs = [source.spark_input(part) for part in plan.events]
    from pyspark.sql import functions as sf

    spark = spark_session(master)
    accounts = plan.base.accounts[["account_id"]].assign(
        **{_BUCKET: bucket_of(plan.base.accounts["account_id"], plan.n_buckets)}
    )
    out_schema = _output_schema(plan)
    result = (
        _events(spark, plan, source, inputs)
        .groupBy(_BUCKET)
        .cogroup(spark.createDataFrame(accounts).groupBy(_BUCKET))
        .applyInPandas(partial(_bucket, plan=plan, columns=out_schema.fieldNames()), out_schema)
    )
    yield _collected(result.orderBy(sf.col("account_id"), sf.col("as_of")).toPandas(), plan)
