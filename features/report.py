"""The validation report: per table, rows in, used, rejected (by reason) and kept with a warning."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from features.errors import ContractError
from features.vocabularies import vocabulary

SHOWN_VALUES = 10  # unknown values of a column listed in the printed report (all in --json)


def _add_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in sorted({*a, *b})}


def _first_examples(a: dict[str, str], b: dict[str, str]) -> dict[str, str]:
    """Per reason, the example that comes first in its source ('file row N')."""

    def position(example: str) -> tuple[str, int]:
        file, _, row = example.rpartition(" row ")
        return file, int(row) if row.isdigit() else 0

    return {k: min((e for e in (a.get(k), b.get(k)) if e), key=position) for k in sorted({*a, *b})}


def _add_unknown_values(
    a: dict[str, list[dict[str, Any]]], b: dict[str, list[dict[str, Any]]]
) -> dict[str, list[dict[str, Any]]]:
    """Per column, the unknown values of both parts: rows added, the first example kept."""
    merged: dict[str, list[dict[str, Any]]] = {}
    for column in sorted({*a, *b}):
        found: dict[str, dict[str, Any]] = {}
        for entry in [*a.get(column, []), *b.get(column, [])]:
            mine = found.get(entry["value"])
            found[entry["value"]] = (
                dict(entry)
                if mine is None
                else {
                    **mine,
                    "rows": mine["rows"] + entry["rows"],
                    "example": _first_examples({"e": mine["example"]}, {"e": entry["example"]})[
                        "e"
                    ],
                }
            )
        merged[column] = sorted(found.values(), key=lambda e: (-e["rows"], e["value"]))
    return merged


@dataclass
class TableReport:
    """One table's rows: in, used, rejected by reason, kept with a warning; its extra columns."""

    table: str
    rows_in: int
    rows_used: int
    rejects: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    provided: bool = True
    extra_columns: list[str] = field(default_factory=list)  # in the input, not in the contract
    absent_columns: list[str] = field(default_factory=list)  # in the contract, not in the input
    # vocabulary column -> its values outside the vocabulary: value (as spelled), rows, example
    unknown_values: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # values derived by a rule of the mapping file ("seniority derived from Job Title"), and
    # rows a rule could not derive ("seniority not derived: no rule matched Job Title")
    derived: dict[str, int] = field(default_factory=dict)

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejects.values())

    @property
    def reconciles(self) -> bool:
        return self.rows_in == self.rows_used + self.rows_rejected


# where the export time came from (besides _extract.json)
GIVEN, CLOCK = "--extracted-at or the configuration", "the clock"
# the time column that says how far each dated table's history reaches
SPAN_COLUMNS = {"events": "timestamp", "intent": "date", "opportunities": "created_at"}
STALE_DAYS = 30  # events ending longer before the export time than this: say so


@dataclass
class ValidationReport:
    """Every table's report, the export time that separated late rows and where it came from,
    and the first and last date of each dated table's used rows (ISO text)."""

    tables: dict[str, TableReport]
    extracted_at: datetime
    extracted_from: str = GIVEN
    spans: dict[str, list[str]] = field(default_factory=dict)

    def all_stale(self) -> bool:
        """Whether every dated table (events, intent, deals) ends long before the export time:
        the export time, not one feed, is then wrong."""
        ends = [datetime.fromisoformat(last) for _, last in self.spans.values()]
        return bool(ends) and (self.extracted_at - max(ends)).days > STALE_DAYS

    def stale(self) -> str | None:
        """Why the export time looks wrong, when the events end long before it (the clock
        taken for an old export, or an event feed that stopped); None otherwise."""
        span = self.spans.get("events")
        if not span:
            return None
        last = datetime.fromisoformat(span[1])
        days = (self.extracted_at - last).days
        if days <= STALE_DAYS:
            return None
        fixes = {
            CLOCK: "pass --extracted-at with when the export was taken, or write "
            '_extract.json beside the tables ({"extracted_at": "..."})',
            GIVEN: "check --extracted-at, or whether the event feed stopped",
        }
        fix = fixes.get(
            self.extracted_from,
            f"check extracted_at in {self.extracted_from} (or override it with --extracted-at), "
            "or whether the event feed stopped",
        )
        return (
            f"events end {last:%Y-%m-%d}, {days} days before the export time "
            f"{self.extracted_at:%Y-%m-%d} taken from {self.extracted_from}: the newest "
            f"snapshots see no engagement and can have no labels; {fix}"
        )

    def check_export_time(self) -> str | None:
        """The ``stale()`` warning, or ContractError with it when the export time came from the
        clock and every dated table ends long before it: the clock, not one stopped feed, is
        then wrong, and the newest snapshots (scored, or the test window) would hold no data."""
        stale = self.stale()
        if stale and self.extracted_from == CLOCK and self.all_stale():
            raise ContractError(stale)
        return stale

    @property
    def reconciles(self) -> bool:
        return all(t.reconciles for t in self.tables.values())

    def unreconciled(self) -> str | None:
        """What does not add up, naming each table whose rows used and rejected are not the
        rows its source holds (rows lost, or made, between reading and validation); None when
        every table reconciles."""
        wrong = [
            f"{t.table}: {t.rows_in:,} rows in the source, {t.rows_used:,} used + "
            f"{t.rows_rejected:,} rejected"
            for t in self.tables.values()
            if not t.reconciles
        ]
        if not wrong:
            return None
        return (
            f"row totals do not reconcile ({'; '.join(wrong)}); rows were lost or made between "
            "reading and validation. This is a bug, please report it"
        )

    def counted(self, table: str, rows_in: int) -> ValidationReport:
        """The report with ``table``'s rows in as its source counted them, once per part: a
        build validates a table bucket by bucket, and a bucket counts only the rows it was
        handed."""
        mine = self.tables.get(table) or TableReport(table, 0, 0)
        return replace(self, tables={**self.tables, table: replace(mine, rows_in=rows_in)})

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
                sorted({*mine.extra_columns, *part.extra_columns}),
                sorted({*mine.absent_columns} & {*part.absent_columns}),
                _add_unknown_values(mine.unknown_values, part.unknown_values),
                _add_counts(mine.derived, part.derived),
            )
        spans = dict(self.spans)
        for name, (first, last) in other.spans.items():
            mine_span = spans.get(name)
            spans[name] = (
                [min(first, mine_span[0]), max(last, mine_span[1])] if mine_span else [first, last]
            )
        return ValidationReport(tables, self.extracted_at, self.extracted_from, spans)

    @property
    def total_rejected(self) -> int:
        return sum(t.rows_rejected for t in self.tables.values())

    def without_events(self) -> str | None:
        """Why no event is used, when none is: the features would hold no engagement, so
        ``validate`` warns and training refuses. None when events are used or not reported."""
        events = self.tables.get("events")
        if events is None or events.rows_used:
            return None
        rejected = ", ".join(f"{reason} {n:,}" for reason, n in sorted(events.rejects.items()))
        return (
            f"events: none of its {events.rows_in:,} rows can be used"
            + (f" (rejected: {rejected})" if rejected else "")
            + ", so the features hold no engagement and no model is trained on them; fix the "
            "rejected rows (inmarket validate DATA --rejects-out R.parquet lists them) or export "
            "the events again"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "extracted_at": self.extracted_at.isoformat(),
            "extracted_from": self.extracted_from,
            "spans": self.spans,
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
                    "extra_columns": t.extra_columns,
                    "absent_columns": t.absent_columns,
                    "unknown_values": t.unknown_values,
                    "derived": t.derived,
                }
                for name, t in self.tables.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValidationReport:
        """The report again from ``to_dict`` (e.g. ``<features>.report.json``)."""
        derived = {"rows_rejected", "reconciles"}
        tables = {
            name: TableReport(name, **{k: v for k, v in t.items() if k not in derived})
            for name, t in data["tables"].items()
        }
        return cls(
            tables,
            datetime.fromisoformat(data["extracted_at"]),
            data.get("extracted_from", GIVEN),
            data.get("spans", {}),
        )

    def column_notes(self, declared: Mapping[str, str]) -> list[str]:
        """What becomes of each column beyond the contract: an account column is a feature only
        when ``declared`` (features.columns) names it; every other one is ignored."""
        notes = []
        for t in self.tables.values():
            for column in t.extra_columns:
                if t.table == "accounts" and column in declared:
                    notes.append(
                        f"accounts.{column}: used as a feature (declared {declared[column]})"
                    )
                elif t.table == "accounts":
                    notes.append(
                        f"accounts.{column}: ignored (its value is as of the export; declare it "
                        "in [features.columns] as static, or give its history as dated)"
                    )
                else:
                    notes.append(f"{t.table}.{column}: ignored (not in the data contract)")
        people = self.tables.get("people")
        if people is not None and people.provided and "created_at" in people.absent_columns:
            notes.append(
                "people.created_at: not given, so every person, with their department, "
                "seniority and buying role, is taken as known at every snapshot; a contact or "
                "role added during a deal then leaks into earlier snapshots. Export when each "
                "person entered the CRM as people.created_at."
            )
        return notes

    def history(self) -> list[str]:
        """The export time and where it came from, and each table's span of dates."""
        return [
            f"export time taken from {self.extracted_from}: {self.extracted_at:%Y-%m-%d %H:%M} "
            "UTC (rows dated after it count as late)",
            *(
                f"  {name} from {first[:10]} to {last[:10]}"
                for name, (first, last) in self.spans.items()
            ),
        ]

    def render(self, declared: Mapping[str, str] | None = None) -> str:
        lines = [
            "Validation report",
            *self.history(),
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
            for column, values in t.unknown_values.items():
                lines += _unknown_lines(t.table, column, values)
            for what, n in t.derived.items():
                lines.append(f"  {t.table}.{what}: {n:,}")
        lines += [f"  column {note}" for note in self.column_notes(declared or {})]
        return "\n".join(lines)


def _unknown_lines(table: str, column: str, values: list[dict[str, Any]]) -> list[str]:
    """A vocabulary column's unknown values: each with its rows and an example row, the
    allowed values, what became of the rows and how to map them."""
    v = vocabulary(table, column)
    shown = ", ".join(
        f"{e['value']!r} {e['rows']:,} ({e['example']})" for e in values[:SHOWN_VALUES]
    )
    more = len(values) - SHOWN_VALUES
    return [
        f"  unknown {v.name} ({v.counter}): {shown}"
        + (f", and {more:,} more values (--json lists all)" if more > 0 else ""),
        f"    allowed: {', '.join(v.values)}; other values are {v.effect}; map a spelling "
        f"with values.{column} in the mapping file",
    ]
