"""Derivation rules: a vocabulary value derived from another column of an export.

An event type from the page's URL (``/pricing`` -> ``pricing_page``), a person's seniority,
department and buying role from the job title ("Chief Financial Officer" -> ``c_level``,
``finance``, ``finance``). The shipped rules are the data file ``features/rules.toml``; a
mapping file extends or overrides them (``[rules.<table>.<column>]``) and turns them on per
source (``derive = { <column> = "Export Column" }``). Values of the data win over derived ones.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import pandas as pd

from features.encode import spread_labels
from features.errors import ConfigError
from features.vocabularies import VOCABULARIES, vocabulary

RULES_FILE = "rules.toml"
_FLAGS = re.IGNORECASE | re.DOTALL  # a pattern is searched anywhere in the text, case ignored
DERIVED_PREFIX = "_derived_"  # internal column: per row, the counter its derivation adds to


@dataclass(frozen=True)
class Rule:
    """How one vocabulary column is derived: what it reads, its patterns in order (regular
    expression -> value) and the values of the data a derived value replaces."""

    table: str
    column: str
    reads: str
    patterns: dict[str, str]
    refines: tuple[str, ...] = field(default=())

    def derive(self, text: pd.Series) -> pd.Series:
        """The value of the first pattern found in each text (case ignored); missing where
        none is. Texts repeat (titles, URLs), so the work is done once per distinct one."""
        codes, uniques = pd.factorize(text)
        distinct = pd.Series(uniques, dtype="str")
        found = pd.Series(pd.NA, index=distinct.index, dtype="str")
        for pattern, value in self.patterns.items():
            hit = found.isna() & distinct.str.match(f".*?(?:{pattern})", flags=_FLAGS)
            found = found.mask(hit, value)
        return spread_labels(found, codes, text.index)


def _checked(table: str, column: str, spec: dict[str, Any], where: str) -> dict[str, str]:
    """The patterns of one rule: each compiles, each value is in the column's vocabulary."""
    if not any((v.table, v.column) == (table, column) for v in VOCABULARIES):
        names = ", ".join(v.name for v in VOCABULARIES)
        raise ConfigError(
            f"{where}: rules.{table}.{column}: not a vocabulary column; they are {names}"
        )
    allowed = vocabulary(table, column).values
    patterns = dict(spec)
    for pattern, value in patterns.items():
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(
                f"{where}: rules.{table}.{column}: pattern {pattern!r} is not a regular "
                f"expression ({exc})"
            ) from exc
        if value and value not in allowed:
            raise ConfigError(
                f"{where}: rules.{table}.{column}: pattern {pattern!r} gives {value!r}, not one "
                f"of {', '.join(allowed)}"
            )
    return patterns


def shipped_rules() -> dict[tuple[str, str], Rule]:
    """The rules in ``features/rules.toml``: (table, column) -> rule."""
    text = (resources.files("features") / RULES_FILE).read_text(encoding="utf-8")
    rules = {}
    for table, columns in tomllib.loads(text).items():
        for column, spec in columns.items():
            patterns = _checked(table, column, spec["patterns"], f"features/{RULES_FILE}")
            rules[(table, column)] = Rule(
                table, column, spec["reads"], patterns, tuple(spec.get("refines", ()))
            )
    return rules


def rules_with(
    overrides: dict[str, dict[str, dict[str, str]]], where: str
) -> dict[tuple[str, str], Rule]:
    """The shipped rules with a mapping file's ``[rules.<table>.<column>]`` patterns: those are
    tried first; one equal to a shipped pattern gives its value instead; an empty value turns a
    shipped pattern off."""
    rules = shipped_rules()
    for table, columns in overrides.items():
        for column, spec in columns.items():
            patterns = _checked(table, column, spec, where)
            shipped = rules.get((table, column))
            before = shipped.patterns if shipped else {}
            merged = patterns | {p: v for p, v in before.items() if p not in patterns}
            rules[(table, column)] = Rule(
                table,
                column,
                shipped.reads if shipped else "the mapped column",
                {p: v for p, v in merged.items() if v},
                shipped.refines if shipped else (),
            )
    return rules


def rules_markdown() -> str:
    """The shipped rules as the Markdown table in docs/data-contract.md."""
    lines = ["| column | reads | pattern (first match wins) | value |", "|---|---|---|---|"]
    for rule in shipped_rules().values():
        for pattern, value in rule.patterns.items():
            shown = pattern.replace("|", "\\|")
            lines.append(f"| `{rule.table}.{rule.column}` | {rule.reads} | `{shown}` | {value} |")
    return "\n".join(lines)
