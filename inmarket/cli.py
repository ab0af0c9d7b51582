"""The ``inmarket`` command: one entry point, one config object passed down to every job."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from features.errors import InMarketError
from features.plan import EVENTS_PER_BUCKET
from features.sources import open_source
from features.vocabularies import vocabulary_help
from inmarket.config import Config, load_config
from inmarket.options import given, option
from serving.settings import DEFAULT_RANKED, ServiceSettings
from training.settings import TrackingSettings


class _Failure(click.ClickException):
    """A clear one-line error and a non-zero exit code, never a traceback."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


_FILE = click.Path(path_type=Path, dir_okay=False)
_FOLDER = click.Path(path_type=Path, file_okay=False)
# DATA is where the tables are, as the [data] kind reads it (a folder for "folder"): text, opened
# by features.sources.open_source, never taken for a local path here
_DATA = click.STRING
_mapping = option("data", "mapping", type=_FILE)
_extracted_at = option("data", "extracted_at")
_spark_master = option("features", "spark_master")
_store = option("tracking", "store", type=_FOLDER)


def _config(ctx: click.Context, **extra: dict[str, Any]) -> Config:
    """Defaults, then the ``--config`` file, then the settings given as flags (and ``extra``)."""
    flags = given(ctx)
    sections = {s: {**flags.get(s, {}), **extra.get(s, {})} for s in {*flags, *extra}}
    try:
        return load_config(ctx.obj.get("config_path"), sections)
    except InMarketError as exc:
        raise _Failure(str(exc)) from exc


def _run(job: Any) -> Any:
    """Run a job, turning the errors users can fix into clean messages."""
    try:
        return job()
    except (InMarketError, FileNotFoundError) as exc:
        raise _Failure(str(exc)) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=_FILE,
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
@click.option("--out", type=_FOLDER, default=Path("data/world"), show_default=True)
@click.pass_context
def generate(ctx: click.Context, out: Path) -> None:
    """Generate the synthetic B2B world as Parquet tables in OUT."""
    from inmarket.synthetic import generate_world

    spec = _config(ctx).generate
    began = time.perf_counter()
    summary = _run(lambda: generate_world(spec, out))
    rows = ", ".join(f"{n:,} {t}" for t, n in summary.rows.items() if not t.startswith("truth"))
    click.echo(f"wrote {out}: {rows} in {time.perf_counter() - began:.1f}s")
    if spec.dirty:
        faults = sum(sum(r.values()) for r in summary.dirt.values())
        click.echo(f"injected {faults:,} faults; expected rejects in {out}/_truth/dirt.json")


@cli.command(epilog="\b\n" + vocabulary_help())
@click.argument("data", type=_DATA)
@_mapping
@_extracted_at
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@click.option(
    "--rejects-out",
    type=_FILE,
    help="write every rejected row's table, source file, row and reason (Parquet)",
)
@click.pass_context
def validate(ctx: click.Context, data: str, as_json: bool, rejects_out: Path | None) -> None:
    """Check the tables in DATA against the contract and report every rejected row."""
    from features.io import write_parquet_atomic
    from features.validation import load_dataset

    config = _config(ctx)
    source = open_source(data, config.data)
    dataset = _run(lambda: load_dataset(source, config.data))
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
        _echo_lines(_run(lambda: forecast.lines(source)))
    if rejects_out:
        write_parquet_atomic(dataset.rejects, rejects_out)
        click.echo(f"wrote {len(dataset.rejects):,} rejected rows to {rejects_out}", err=as_json)
    if unreconciled := dataset.report.unreconciled():
        raise _Failure(unreconciled)


@cli.command()
@click.argument("data", type=_DATA, required=False)
@click.option("--out", type=_FILE, default=Path("data/features.parquet"), show_default=True)
@_mapping
@_extracted_at
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
@_spark_master
@click.option("--list", "list_only", is_flag=True, help="print the feature catalogue and exit")
@click.pass_context
def features(
    ctx: click.Context, data: str | None, out: Path, all_history: bool, list_only: bool
) -> None:
    """Build point-in-time account features for the tables in DATA."""
    from features.catalogue import catalogue

    cfg = _config(ctx)
    fc = cfg.features.model_copy(update={"snapshots": None} if all_history else {})
    if list_only:
        for feature in catalogue(fc):
            click.echo(f"{feature.name:<40} {feature.family:<14} {feature.description}")
        return
    if data is None:
        raise _Failure("give the DATA folder (or --list for the feature catalogue)")
    from features.engine import build_feature_table

    build = _run(lambda: build_feature_table(open_source(data, cfg.data), out, cfg.data, fc))
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
        raise _Failure(unreconciled)


def _fail_abandoned_runs(tracking: TrackingSettings) -> None:
    """Runs left RUNNING by a killed process of this host are marked FAILED, in one line."""
    from training.registry import connect, fail_abandoned_runs

    failed = _run(lambda: fail_abandoned_runs(connect(tracking), tracking.experiment))
    if failed:
        click.echo(
            f"marked {len(failed)} run(s) FAILED, left RUNNING by a process that died: "
            f"{', '.join(failed)}",
            err=True,
        )


@cli.command()
@click.argument("data", type=_DATA)
@click.option(
    "--features",
    "features_path",
    type=_FILE,
    help="a feature table built before (else built from DATA)",
)
@_mapping
@_extracted_at
@option("train", "label")
@option("train", "horizon_days")
@option("train", "seed")
@option("train", "shuffle_labels")
@_store
@click.pass_context
def train(ctx: click.Context, data: str, features_path: Path | None) -> None:
    """Train on DATA, compare with the baselines, register the model as challenger."""
    from training.job import TrainJob

    cfg = _config(ctx)
    _fail_abandoned_runs(cfg.tracking)
    job = TrainJob(cfg.data, cfg.features, cfg.train, cfg.tracking, cfg.promotion)
    source = open_source(data, cfg.data)
    result = _run(lambda: job.run(source, features_path, announce=_echo_lines))
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
        f"MLflow run {result.run_id} in {cfg.tracking.store}; model {result.model_uri} "
        f"(alias challenger). Next: inmarket promote"
    )
    for note in result.columns:
        click.echo(f"column {note}")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)


def _echo_lines(lines: list[str]) -> None:
    for line in lines:
        click.echo(line)


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
@_store
@click.pass_context
def promote(ctx: click.Context, force: bool, version: str | None) -> None:
    """Make the challenger the champion if it beats the champion (the first model: the MQL
    rule) on the same test rows by more than a paired bootstrap says noise could."""
    from training.promotion import promote as promote_model
    from training.promotion import roll_back
    from training.registry import connect

    full = _config(ctx)
    cfg = full.tracking
    _fail_abandoned_runs(cfg)
    if version is not None:
        decision = _run(lambda: roll_back(connect(cfg), cfg.model_name, version, force=force))
    else:
        decision = _run(
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
@click.argument("data", type=_DATA)
@click.option("--features", "features_path", type=_FILE)
@_extracted_at
@_store
@click.pass_context
def evaluate(ctx: click.Context, model_uri: str, data: str, features_path: Path | None) -> None:
    """Re-score a registered model on DATA's test window, next to the baselines."""
    from training.job import EvaluateJob

    cfg = _config(ctx)
    job = EvaluateJob(cfg.data, cfg.features, cfg.train, cfg.tracking)
    evaluation = _run(lambda: job.run(model_uri, open_source(data, cfg.data), features_path))
    click.echo(evaluation.table())


@cli.command()
@click.argument("data", type=_DATA)
@click.option("--out", type=_FILE, default=DEFAULT_RANKED, show_default=True)
@click.option("--model", "model_uri", help="[models:/<model_name>@champion]")
@_mapping
@_extracted_at
@option(
    "features",
    "engine",
    help="spark: features on Spark and probabilities by mlflow.pyfunc.spark_udf",
)
@_spark_master
@_store
@click.pass_context
def score(ctx: click.Context, data: str, out: Path, model_uri: str | None) -> None:
    """Rank every account of DATA by the champion's score, with trend, reasons and gaps."""
    from serving.batch import score_batch
    from training.registry import champion_uri

    cfg = _config(ctx)
    uri = model_uri or champion_uri(cfg.tracking.model_name)
    try:
        uri, model = _load_model(cfg.tracking, uri)
    except Exception as exc:  # MLflow raises several types for a missing model or alias
        raise _Failure(f"cannot load {uri}: {exc}; train and promote a model first") from exc
    source = open_source(data, cfg.data)
    result = _run(lambda: score_batch(model, source, out, cfg.data, cfg.features, model_uri=uri))
    ranked = result.ranked
    prospects = ranked[ranked["status"] == "prospect"]
    stages = prospects["stage"].value_counts().to_dict()
    apart = ranked.loc[ranked["status"] != "prospect", "status"].value_counts().to_dict()
    click.echo(
        f"ranked {len(prospects):,} prospects into {out} (and .csv); stages {stages}; "
        f"listed apart, not scored: {apart}"
    )
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=3000, show_default=True)
@click.option(
    "--ranked",
    type=_FILE,
    default=DEFAULT_RANKED,
    show_default=True,
    help="ranked accounts from `inmarket score`, served at GET /accounts",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="worker processes (each loads the model)",
)
@_store
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, ranked: Path, workers: int) -> None:
    """Serve the champion over HTTP (BentoML); set INMARKET_TOKEN to require a bearer token.

    Without a token it only listens on loopback (README: "Running it safely")."""
    import ipaddress
    import os
    import shutil

    guard = _run(ServiceSettings.from_env)  # a weak or empty token stops here, in one line
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if guard.token is None and not loopback:
        raise _Failure(
            f"--host {host} without INMARKET_TOKEN would serve every account to the network: "
            "set INMARKET_TOKEN (16+ characters) or keep the default 127.0.0.1"
        )
    cfg = _config(ctx).tracking
    bentoml = shutil.which("bentoml") or str(Path(sys.executable).with_name("bentoml"))
    env = {**os.environ, **ServiceSettings(tracking=cfg, ranked=ranked).environment()}
    # BentoML reads per-service settings from this variable when the server starts
    options = [env.get("BENTOML_CONFIG_OPTIONS", ""), f"services.inmarket.workers={workers}"]
    env["BENTOML_CONFIG_OPTIONS"] = " ".join(o for o in options if o)
    root = Path(__file__).resolve().parent.parent
    os.chdir(root)
    os.execve(
        bentoml,
        [bentoml, "serve", "serving.service:InMarketService", "--host", host, "--port", str(port)],
        env,
    )


@cli.command()
@click.option(
    "--ranked",
    type=_FILE,
    default=DEFAULT_RANKED,
    show_default=True,
    help="ranked accounts from `inmarket score`",
)
@click.option("--out", type=_FILE, default=Path("data/report.html"), show_default=True)
@click.option(
    "--limit",
    type=click.IntRange(0),
    default=1000,
    show_default=True,
    help="accounts listed, best first (0: all)",
)
@_store
@click.pass_context
def report(ctx: click.Context, ranked: Path, out: Path, limit: int) -> None:
    """Write the ranked list, its summary and the model card as one static HTML file."""
    from serving.report import write_report

    if not ranked.exists():
        raise _Failure(f"{ranked} not found; run `inmarket score DATA --out {ranked}` first")
    model = _model_card(ctx, ranked)
    listed = _run(lambda: write_report(ranked, out, model, limit or None))
    click.echo(f"wrote {out}: {listed:,} accounts" + ("" if model else " (no model card)"))


def _load_model(tracking: TrackingSettings, uri: str) -> tuple[str, Any]:
    """The model at ``uri``, and the URI pinned to its version (an alias may move later)."""
    from training.registry import connect, load_model, parse_model_uri, resolve_version, version_uri

    if parse_model_uri(uri) is not None:
        uri = version_uri(*resolve_version(connect(tracking), uri))
    return uri, load_model(uri)


def _model_card(ctx: click.Context, ranked: Path) -> dict[str, Any] | None:
    """What the report says about the model that scored ``ranked`` (None if unreadable)."""
    from serving.report import won_deals_found
    from serving.runs import RunError, published
    from training.registry import champion_uri, connect, parse_model_uri

    cfg = _config(ctx).tracking
    try:  # the model named by the run's manifest (the report itself says why it is unreadable)
        run = published(ranked)
    except RunError:
        run = None
    uri = (run.manifest.get("model") if run else None) or champion_uri(cfg.model_name)
    try:
        uri, model = _load_model(cfg, uri)
        ref = parse_model_uri(uri)
        name, version = (ref.name, ref.version) if ref else (uri, None)
        won = won_deals_found(connect(cfg), name, version) if version else None
    except Exception as exc:  # the report is still useful without the card
        click.echo(f"warning: no model card: cannot read {uri}: {exc}", err=True)
        return None
    return {"name": name, "version": version, **model.info, "won_deals": won}


@cli.command("example-crm")
@click.option("--accounts", type=int, default=300, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--out", type=_FOLDER, default=Path("data/crm_export"), show_default=True)
def example_crm(accounts: int, seed: int, out: Path) -> None:
    """Write a CRM-shaped export of a synthetic world plus its mapping file, as a worked example."""
    from inmarket.crm_example import write_crm_example

    mapping = _run(lambda: write_crm_example(out, accounts=accounts, seed=seed))
    click.echo(
        f"wrote a CRM-shaped export to {out}; load it with:\n"
        f"  inmarket validate {out} --mapping {mapping}"
    )


def main() -> None:
    cli(obj={})


if __name__ == "__main__":
    main()
