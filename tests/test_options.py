"""The command line restates no setting: an option that sets one shows the setting's own default
and choices, so the help cannot drift from the settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args, get_origin

import click
import pytest

from features.plan import EVENTS_PER_BUCKET
from inmarket.cli import cli
from inmarket.config import Config
from inmarket.options import SettingOption

# an option that sets a setting, the setting ([section] field) and the commands that have it
_SETTINGS = [
    ("--accounts", "generate", "accounts", "generate"),
    ("--seed", "generate", "seed", "generate"),
    ("--days", "generate", "days", "generate"),
    ("--start", "generate", "start", "generate"),
    ("--dirty", "generate", "dirty", "generate"),
    ("--mapping", "data", "mapping", "validate features train score refresh"),
    ("--extracted-at", "data", "extracted_at", "validate features train evaluate score refresh"),
    ("--every-days", "features", "every_days", "features"),
    ("--snapshots", "features", "snapshots", "features"),
    ("--buckets", "features", "buckets", "features"),
    ("--engine", "features", "engine", "features score refresh"),
    ("--spark-master", "features", "spark_master", "features score refresh"),
    ("--label", "train", "label", "train"),
    ("--horizon-days", "train", "horizon_days", "train"),
    ("--seed", "train", "seed", "train"),
    ("--shuffle-labels", "train", "shuffle_labels", "train"),
    ("--store", "tracking", "store", "train promote evaluate score serve report refresh"),
    ("--tracking-uri", "tracking", "uri", "train promote evaluate score serve report refresh"),
    ("--retrain-after-days", "refresh", "retrain_after_days", "refresh"),
    ("--to", "sink", "to", "score refresh"),
]
# (command, flag) -> (section, field)
SETTING_FLAGS = {
    (command, flag): (section, field)
    for flag, section, field, commands in _SETTINGS
    for command in commands.split()
}


def _help(command: str, flag: str) -> tuple[click.Parameter, str]:
    """The option ``flag`` of ``command`` and its help, unwrapped."""
    group = cli.commands[command]
    param = next(p for p in group.params if flag in p.opts)
    record = param.get_help_record(click.Context(group))
    assert record is not None
    return param, record[1]


def _field(section: str, name: str) -> tuple[Any, Any]:
    """The annotation and default of ``[section] name``."""
    info = type(Config.model_fields[section].default).model_fields[name]
    return info.annotation, info.get_default(call_default_factory=True)


def _as_shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, datetime):
        return value.date().isoformat()
    return str(value)


@pytest.mark.parametrize(("command", "flag"), list(SETTING_FLAGS))
def test_an_option_shows_its_settings_default_and_choices(command: str, flag: str) -> None:
    # given an option that sets a setting, and that setting's default and type
    param, words = _help(command, flag)
    annotation, default = _field(*SETTING_FLAGS[command, flag])
    # then the help shows the setting's default, and the choices are the setting's Literal
    if default is not None:
        assert f"[{_as_shown(default)}]" in words, words
    if get_origin(annotation) is Literal:
        assert isinstance(param.type, click.Choice)
        assert tuple(param.type.choices) == get_args(annotation)


def test_the_buckets_help_names_the_events_per_bucket_the_engine_uses() -> None:
    _, words = _help("features", "--buckets")
    assert f"[about {EVENTS_PER_BUCKET:,} events each]" in words, words


def test_every_option_that_sets_a_setting_is_checked_above() -> None:
    built = {
        (name, flag): (param.section, param.field)
        for name, command in cli.commands.items()
        for param in command.params
        if isinstance(param, SettingOption)
        for flag in param.opts[:1]
    }
    assert built == SETTING_FLAGS
