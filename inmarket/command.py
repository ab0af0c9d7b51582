"""What every ``inmarket`` command shares: the one-line failure, the argument types, the options
several commands take, the config built from file and flags, and the runner that turns the
errors a user can fix into that one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from features.database import DatabaseUrl, is_database_url
from features.errors import InMarketError
from inmarket.config import Config, load_config
from inmarket.options import given, option
from training.settings import TrackingSettings


class Failure(click.ClickException):
    """A clear one-line error and a non-zero exit code, never a traceback."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it per class

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


FILE = click.Path(path_type=Path, dir_okay=False)
FOLDER = click.Path(path_type=Path, file_okay=False)


class _Data(click.ParamType):
    """DATA, where the tables are: a database URL (postgresql://..., duckdb:///...), checked
    here so that a bad one stops in one line before anything runs, or a folder as ``[data]
    kind`` reads it; text either way, opened by ``features.sources.open_source``."""

    name = "data"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if is_database_url(text):
            try:
                DatabaseUrl(text)
            except InMarketError as exc:
                raise Failure(str(exc)) from exc
        return text


DATA = _Data()
MAPPING = option("data", "mapping", type=FILE)
EXTRACTED_AT = option("data", "extracted_at")
SPARK_MASTER = option("features", "spark_master")
STORE = option("tracking", "store", type=FOLDER)
TRACKING_URI = option("tracking", "uri", "--tracking-uri")


def config_of(ctx: click.Context, **extra: dict[str, Any]) -> Config:
    """Defaults, then the ``--config`` file, then the settings given as flags (and ``extra``)."""
    flags = given(ctx)
    sections = {s: {**flags.get(s, {}), **extra.get(s, {})} for s in {*flags, *extra}}
    try:
        return load_config(ctx.obj.get("config_path"), sections)
    except InMarketError as exc:
        raise Failure(str(exc)) from exc


TRACKING_UNREACHABLE = 4  # the exit code a scheduler retries later


def run_job(job: Any) -> Any:
    """Run a job, turning the errors users can fix into clean messages (exit 2; exit 4 when
    the tracking server did not answer)."""
    try:
        return job()
    except (InMarketError, FileNotFoundError) as exc:
        stop_if_unreachable(exc)
        raise Failure(str(exc)) from exc


def stop_if_unreachable(exc: BaseException) -> None:
    """A tracking server that did not answer stops the command in one line with exit 4,
    whatever the caller makes of other errors."""
    from training.registry import TrackingUnreachable

    if isinstance(exc, TrackingUnreachable):
        raise Failure(str(exc), TRACKING_UNREACHABLE) from exc


def fail_abandoned(tracking: TrackingSettings) -> None:
    """Runs left RUNNING by a killed process of this host are marked FAILED, in one line, and
    the temporary files such a process left (MLflow's copy of a model among them) removed."""
    import tempfile

    from features.leftovers import remove_dead_owners
    from training.registry import connect, fail_abandoned_runs

    remove_dead_owners(Path(tempfile.gettempdir()))
    failed = run_job(lambda: fail_abandoned_runs(connect(tracking), tracking.experiment))
    if failed:
        click.echo(
            f"marked {len(failed)} run(s) FAILED, left RUNNING by a process that died: "
            f"{', '.join(failed)}",
            err=True,
        )


def echo_lines(lines: list[str]) -> None:
    """Print each line as it comes (a job announcing its steps)."""
    for line in lines:
        click.echo(line)


def load_pinned(tracking: TrackingSettings, uri: str) -> tuple[str, Any]:
    """The model at ``uri``, and the URI pinned to its version (an alias may move later);
    ``TrackingUnreachable`` when the tracking server does not answer."""
    from training.registry import connect, load_model, parse_model_uri, resolve_version, version_uri

    if parse_model_uri(uri) is not None:
        uri = version_uri(*resolve_version(connect(tracking), uri))
    return uri, load_model(uri)
