"""The ``inmarket`` command: one entry point, one config object passed down to every job."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from features.plan import EVENTS_PER_BUCKET
from features.sources import open_source
from features.vocabularies import vocabulary_help
from inmarket.cli_export import export
from inmarket.cli_refresh import RefreshExit, refresh
from inmarket.cli_serving import report, serve
from inmarket.command import (
    DATA,
    EXTRACTED_AT,
    FILE,
    FOLDER,
    MAPPING,
    SPARK_MASTER,
    STORE,
    TRACKING_URI,
    Failure,
    config_of,
    echo_lines,
    fail_abandoned,
    load_pinned,
    run_job,
    stop_if_unreachable,
)
from inmarket.options import option
from serving.settings import DEFAULT_RANKED


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=FILE,
    help="TOML or YAML file with configuration sections (see README).",
)
@click.version_option(package_name="inmarket")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """In-market: score B2B accounts by the engagement of their buying groups."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


@cli.command()
@option("generate", "accounts")
@option("generate", "seed")
@option("generate", "days")
@option("generate", "start", type=click.DateTime(["%Y-%m-%d"]))
@option("generate", "dirty", "--dirty/--clean")
@click.option("--out", type=FOLDER, default=Path("data/world"), show_default=True)
@click.pass_context
def generate(ctx: click.Context, out: Path) -> None:
    """Generate the synthetic B2B world as Parquet tables in OUT."""
    from inmarket.synthetic import generate_world

    spec = config_of(ctx).generate
    began = time.perf_counter()
    summary = run_job(lambda: generate_world(spec, out))
    rows = ", ".join(f"{n:,} {t}" for t, n in summary.rows.items() if not t.startswith("truth"))
    click.echo(f"wrote {out}: {rows} in {time.perf_counter() - began:.1f}s")
    if spec.dirty:
        faults = sum(sum(r.values()) for r in summary.dirt.values())
        click.echo(f"injected {faults:,} faults; expected rejects in {out}/_truth/dirt.json")


@cli.command(epilog="\b\n" + vocabulary_help())
@click.argument("data", type=DATA, required=False)
@MAPPING
@EXTRACTED_AT
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@click.option(
    "--rejects-out",
    type=FILE,
    help="write every rejected row's table, source file, row and reason (Parquet)",
)
@click.pass_context
def validate(ctx: click.Context, data: str | None, as_json: bool, rejects_out: Path | None) -> None:
    """Check the tables in DATA against the contract and report every rejected row."""
    from features.io import write_parquet_atomic
    from features.validation import load_dataset

    config = config_of(ctx)
    source = run_job(lambda: open_source(data, config.data))
    dataset = run_job(lambda: load_dataset(source, config.data))
    if as_json:
        click.echo(json.dumps(dataset.report.to_dict(), indent=2))
    else:
        click.echo(dataset.report.render(config.features.columns))
    if no_events := dataset.report.without_events():
        click.echo(f"warning: {no_events}", err=True)
    if stale := dataset.report.stale():
        click.echo(f"warning: {stale}", err=True)
    if not as_json and not no_events:
        from training.forecast import ForecastJob

        forecast = ForecastJob(
            dataset.report, data=config.data, features=config.features, train=config.train
        )
        echo_lines(run_job(lambda: forecast.lines(source)))
    if rejects_out:
        write_parquet_atomic(dataset.rejects, rejects_out)
        click.echo(f"wrote {len(dataset.rejects):,} rejected rows to {rejects_out}", err=as_json)
    if unreconciled := dataset.report.unreconciled():
        raise Failure(unreconciled)


@cli.command()
@click.argument("data", type=DATA, required=False)
@click.option("--out", type=FILE, default=Path("data/features.parquet"), show_default=True)
@MAPPING
@EXTRACTED_AT
@option("features", "every_days")
@option("features", "snapshots")
@click.option("--all-history", is_flag=True, help="snapshots over all history instead")
@option("features", "engine")
@option(
    "features",
    "buckets",
    help="hash buckets of accounts",
    shown=f"about {EVENTS_PER_BUCKET:,} events each",
)
@SPARK_MASTER
@click.option("--list", "list_only", is_flag=True, help="print the feature catalogue and exit")
@click.pass_context
def features(
    ctx: click.Context, data: str | None, out: Path, all_history: bool, list_only: bool
) -> None:
    """Build point-in-time account features for the tables in DATA."""
    from features.catalogue import catalogue

    cfg = config_of(ctx)
    fc = cfg.features.model_copy(update={"snapshots": None} if all_history else {})
    if list_only:
        for feature in catalogue(fc):
            click.echo(f"{feature.name:<40} {feature.family:<14} {feature.description}")
        return
    if data is None and cfg.data.url is None:
        raise Failure("give the DATA folder (or --list for the feature catalogue)")
    from features.engine import build_feature_table

    build = run_job(lambda: build_feature_table(open_source(data, cfg.data), out, cfg.data, fc))
    click.echo(build.report.render(fc.columns))
    for warning in build.warnings:
        click.echo(f"warning: {warning}", err=True)
    if no_events := build.report.without_events():
        click.echo(f"warning: {no_events}", err=True)
    click.echo(
        f"wrote {build.rows:,} snapshot rows to {out} ({build.buckets} buckets, "
        f"{fc.engine} engine) in {build.seconds:.1f}s; {build.rejects:,} rejected rows "
        f"listed beside it"
    )
    if unreconciled := build.report.unreconciled():
        raise Failure(unreconciled)


@cli.command()
@click.argument("data", type=DATA, required=False)
@click.option(
    "--features",
    "features_path",
    type=FILE,
    help="a feature table built before (else built from DATA)",
)
@MAPPING
@EXTRACTED_AT
@option("train", "label")
@option("train", "horizon_days")
@option("train", "seed")
@option("train", "shuffle_labels")
@STORE
@TRACKING_URI
@click.pass_context
def train(ctx: click.Context, data: str | None, features_path: Path | None) -> None:
    """Train on DATA, compare with the baselines, register the model as challenger."""
    from training.job import TrainJob
    from training.registry import where

    cfg = config_of(ctx)
    fail_abandoned(cfg.tracking)
    job = TrainJob(cfg.data, cfg.features, cfg.train, cfg.tracking, cfg.promotion)
    source = run_job(lambda: open_source(data, cfg.data))
    result = run_job(lambda: job.run(source, features_path, announce=echo_lines))
    click.echo("\ntest metrics, same rows for all:")
    click.echo(result.evaluation.table())
    for method, words in (
        ("model", "the account model"),
        ("no_intent", "without third-party intent, it"),
        ("buying_group", "on buying-group features alone, it"),
    ):
        if method in result.evaluation.metrics:
            click.echo(f"{words} has {result.evaluation.versus_mql(method)}")
    click.echo(
        f"MLflow run {result.run_id} in {where(cfg.tracking)}; model {result.model_uri} "
        f"(alias challenger). Next: inmarket promote"
    )
    for note in result.columns:
        click.echo(f"column {note}")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)


@cli.command()
@click.option(
    "--force",
    is_flag=True,
    help="promote even if the challenger does not beat the champion by more than noise",
)
@click.option(
    "--version",
    "version",
    help="roll back: make this earlier version the champion again (the replaced one is "
    "tagged rolled_back_at and not put back by a plain promote)",
)
@STORE
@TRACKING_URI
@click.pass_context
def promote(ctx: click.Context, force: bool, version: str | None) -> None:
    """Make the challenger the champion if it beats the champion (the first model: the MQL
    rule) on the same test rows by more than a paired bootstrap says noise could."""
    from training.promotion import promote as promote_model
    from training.promotion import roll_back
    from training.registry import connect

    full = config_of(ctx)
    cfg = full.tracking
    fail_abandoned(cfg)
    if version is not None:
        decision = run_job(lambda: roll_back(connect(cfg), cfg.model_name, version, force=force))
    else:
        decision = run_job(
            lambda: promote_model(
                connect(cfg), cfg.model_name, force=force, settings=full.promotion
            )
        )
    verdict = "promoted to champion" if decision.promoted else "not promoted"
    click.echo(f"{cfg.model_name} v{decision.version} {verdict}: {decision.reason}")
    if not decision.promoted and decision.previous != decision.version:
        ctx.exit(1)


@cli.command()
@click.option("--model", "model_uri", required=True, help="e.g. models:/inmarket@champion")
@click.argument("data", type=DATA, required=False)
@click.option("--features", "features_path", type=FILE)
@EXTRACTED_AT
@STORE
@TRACKING_URI
@click.pass_context
def evaluate(
    ctx: click.Context, model_uri: str, data: str | None, features_path: Path | None
) -> None:
    """Re-score a registered model on DATA's test window, next to the baselines."""
    from training.job import EvaluateJob

    cfg = config_of(ctx)
    job = EvaluateJob(cfg.data, cfg.features, cfg.train, cfg.tracking)
    source = run_job(lambda: open_source(data, cfg.data))
    evaluation = run_job(lambda: job.run(model_uri, source, features_path))
    click.echo(evaluation.table())


@cli.command()
@click.argument("data", type=DATA, required=False)
@click.option("--out", type=FILE, default=DEFAULT_RANKED, show_default=True)
@click.option("--model", "model_uri", help="[models:/<model_name>@champion]")
@MAPPING
@EXTRACTED_AT
@option(
    "features",
    "engine",
    help="spark: features on Spark and probabilities by mlflow.pyfunc.spark_udf",
)
@SPARK_MASTER
@STORE
@TRACKING_URI
@option("sink", "to", "--to", metavar="URL")
@click.pass_context
def score(ctx: click.Context, data: str | None, out: Path, model_uri: str | None) -> None:
    """Rank every account of DATA by the champion's score, with trend, reasons and gaps, and
    say (and send to the [alerts] webhook) which accounts moved up or fell out since the last."""
    from serving.batch import score_batch
    from serving.changes import changes_in_words
    from serving.sink import DatabaseBehind, RunFacts, Sink
    from serving.webhook import send_alerts
    from training.registry import champion_uri

    began = datetime.now(UTC)
    cfg = config_of(ctx)
    sink = Sink(cfg.sink) if cfg.sink.to else None
    if sink is not None:  # a wrong URL, password or table stops the run before any scoring
        run_job(sink.check)
    uri = model_uri or champion_uri(cfg.tracking.model_name)
    try:
        uri, model = load_pinned(cfg.tracking, uri)
    except Exception as exc:  # MLflow raises several types for a missing model or alias
        stop_if_unreachable(exc)
        raise Failure(f"cannot load {uri}: {exc}; train and promote a model first") from exc
    source = run_job(lambda: open_source(data, cfg.data))
    result = run_job(lambda: score_batch(model, source, out, cfg.data, cfg.features, model_uri=uri))
    ranked = result.ranked
    prospects = ranked[ranked["status"] == "prospect"]
    stages = prospects["stage"].value_counts().to_dict()
    apart = ranked.loc[ranked["status"] != "prospect", "status"].value_counts().to_dict()
    click.echo(
        f"ranked {len(prospects):,} prospects into {out} (and .csv); stages {stages}; "
        f"listed apart, not scored: {apart}"
    )
    click.echo(changes_in_words(result.changes))
    delivery = send_alerts(out, result.changes, cfg.alerts)
    if delivery is not None and delivery.failure is None:
        click.echo(delivery.in_words())
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if delivery is not None and delivery.failure is not None:
        click.echo(f"warning: {delivery.in_words()}", err=True)
    if sink is not None:
        try:
            click.echo(sink.write(out, RunFacts(source.uri, began)).summary())
        except DatabaseBehind as exc:
            raise Failure(str(exc), RefreshExit.DATABASE_BEHIND) from exc


@cli.command("example-crm")
@click.option("--accounts", type=int, default=300, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--out", type=FOLDER, default=Path("data/crm_export"), show_default=True)
def example_crm(accounts: int, seed: int, out: Path) -> None:
    """Write a CRM-shaped export of a synthetic world plus its mapping file, as a worked example."""
    from inmarket.crm_example import write_crm_example

    mapping = run_job(lambda: write_crm_example(out, accounts=accounts, seed=seed))
    click.echo(
        f"wrote a CRM-shaped export to {out}; load it with:\n"
        f"  inmarket validate {out} --mapping {mapping}"
    )


cli.add_command(serve)
cli.add_command(report)
cli.add_command(refresh)
cli.add_command(export)


def main() -> None:
    cli(obj={})


if __name__ == "__main__":
    main()
