"""Build the feature table of an export, bucket by bucket, locally or on Spark, and read it back.

Accounts are split into hash buckets (``features.plan``); the local engine (``features.local``)
or Spark (``features.spark``) builds each bucket with ``build_bucket``, the one function both
run. Here the engine is chosen and its buckets are written, as they come, into one Parquet
table, with the merged validation report and the rejected rows beside it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.errors import ContractError
from features.io import sidecar, write_atomic, write_json_atomic, write_parquet_atomic
from features.leftovers import scratch_dir
from features.local import run_local
from features.plan import plan_build
from features.report import ValidationReport
from features.settings import DataSettings, FeatureSettings, FeatureSpec
from features.sources import TableSource, open_source
from features.spark import run_spark

SPEC_KEY = b"inmarket.feature_spec"  # the FeatureSpec a feature table was built with


@dataclass
class FeatureBuild:
    """What ``build_feature_table`` wrote: rows, buckets, time, the report and the rejects."""

    out: Path
    rows: int
    buckets: int
    seconds: float
    report: ValidationReport
    rejects: int
    warnings: list[str] = field(default_factory=list)  # about the snapshot grid


def build_feature_table(
    data: TableSource | Path,
    out: Path,
    data_settings: DataSettings,
    settings: FeatureSettings,
    *,
    categories: dict[str, tuple[str, ...]] | None = None,
) -> FeatureBuild:
    """Write the feature table of ``data`` (a source, or a folder) to ``out`` (Parquet,
    atomically), with the validation report (``<out>.report.json``) and the rejected rows
    (``<out>.rejects.parquet``)."""
    began = time.perf_counter()
    out = Path(out)
    source = open_source(data, data_settings)
    plan = plan_build(source, data_settings, settings, categories)
    report, rejects, rows = plan.base.report, [plan.base.rejects], 0
    spec_json = settings.spec().model_dump_json().encode()
    # the bucket files go beside the table (the same disk), in a folder named by this process
    with scratch_dir(f"{out.name}.buckets", out.parent) as scratch:
        if settings.engine == "spark":
            parts = run_spark(plan, source, settings.spark_master)
        else:
            parts = run_local(plan, source, scratch, settings.workers)

        def write(tmp: Path) -> None:
            nonlocal report, rows
            writer: pq.ParquetWriter | None = None
            try:
                for features, part_report, part_rejects in parts:
                    table = pa.Table.from_pandas(features, preserve_index=False)
                    if writer is None:
                        schema = table.schema.with_metadata(
                            {**(table.schema.metadata or {}), SPEC_KEY: spec_json}
                        )
                        writer = pq.ParquetWriter(tmp, schema, compression="zstd")
                    writer.write_table(table.cast(writer.schema))
                    report = report.merge(part_report)
                    rejects.append(part_rejects)
                    rows += len(features)
            finally:
                if writer is not None:
                    writer.close()

        write_atomic(out, write)
    all_rejects = pd.concat([r for r in rejects if len(r)] or rejects[:1], ignore_index=True)
    write_parquet_atomic(
        all_rejects.astype({"source_row": "int64"}), sidecar(out, "rejects.parquet")
    )
    report = report.counted("events", plan.events_in)  # the buckets counted what they got
    write_json_atomic(report.to_dict(), sidecar(out, "report.json"))
    return FeatureBuild(
        out,
        rows,
        plan.n_buckets,
        time.perf_counter() - began,
        report,
        len(all_rejects),
        plan.warnings,
    )


def read_feature_table(path: Path) -> tuple[pd.DataFrame, FeatureSpec]:
    """A feature table and the ``FeatureSpec`` it was built with (kept in its metadata)."""
    path = Path(path)
    metadata = pq.read_schema(path).metadata or {}
    if SPEC_KEY not in metadata:
        raise ContractError(
            f"{path}: not a feature table of this version (no feature specification in its "
            "metadata); build it again with `inmarket features`"
        )
    return pd.read_parquet(path), FeatureSpec.model_validate_json(metadata[SPEC_KEY])
