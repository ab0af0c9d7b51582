"""``inmarket refresh DATA``, the command a scheduler runs (the job is ``inmarket.refresh``), and
the exit codes it acts on, defined here once (``RefreshExit``; ``--help`` lists them)."""

from __future__ import annotations

import time
import traceback
from enum import IntEnum
from pathlib import Path

import click

from features.errors import ContractError, InMarketError
from inmarket.command import (
    DATA,
    EXTRACTED_AT,
    FILE,
    MAPPING,
    SPARK_MASTER,
    STORE,
    TRACKING_UNREACHABLE,
    TRACKING_URI,
    Failure,
    config_of,
    fail_abandoned,
)
from inmarket.options import option
from serving.settings import DEFAULT_RANKED


class RefreshExit(IntEnum):
    """What ``inmarket refresh`` exits with, for a scheduler to act on (``MEANING``)."""

    DONE = 0
    DATA_REFUSED = 1
    CONFIG_ERROR = 2
    GATE_REFUSED = 3
    TRACKING_UNREACHABLE = TRACKING_UNREACHABLE
    RUNNING = 5
    DATABASE_BEHIND = 6
    UNFORESEEN = 70  # sysexits' EX_SOFTWARE: not "data refused", Python's own 1 for any crash


MEANING = {
    RefreshExit.DONE: "done, or nothing to do (data, champion and settings as last time)",
    RefreshExit.DATA_REFUSED: "data refused (tables, rows lost, no usable event, history)",
    RefreshExit.CONFIG_ERROR: "configuration error: a file, flag or registry state to fix",
    RefreshExit.GATE_REFUSED: "the gate refused the new model: scores by the old champion",
    RefreshExit.TRACKING_UNREACHABLE: "the tracking server did not answer: retry later",
    RefreshExit.RUNNING: "another refresh of the project holds its lock: nothing done",
    RefreshExit.DATABASE_BEHIND: "scores published as files, the database (--to) failed: "
    "it keeps its previous rows until the next run writes them",
    RefreshExit.UNFORESEEN: "an error nobody foresaw (its traceback is printed): report it",
}


def _exit_codes() -> str:
    return "\b\nexit codes:\n" + "\n".join(f"  {int(c)}  {MEANING[c]}" for c in RefreshExit)


@click.command(epilog=_exit_codes())
@click.argument("data", type=DATA, required=False)
@click.option(
    "--out",
    type=FILE,
    default=DEFAULT_RANKED,
    show_default=True,
    help="the ranked accounts, as `inmarket score` writes them (and the refresh's record)",
)
@MAPPING
@EXTRACTED_AT
@option(
    "features",
    "engine",
    help="spark: features on Spark (scoring and training alike)",
)
@SPARK_MASTER
@STORE
@TRACKING_URI
@option("refresh", "retrain_after_days")
@option("sink", "to", "--to", metavar="URL")
@click.pass_context
def refresh(ctx: click.Context, data: str | None, out: Path) -> None:
    """Validate DATA, score it with the champion, retrain when due and promote through the
    gate, then print one summary line. A second run on the same data does nothing."""
    from inmarket.refresh import RefreshJob, project_lock

    began = time.perf_counter()
    cfg = config_of(ctx)
    job = RefreshJob(
        cfg.data,
        cfg.features,
        cfg.train,
        cfg.tracking,
        cfg.promotion,
        cfg.refresh,
        sink=cfg.sink,
        alerts=cfg.alerts,
    )
    try:
        with project_lock(cfg.tracking):
            fail_abandoned(cfg.tracking)
            outcome = job.run(data, out)
    except (InMarketError, FileNotFoundError) as exc:
        done = f" (done before: {job.outcome.summary()})" if job.outcome.steps else ""
        raise Failure(f"{exc}{done}", exit_code(exc)) from exc
    except click.ClickException:  # a command's own one-line failure, its code already set
        raise
    except Exception as exc:  # a bug or a fault nobody foresaw: its own code, never 1 or 2
        traceback.print_exc()
        raise Failure(
            f"refresh stopped on an unforeseen {type(exc).__name__} (traceback above): "
            "report it with the traceback",
            RefreshExit.UNFORESEEN,
        ) from exc
    for warning in outcome.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"refresh: {outcome.summary()}; in {time.perf_counter() - began:.1f}s")
    if outcome.refused:
        ctx.exit(RefreshExit.GATE_REFUSED)


def exit_code(exc: Exception) -> RefreshExit:
    """The exit code of the error a refresh stopped on."""
    from inmarket.refresh import RefreshRunning
    from serving.sink import DatabaseBehind
    from training.registry import TrackingUnreachable
    from training.split import SplitError

    if isinstance(exc, RefreshRunning):
        return RefreshExit.RUNNING
    if isinstance(exc, DatabaseBehind):
        return RefreshExit.DATABASE_BEHIND
    if isinstance(exc, TrackingUnreachable):
        return RefreshExit.TRACKING_UNREACHABLE
    if isinstance(exc, (ContractError, SplitError)):
        return RefreshExit.DATA_REFUSED
    return RefreshExit.CONFIG_ERROR
