"""The validation report: per table, rows in, used, rejected (by reason) and kept with a warning."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def _add_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in sorted({*a, *b})}


def _first_examples(a: dict[str, str], b: dict[str, str]) -> dict[str, str]:
    """Per reason, the example that comes first in its source ('file row N')."""

    def position(example: str) -> tuple[str, int]:
        file, _, row = example.rpartition(" row ")
        return file, int(row) if row.isdigit() else 0

    return {k: min((e for e in (a.get(k), b.get(k)) if e), key=position) for k in sorted({*a, *b})}


@dataclass
class TableReport:
    table: str
    rows_in: int
    rows_used: int
    rejects: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    provided: bool = True

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejects.values())

    @property
    def reconciles(self) -> bool:
        return self.rows_in == self.rows_used + self.rows_rejected


@dataclass
class ValidationReport:
    tables: dict[str, TableReport]
    extracted_at: datetime

    @property
    def reconciles(self) -> bool:
        return all(t.reconciles for t in self.tables.values())

    def merge(self, other: ValidationReport) -> ValidationReport:
        """Add up the reports of parts of the same input (e.g. buckets of events)."""
        tables = dict(self.tables)
        for name, part in other.tables.items():
            mine = tables.get(name)
            if mine is None:
                tables[name] = part
                continue
            tables[name] = TableReport(
                name,
                mine.rows_in + part.rows_in,
                mine.rows_used + part.rows_used,
                _add_counts(mine.rejects, part.rejects),
                _add_counts(mine.warnings, part.warnings),
                _first_examples(mine.examples, part.examples),
                mine.provided or part.provided,
            )
        return ValidationReport(tables, self.extracted_at)

    @property
    def total_rejected(self) -> int:
        return sum(t.rows_rejected for t in self.tables.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "extracted_at": self.extracted_at.isoformat(),
            "reconciles": self.reconciles,
            "tables": {
                name: {
                    "provided": t.provided,
                    "rows_in": t.rows_in,
                    "rows_used": t.rows_used,
                    "rows_rejected": t.rows_rejected,
                    "reconciles": t.reconciles,
                    "rejects": t.rejects,
                    "warnings": t.warnings,
                    "examples": t.examples,
                }
                for name, t in self.tables.items()
            },
        }

    def render(self) -> str:
        lines = [
            f"Validation report (rows dated after {self.extracted_at:%Y-%m-%d %H:%M} UTC"
            " count as late)",
            f"{'table':<14}{'rows in':>12}{'used':>12}{'rejected':>12}  reconciles",
        ]
        for t in self.tables.values():
            if not t.provided:
                lines.append(f"{t.table:<14}{'(not provided)':>36}")
                continue
            lines.append(
                f"{t.table:<14}{t.rows_in:>12,}{t.rows_used:>12,}{t.rows_rejected:>12,}"
                f"  {'yes' if t.reconciles else 'NO'}"
            )
        for t in self.tables.values():
            for reason, n in sorted(t.rejects.items()):
                example = t.examples.get(reason, "")
                lines.append(f"  rejected {t.table}: {reason} = {n:,}  e.g. {example}")
            for reason, n in sorted(t.warnings.items()):
                lines.append(f"  kept with a warning {t.table}: {reason} = {n:,}")
        return "\n".join(lines)
