"""``inmarket export --format salesforce|hubspot``: the published ranked list, filtered as the
review page filters it, as a CRM import file (``serving.export``)."""

from __future__ import annotations

from pathlib import Path

import click

from inmarket.command import FILE, Failure, run_job
from serving.export import CRMS
from serving.settings import DEFAULT_RANKED


@click.command()
@click.option(
    "--format",
    "crm",
    type=click.Choice(CRMS),
    required=True,
    help="the CRM whose import the columns are named for",
)
@click.option(
    "--ranked",
    type=FILE,
    default=DEFAULT_RANKED,
    show_default=True,
    help="the ranked accounts `inmarket score` published",
)
@click.option("--out", type=FILE, help="the CSV file to write [standard output]")
@click.option(
    "--stage",
    "stages",
    multiple=True,
    help="only accounts at this stage or status, as the review page's stage filter; repeat "
    "it for several",
)
@click.option("--owner", help="only the accounts of this owner")
@click.option("--industry", help="only accounts of this industry")
@click.option("--region", help="only accounts of this region")
@click.option("--min-score", type=click.IntRange(0, 100), default=0, help="only this score or more")
@click.option("--search", "q", help="only accounts whose name or domain holds this text")
@click.option(
    "--new",
    "new",
    is_flag=True,
    help="only the accounts new this period: moved up into in-market or ready since the "
    "previous scoring run",
)
def export(
    crm: str,
    ranked: Path,
    out: Path | None,
    stages: tuple[str, ...],
    owner: str | None,
    industry: str | None,
    region: str | None,
    min_score: int,
    q: str | None,
    new: bool,
) -> None:
    """Write the published ranked list, filtered as the review page filters it, as a CSV that
    Salesforce's or HubSpot's import takes (one header row, columns named for it)."""
    from features.io import write_text_atomic
    from serving.export import MATCH_KEYS, crm_csv
    from serving.published import Scoring
    from serving.review import ListQuery, contacts_to_reach, select

    try:
        query = ListQuery(stages, industry, region, owner, min_score, q, new=new)
    except ValueError as exc:  # a stage that is none: named, with the stages there are
        raise Failure(f"--{exc}") from exc
    scoring = run_job(lambda: Scoring.read(ranked))
    if scoring is None:
        raise Failure(
            f"no scoring published at {ranked}: run `inmarket score DATA --out {ranked}` first"
        )
    rows = select(scoring.ranked, query)
    contacts = contacts_to_reach(rows, scoring.people, scoring.activity)
    text = crm_csv(rows, contacts, crm)  # type: ignore[arg-type]  # click checked the choice
    if out is None:
        click.echo(text, nl=False)
    else:
        write_text_atomic(text, out)
    click.echo(
        f"exported {len(rows):,} of {len(scoring.ranked):,} accounts for {crm} "
        f"({MATCH_KEYS[crm]}) to {out or 'standard output'}",
        err=out is None,
    )
