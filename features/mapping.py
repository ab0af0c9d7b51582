"""Column mapping: turn an export of another shape into the canonical tables, without code.

A mapping file (TOML or YAML) has one entry per canonical table; an entry is one source or
a list of sources (several files feeding one table). Each source says which file, which of
its columns is which canonical column, how values are spelled, how dates are formatted and,
where the account is only known through an email or web domain, which column holds it::

    [[events]]
    file = "touches.csv"
    columns = { event_id = "Touch ID", person_id = "Lead ID", timestamp = "Touch Date",
                event_type = "Touch Type" }
    formats = { timestamp = "%m/%d/%Y %H:%M" }
    values.event_type = { "Demo Request" = "demo_request" }
    constants = { channel = "email" }
    derive = { event_type = "Page URL" }

``derive`` fills a vocabulary column from another export column by the derivation rules
(``features.rules``), which ``[rules.<table>.<column>]`` extends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from features.contract import DOMAIN_COLUMN, TABLE_ORDER, TABLES
from features.encode import normalise_label
from features.errors import ConfigError, ContractError
from features.io import ROW_COLUMN, read_structured_file
from features.rules import DERIVED_PREFIX, Rule, rules_with
from features.settings import describe_errors


class SourceMapping(BaseModel):
    """How one export file becomes (part of) one canonical table."""

    model_config = ConfigDict(extra="forbid")

    file: str
    columns: dict[str, str] = Field(default_factory=dict, description="canonical -> source column")
    values: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="canonical column -> {source spelling: canonical value}"
    )
    constants: dict[str, str] = Field(default_factory=dict, description="canonical column -> value")
    formats: dict[str, str] = Field(default_factory=dict, description="date column -> strftime")
    account_from_domain: str | None = Field(
        None, description="source column with an email, URL or domain matched to accounts.domain"
    )
    derive: dict[str, str] = Field(
        default_factory=dict,
        description="canonical column -> source column its value is derived from (features.rules)",
    )
    _rules: dict[tuple[str, str], Rule] = PrivateAttr(default_factory=dict)


class Mapping(BaseModel):
    """A whole mapping file: canonical table -> its sources."""

    model_config = ConfigDict(extra="forbid")

    accounts: list[SourceMapping] = Field(default_factory=list)
    people: list[SourceMapping] = Field(default_factory=list)
    events: list[SourceMapping] = Field(default_factory=list)
    intent: list[SourceMapping] = Field(default_factory=list)
    opportunities: list[SourceMapping] = Field(default_factory=list)
    account_history: list[SourceMapping] = Field(default_factory=list)
    rules: dict[str, dict[str, dict[str, str]]] = Field(
        default_factory=dict,
        description="table -> column -> {pattern: value}: tried before the shipped rules",
    )

    @field_validator(*TABLE_ORDER, mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @classmethod
    def load(cls, path: Path) -> Mapping:
        data = read_structured_file(Path(path))
        unknown = sorted(set(data) - {*TABLE_ORDER, "rules"})
        if unknown:
            raise ConfigError(
                f"{path}: unknown table(s) {unknown}; tables are {list(TABLE_ORDER)} "
                "(and [rules] for derivation rules)"
            )
        try:
            mapping = cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"{path}: {describe_errors(exc)}") from exc
        rules = rules_with(mapping.rules, str(path))
        for table in TABLE_ORDER:
            known = {c.name for c in TABLES[table]}
            for source in mapping.sources(table):
                named = set(source.columns) | set(source.constants) | set(source.values)
                stray = sorted(named - known)
                if stray:
                    raise ConfigError(
                        f"{path}: [{table}] {source.file}: {stray} are not columns of {table}; "
                        f"its columns are {sorted(known)}"
                    )
                underivable = sorted(c for c in source.derive if (table, c) not in rules)
                if underivable:
                    derivable = sorted(f"{t}.{c}" for t, c in rules)
                    raise ConfigError(
                        f"{path}: [{table}] {source.file}: derive names {underivable}, which no "
                        f"rule derives; rules derive {derivable} (add patterns under "
                        f"[rules.{table}.<column>])"
                    )
                source._rules = {k: r for k, r in rules.items() if k[0] == table}
        return mapping

    def sources(self, table: str) -> list[SourceMapping]:
        sources: list[SourceMapping] = getattr(self, table)
        return sources


def map_frame(table: str, source: SourceMapping, frame: pd.DataFrame) -> pd.DataFrame:
    """Rename, re-spell and complete one export frame (or a chunk of it) to canonical columns."""
    frame.columns = [str(c).strip() for c in frame.columns]
    wanted = dict(source.columns)
    if source.account_from_domain:
        wanted[DOMAIN_COLUMN] = source.account_from_domain
    read = {*wanted.values(), *source.derive.values()}
    missing = sorted({col for col in read if col not in frame.columns})
    if missing:
        raise ContractError(
            f"{table} ({source.file}): mapped column(s) {missing} not in the file; "
            f"found {list(frame.columns)}"
        )
    renamed = {src: canonical for canonical, src in wanted.items()}
    keep = {col.name for col in TABLES[table]} | {ROW_COLUMN}
    passthrough = [c for c in frame.columns if c in keep and c not in wanted]
    out = pd.DataFrame({renamed[src]: frame[src] for src in wanted.values()}, index=frame.index)
    for column in passthrough:
        out[column] = frame[column]
    for column, value in source.constants.items():
        out[column] = value
    for column, spellings in source.values.items():
        if column not in out:
            raise ContractError(
                f"{table} ({source.file}): values.{column} maps a column "
                "that is neither mapped nor in the file"
            )
        lookup = {normalise_label(pd.Series([k])).iloc[0]: v for k, v in spellings.items()}
        normalised = normalise_label(out[column])
        out[column] = normalised.map(lookup).fillna(out[column])
    for column, src in source.derive.items():
        _derive(out, source._rules[(table, column)], frame[src], src)
    return out


def _derive(out: pd.DataFrame, rule: Rule, text: pd.Series, src: str) -> None:
    """Fill ``rule.column`` from ``text`` where the data has no value (or one the rule refines),
    and mark each such row with what its derivation counts as in the report."""
    column = rule.column
    given = out[column] if column in out else pd.Series(pd.NA, index=out.index, dtype="str")
    label = normalise_label(given)
    open_ = label.isna() | label.isin(rule.refines)
    derived = rule.derive(text)
    use = open_ & derived.notna()
    unmatched = label.isna() & derived.isna() & normalise_label(text).notna()
    out[column] = given.mask(use, derived)
    out[DERIVED_PREFIX + column] = (
        pd.Series(pd.NA, index=out.index, dtype="str")
        .mask(use, f"{column} derived from {src}")
        .mask(unmatched, f"{column} not derived: no rule matched {src}")
    )
