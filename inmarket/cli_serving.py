"""The commands that show scores: ``inmarket serve`` (the BentoML service) and ``inmarket report``
(the static HTML file)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from inmarket.command import (
    FILE,
    STORE,
    TRACKING_URI,
    Failure,
    config_of,
    load_pinned,
    run_job,
    stop_if_unreachable,
)
from serving.settings import DEFAULT_RANKED, ServiceSettings


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=3000, show_default=True)
@click.option(
    "--ranked",
    type=FILE,
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
@STORE
@TRACKING_URI
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, ranked: Path, workers: int) -> None:
    """Serve the champion over HTTP (BentoML); set INMARKET_TOKEN to require a bearer token.

    Without a token it only listens on loopback (README: "Running it safely")."""
    import ipaddress
    import os
    import shutil

    guard = run_job(ServiceSettings.from_env)  # a weak or empty token stops here, in one line
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if guard.token is None and not loopback:
        raise Failure(
            f"--host {host} without INMARKET_TOKEN would serve every account to the network: "
            "set INMARKET_TOKEN (16+ characters) or keep the default 127.0.0.1"
        )
    cfg = config_of(ctx).tracking
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


@click.command()
@click.option(
    "--ranked",
    type=FILE,
    default=DEFAULT_RANKED,
    show_default=True,
    help="ranked accounts from `inmarket score`",
)
@click.option("--out", type=FILE, default=Path("data/report.html"), show_default=True)
@click.option(
    "--limit",
    type=click.IntRange(0),
    default=1000,
    show_default=True,
    help="accounts listed, best first (0: all)",
)
@STORE
@TRACKING_URI
@click.pass_context
def report(ctx: click.Context, ranked: Path, out: Path, limit: int) -> None:
    """Write the ranked list, its summary and the model card as one static HTML file."""
    from serving.report import write_report

    if not ranked.exists():
        raise Failure(f"{ranked} not found; run `inmarket score DATA --out {ranked}` first")
    model = _model_card(ctx, ranked)
    listed = run_job(lambda: write_report(ranked, out, model, limit or None))
    click.echo(f"wrote {out}: {listed:,} accounts" + ("" if model else " (no model card)"))


def _model_card(ctx: click.Context, ranked: Path) -> dict[str, Any] | None:
    """What the report says about the model that scored ``ranked`` (None if unreadable)."""
    from serving.report import won_deals_found
    from serving.runs import RunError, published
    from training.registry import champion_uri, connect, parse_model_uri, reaching, resolved_uri

    cfg = config_of(ctx).tracking
    try:  # the model named by the run's manifest (the report itself says why it is unreadable)
        run = published(ranked)
    except RunError:
        run = None
    uri = (run.manifest.get("model") if run else None) or champion_uri(cfg.model_name)
    try:
        uri, model = load_pinned(cfg, uri)
        ref = parse_model_uri(uri)
        name, version = (ref.name, ref.version) if ref else (uri, None)
        with reaching(resolved_uri(cfg)):
            won = won_deals_found(connect(cfg), name, version) if version else None
    except Exception as exc:  # the report is still useful without the card
        stop_if_unreachable(exc)  # but a server that does not answer is exit 4, to retry
        click.echo(f"warning: no model card: cannot read {uri}: {exc}", err=True)
        return None
    return {"name": name, "version": version, **model.info, "won_deals": won}
