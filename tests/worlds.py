"""The synthetic worlds the session fixtures generate: their size and seed."""

from __future__ import annotations

from inmarket.synthetic import CHUNK_ACCOUNTS

# two chunks, so chunked generation is exercised
WORLD_ACCOUNTS = CHUNK_ACCOUNTS + 500
WORLD_SEED = 11
