"""Command-line options built from the settings' fields: an option's help is its field's
description, its shown default the field's default and its choices the field's ``Literal``, so
the command line cannot drift from the settings. A flag not given leaves the file's value."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time
from pathlib import Path
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import click
from pydantic.fields import FieldInfo

from inmarket.config import Config

_F = TypeVar("_F", bound=Callable[..., Any])
_GIVEN = "inmarket.given"  # the ctx.meta key of the settings given as flags, by section


class SettingOption(click.Option):
    """An option that sets one field of one configuration section, ``[section] field``."""

    def __init__(self, *args: Any, section: str, field: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.section, self.field = section, field


def option(
    section: str, field: str, *decls: str, shown: str | None = None, **attrs: Any
) -> Callable[[_F], _F]:
    """A click option setting ``[section] field``: ``--field-name`` unless ``decls`` are given;
    help, shown default (``shown`` where the default is computed by code), choices and type from
    the field unless ``attrs`` say otherwise."""
    info = _setting(section, field)
    shown = shown or _shown(info.get_default(call_default_factory=True))
    words = attrs.pop("help", None) or info.description or ""
    kind = _value_type(info.annotation)
    if kind is bool:  # a lone flag turns it on; "--on/--off" sets it either way
        attrs.setdefault("is_flag", True)
    else:
        attrs.setdefault("type", _click_type(kind))
    return click.option(
        *(decls or [f"--{field.replace('_', '-')}"]),
        cls=SettingOption,
        section=section,
        field=field,
        default=None,
        expose_value=False,
        callback=_remember,
        help=" ".join(w for w in (words, shown and f"[{shown}]") if w),
        **attrs,
    )


def given(ctx: click.Context) -> dict[str, dict[str, Any]]:
    """The settings given as flags to this command, by section (flags not given are absent)."""
    return ctx.meta.get(_GIVEN, {})


def _setting(section: str, field: str) -> FieldInfo:
    """The field ``field`` of the configuration section ``[section]``."""
    return type(Config.model_fields[section].default).model_fields[field]


def _shown(value: Any) -> str | None:
    """A setting's default as the help shows it; None shows nothing."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, datetime) and value.time() == time(0):
        return value.date().isoformat()
    return str(value)


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and isinstance(param, SettingOption):
        ctx.meta.setdefault(_GIVEN, {}).setdefault(param.section, {})[param.field] = value
    return value


def _value_type(annotation: Any) -> Any:
    """The type of a field's values: ``int`` for ``int | None``."""
    if get_origin(annotation) in (Union, UnionType):
        (annotation,) = (a for a in get_args(annotation) if a is not type(None))
    return annotation


def _click_type(kind: Any) -> Any:
    if get_origin(kind) is Literal:
        return click.Choice(get_args(kind))
    if kind is datetime:
        return click.DateTime()
    if kind is Path:
        return click.Path(path_type=Path)
    return kind
