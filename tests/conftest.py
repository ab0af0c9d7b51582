"""Shared fixtures: small synthetic worlds made once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from inmarket.synthetic import CHUNK_ACCOUNTS, WorldSpec, generate_world

# CI replays the same examples run after run, so a landing is never decided by chance;
# local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# two chunks, so chunked generation is exercised
WORLD_ACCOUNTS = CHUNK_ACCOUNTS + 500


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(WorldSpec(accounts=WORLD_ACCOUNTS, seed=11), out)
    return out


@pytest.fixture(scope="session")
def dirty_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dirty")
    generate_world(WorldSpec(accounts=WORLD_ACCOUNTS, seed=11, dirty=True), out)
    return out
