"""Dirt: realistic faults injected into the tables, counted as the validator will reject them."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from inmarket.synthetic.vocabularies import SCHEMAS

# columns a dirty world writes as raw text, so that some values can be unparsable
_DIRTY_TIMESTAMPS = {"events": ["timestamp"]}


def table_schema(table: str, dirty: bool) -> pa.Schema:
    """The Parquet schema of an output table; a dirty world keeps its timestamps as raw text."""
    schema = SCHEMAS[table]
    for column in _DIRTY_TIMESTAMPS.get(table, []) if dirty else []:
        schema = schema.set(schema.get_field_index(column), pa.field(column, pa.string()))
    return schema


def inject_dirt(
    tables: dict[str, pd.DataFrame],
    rng: np.random.Generator,
    end: datetime,
    counts: dict[str, dict[str, int]],
) -> None:
    """Add realistic faults; count each class under the validator's reject reason."""

    def add(table: str, reason: str, n: int) -> None:
        counts.setdefault(table, {})
        counts[table][reason] = counts[table].get(reason, 0) + int(n)

    def split(n_rows: int, shares: list[float]) -> list[np.ndarray]:
        sizes = [round(n_rows * s) for s in shares]
        chosen = rng.permutation(n_rows)[: sum(sizes)]
        return np.split(chosen, np.cumsum(sizes)[:-1])

    ev = tables["events"].copy()
    ev["timestamp"] = pd.Series(ev["timestamp"]).dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    dup, unknown_acct, bad_time, late, unknown_person = split(
        len(ev), [0.004, 0.002, 0.002, 0.001, 0.001]
    )
    ev.loc[unknown_acct, "account_id"] = "X" + pd.Series(unknown_acct).astype("str").to_numpy()
    ev.loc[unknown_acct, "person_id"] = None
    garbage = np.array(
        ["31/02/2025 25:61", "not a date", "2025-13-45T99:00:00Z", "yesterday"], dtype=object
    )
    ev.loc[bad_time, "timestamp"] = garbage[rng.integers(0, len(garbage), len(bad_time))]
    late_days = rng.uniform(20, 300, len(late))
    late_stamp = pd.Timestamp(end) + pd.to_timedelta(late_days, unit="D")
    ev.loc[late, "timestamp"] = (
        pd.Series(late_stamp).dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").to_numpy()
    )
    ev.loc[unknown_person, "account_id"] = None
    ev.loc[unknown_person, "person_id"] = (
        "P-unknown-" + pd.Series(unknown_person).astype("str").to_numpy()
    )
    tables["events"] = pd.concat([ev, ev.iloc[dup]], ignore_index=True)
    for reason, rows in [
        ("duplicate_event_id", dup),
        ("unknown_account", unknown_acct),
        ("unparsable_timestamp", bad_time),
        ("timestamp_after_extract", late),
        ("unknown_person", unknown_person),
    ]:
        add("events", reason, len(rows))

    people = tables["people"]
    dup, stray = split(len(people), [0.005, 0.003])
    strays = people.iloc[stray].assign(
        person_id=lambda f: f["person_id"] + "-x", account_id="X-unknown"
    )
    tables["people"] = pd.concat([people, people.iloc[dup], strays], ignore_index=True)
    add("people", "duplicate_person_id", len(dup))
    add("people", "unknown_account", len(stray))

    accounts = tables["accounts"]
    (dup,) = split(len(accounts), [0.002])
    tables["accounts"] = pd.concat([accounts, accounts.iloc[dup]], ignore_index=True)
    add("accounts", "duplicate_account_id", len(dup))

    intent = tables["intent"].copy()
    dup, out_of_range = split(len(intent), [0.003, 0.005])
    intent.loc[out_of_range, "score"] = rng.choice([-5.0, 130.0, 999.0], len(out_of_range))
    tables["intent"] = pd.concat([intent, intent.iloc[dup]], ignore_index=True)
    add("intent", "duplicate_account_date_topic", len(dup))
    add("intent", "score_out_of_range", len(out_of_range))

    opps = tables["opportunities"].copy()
    (bad_status,) = split(len(opps), [0.02])
    opps.loc[bad_status, "status"] = "Closed???"
    tables["opportunities"] = opps
    add("opportunities", "invalid_status", len(bad_status))
