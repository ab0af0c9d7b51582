"""The world generated chunk by chunk into Parquet, stage by stage from one random stream."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from features.io import EXTRACT_MANIFEST
from features.leftovers import scratch_dir
from inmarket.synthetic.accounts_people import add_accounts, add_people, date_people
from inmarket.synthetic.chunk import Chunk
from inmarket.synthetic.dirt import inject_dirt, table_schema
from inmarket.synthetic.engagement import add_events, add_intent
from inmarket.synthetic.episodes import add_episodes
from inmarket.synthetic.opportunities import add_opportunities
from inmarket.synthetic.spec import WorldSpec
from inmarket.synthetic.vocabularies import SCHEMAS

CHUNK_ACCOUNTS = 2000
TRUTH_DIR = "_truth"
DIRT_FILE = "dirt.json"

# the order matters: each stage reads what the earlier ones drew, all from one random stream
_STAGES = (
    add_accounts,
    add_people,
    add_episodes,
    add_events,
    add_intent,
    add_opportunities,
    date_people,
)


@dataclass
class WorldSummary:
    """What was written: rows per table, and injected faults per table and reject reason."""

    rows: dict[str, int] = field(default_factory=dict)
    dirt: dict[str, dict[str, int]] = field(default_factory=dict)


def _generate_chunk(spec: WorldSpec, index: int) -> Chunk:
    """Generate chunk ``index`` of the world: its accounts and everything that happens to them."""
    first = index * CHUNK_ACCOUNTS
    chunk = Chunk(spec, index, first, min(CHUNK_ACCOUNTS, spec.accounts - first))
    for stage in _STAGES:
        stage(chunk)
    return chunk


def generate_world(spec: WorldSpec, out: Path) -> WorldSummary:
    """Write the world's tables to ``out`` (Parquet), the truth to ``out/_truth``.

    Files are written to a temporary folder beside ``out`` and moved into place at the end,
    so an interrupted run never leaves a half-written table behind.
    """
    out = Path(out)
    with scratch_dir("generate", out) as tmp:
        summary = _write_world(spec, tmp)
        for path in sorted(tmp.rglob("*")):
            if path.is_file():
                target = out / path.relative_to(tmp)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
    return summary


def _write_world(spec: WorldSpec, tmp: Path) -> WorldSummary:
    """Every table of the world and its truth, written into the folder ``tmp``."""
    (tmp / TRUTH_DIR).mkdir(parents=True)
    paths = {
        t: tmp / (f"{TRUTH_DIR}/{t[6:]}.parquet" if t.startswith("truth_") else f"{t}.parquet")
        for t in SCHEMAS
    }
    writers = {
        t: pq.ParquetWriter(paths[t], table_schema(t, spec.dirty), compression="zstd")
        for t in SCHEMAS
    }
    summary = WorldSummary()
    n_chunks = -(-spec.accounts // CHUNK_ACCOUNTS)
    try:
        for index in tqdm(range(n_chunks), desc="generate", unit="chunk", disable=None):
            chunk = _generate_chunk(spec, index)
            if spec.dirty:
                inject_dirt(chunk.tables, chunk.rng, spec.end, summary.dirt)
            for name, frame in chunk.tables.items():
                writers[name].write_table(
                    pa.Table.from_pandas(frame, schema=writers[name].schema, preserve_index=False)
                )
                summary.rows[name] = summary.rows.get(name, 0) + len(frame)
    finally:
        for writer in writers.values():
            writer.close()
    (tmp / EXTRACT_MANIFEST).write_text(
        json.dumps({"extracted_at": spec.end.isoformat()}) + "\n", encoding="utf-8"
    )
    world = {
        "accounts": spec.accounts,
        "seed": spec.seed,
        "start": spec.start.isoformat(),
        "days": spec.days,
        "dirty": spec.dirty,
        "in_market_quarterly": spec.in_market_quarterly,
        "rows": summary.rows,
    }
    (tmp / TRUTH_DIR / "world.json").write_text(
        json.dumps(world, indent=2) + "\n", encoding="utf-8"
    )
    (tmp / TRUTH_DIR / DIRT_FILE).write_text(
        json.dumps(summary.dirt, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return summary
