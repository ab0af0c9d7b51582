"""Batch scoring: ranked accounts, trend, reasons, gaps, drift, CSV, the run it publishes."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.settings import DataSettings, FeatureSettings
from features.validation import load_dataset
from inmarket.synthetic import WorldSpec, generate_world
from serving.batch import RANKED_COLUMNS, score_batch
from serving.runs import published
from tests.stores import client_of, copy_store
from training.drift import drift_report, psi, reference_bins
from training.job import TrainResult
from training.registry import load_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ranked(
    trained: tuple[Path, TrainResult], world_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, pd.DataFrame]:
    store, result = trained
    client_of(store)
    out = tmp_path_factory.mktemp("ranked") / "ranked.parquet"
    score_batch(
        load_model(result.model_uri),
        world_dir,
        out,
        DataSettings(),
        FeatureSettings(),
        model_uri=result.model_uri,
    )
    return out, pd.read_parquet(out)


def test_every_account_once_prospects_ranked_by_score(
    ranked: tuple[Path, pd.DataFrame], world_dir: Path
) -> None:
    _, table = ranked
    accounts = pd.read_parquet(world_dir / "accounts.parquet")
    assert sorted(table["account_id"]) == sorted(accounts["account_id"])
    assert list(table.columns) == list(RANKED_COLUMNS)
    prospects = table[table["status"] == "prospect"]
    assert (np.diff(prospects["score"].to_numpy(dtype=int)) <= 0).all()
    assert prospects["rank"].tolist() == list(range(1, len(prospects) + 1))
    assert table["as_of"].nunique() == 1
    assert prospects["trend"].notna().mean() > 0.9


def test_customers_and_pipeline_are_listed_apart_never_ranked(
    ranked: tuple[Path, pd.DataFrame],
) -> None:
    # the model learned prospects only (labels leave out customers and open pipeline)
    _, table = ranked
    others = table[table["status"] != "prospect"]
    assert set(others["status"]) == {"customer", "in-pipeline"}
    assert others["rank"].isna().all() and others["score"].isna().all()
    assert (others["stage"] == others["status"]).all() and (others["top_reasons"] == "").all()
    assert (table.index[table["status"] != "prospect"] >= len(table) - len(others)).all()
    top = table[table["rank"] <= table["rank"].max() // 10]
    assert len(top) > 100
    assert (top["status"] == "prospect").all()
    assert (top["is_customer"] == 0).all() and (top["in_pipeline"] == 0).all()


def test_reasons_and_gaps_are_filled(ranked: tuple[Path, pd.DataFrame]) -> None:
    _, table = ranked
    top = table.head(20)
    assert (top["top_reasons"].str.len() > 0).all()
    reasons = json.loads(top["reasons"].iloc[0])
    assert set(reasons) == {"positive", "negative", "unusual"}
    assert top["buying_group_gap"].str.len().gt(0).all()


def _drift(out: Path) -> dict[str, Any]:
    """The drift file of the scoring run published at ``out``."""
    run = published(out)
    assert run is not None
    drift: dict[str, Any] = json.loads(run.read("ranked.drift.json"))
    return drift


def test_csv_and_drift_in_the_run(ranked: tuple[Path, pd.DataFrame]) -> None:
    out, table = ranked
    csv = pd.read_csv(out.with_suffix(".csv"))
    assert len(csv) == len(table) and "reasons" not in csv.columns
    drift = _drift(out)
    assert drift["psi"] and all(value >= 0 for value in drift["psi"].values())
    # the world is stable: scoring it raises no alarm (calendar-driven features once did)
    assert drift["warnings"] == []
    left = [*out.parent.iterdir(), *out.with_name("ranked.runs").iterdir()]
    assert not [p for p in left if p.name.startswith(".")]


def test_a_run_is_published_by_its_manifest_with_every_file_sealed(
    ranked: tuple[Path, pd.DataFrame], trained: tuple[Path, TrainResult]
) -> None:
    # given a scoring written to ranked.parquet
    out, table = ranked
    manifest_path = out.with_name("ranked.manifest.json")
    manifest = json.loads(manifest_path.read_text())
    version = trained[1].version
    # then its manifest names the model, its version (every row's), as_of and the accounts
    assert (
        manifest["model_version"] == version and manifest["model"] == f"models:/inmarket/{version}"
    )
    assert (table["model_version"] == version).all()
    assert manifest["as_of"] == str(table["as_of"].iloc[0]) and manifest["accounts"] == len(table)
    # and the run's folder, holding the list, its CSV and six side files, each with its size
    # and SHA-256, all written before the manifest; the list and CSV beside it are copies
    folder = out.parent / manifest["run"]
    assert sorted(manifest["files"]) == sorted(p.name for p in folder.iterdir())
    assert len(manifest["files"]) == 8
    # the first run at this path: nothing to compare with, said in its changes, none on a row
    changes = json.loads((folder / "ranked.changes.json").read_text())
    assert changes["compared_with"] is None and changes["rose"] == changes["fell"] == []
    assert table[["stage_before", "score_before", "change"]].isna().all().all()
    for name, sealed in manifest["files"].items():
        data = (folder / name).read_bytes()
        assert sealed == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        assert (folder / name).stat().st_mtime_ns <= manifest_path.stat().st_mtime_ns
    assert out.read_bytes() == (folder / out.name).read_bytes()
    assert out.with_suffix(".csv").read_bytes() == (folder / "ranked.csv").read_bytes()


def _stop_email_opens(world: Path, since: pd.Timestamp) -> None:
    events = pd.read_parquet(world / "events.parquet")
    late = (events["event_type"] == "email_open") & (events["timestamp"] >= since)
    events[~late].to_parquet(world / "events.parquet", index=False)


def _rescale_intent(world: Path, since: pd.Timestamp) -> None:
    intent = pd.read_parquet(world / "intent.parquet")
    late = pd.to_datetime(intent["date"], utc=True) >= since
    intent.loc[late, "score"] = intent.loc[late, "score"] / 2  # the provider's new 0-50 scale
    intent.to_parquet(world / "intent.parquet", index=False)


@pytest.mark.parametrize(
    ("shift", "feature"),
    [(_stop_email_opens, "events_email_open_90d"), (_rescale_intent, "intent_max_score_90d")],
    ids=["an-event-type-stops-arriving", "intent-rescaled"],
)
def test_a_real_shift_is_flagged_with_the_feature_named(
    trained: tuple[Path, TrainResult],
    world_dir: Path,
    ranked: tuple[Path, pd.DataFrame],
    tmp_path: Path,
    shift: Callable[[Path, pd.Timestamp], None],
    feature: str,
) -> None:
    # given the session world, changed over its last 120 days
    world = tmp_path / "world"
    shutil.copytree(world_dir, world)
    shift(world, ranked[1]["as_of"].iloc[0] - pd.Timedelta(days=120))
    # when it is scored with the model trained before the change
    store, result = trained
    client_of(store)
    out = tmp_path / "ranked.parquet"
    batch = score_batch(load_model(result.model_uri), world, out, DataSettings(), FeatureSettings())
    # then the drift warnings name the feature that moved, and are worded as drift
    assert any(w.startswith(f"drift {feature}: PSI") for w in batch.warnings), batch.warnings
    assert [f"drift {w}" for w in _drift(out)["warnings"]] == batch.warnings


def test_psi_is_zero_for_the_same_population_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    train = pd.DataFrame(
        {"x": rng.normal(0, 1, 5000), "c": pd.Categorical(rng.choice(["a", "b"], 5000))}
    )
    reference = reference_bins(train, ["x", "c"])
    same = drift_report(train, reference)
    assert same["x"] < 0.01 and same["c"] < 0.01
    shifted = drift_report(train.assign(x=train["x"] + 2), reference)
    assert shifted["x"] > 0.2
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0


def test_cli_score_needs_a_champion(tmp_path: Path, world_dir: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "inmarket.cli",
            "score",
            str(world_dir),
            "--store",
            str(tmp_path / "empty"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "cannot load models:/inmarket@champion" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_account_is_lost_when_created_after_the_snapshot(
    trained: tuple[Path, TrainResult], world_dir: Path, tmp_path: Path
) -> None:
    # given the session world with two accounts created after the newest snapshot: on the
    # extract day, and (a clock ahead) half a year after the extract
    world = tmp_path / "world"
    shutil.copytree(world_dir, world)
    accounts = pd.read_parquet(world / "accounts.parquet")
    late = accounts["account_id"].iloc[[5, 6]].tolist()
    accounts.loc[accounts["account_id"] == late[0], "created_at"] = pd.Timestamp(
        "2026-07-01T08:00", tz="UTC"
    )
    accounts.loc[accounts["account_id"] == late[1], "created_at"] = pd.Timestamp(
        "2027-01-01", tz="UTC"
    )
    accounts.to_parquet(world / "accounts.parquet", index=False)
    # when it is validated and scored
    report = load_dataset(world, DataSettings()).report.tables["accounts"]
    store, result = trained
    client_of(store)
    out = tmp_path / "ranked.parquet"
    score_batch(load_model(result.model_uri), world, out, DataSettings(), FeatureSettings())
    table = pd.read_parquet(out)
    # then every account is in the list once; the two are listed as new, unscored, after the
    # others, and the clock ahead is counted as a warning
    assert sorted(table["account_id"]) == sorted(accounts["account_id"])
    new = table[table["account_id"].isin(late)]
    assert (new["status"] == "new").all() and (new["stage"] == "new").all()
    assert new["rank"].isna().all() and new["score"].isna().all()
    assert report.warnings == {"created_at_after_extract_set_to_extract": 2}


def test_every_input_account_is_ranked_or_counted_with_its_reason(
    trained: tuple[Path, TrainResult], dirty_world_dir: Path, tmp_path: Path
) -> None:
    """Rows in = ranked + reported, on the dirty world (duplicates, blank ids, bad dates)."""
    # given the dirty world's accounts file
    rows_in = len(pd.read_parquet(dirty_world_dir / "accounts.parquet"))
    # when it is validated and scored
    report = load_dataset(dirty_world_dir, DataSettings()).report.tables["accounts"]
    store, result = trained
    client_of(store)
    out = tmp_path / "ranked.parquet"
    score_batch(
        load_model(result.model_uri), dirty_world_dir, out, DataSettings(), FeatureSettings()
    )
    listed = pd.read_parquet(out)
    # then each input row is listed once (ranked, or apart with its status) or counted as a
    # reject with its reason; none is lost
    assert listed["account_id"].is_unique
    assert report.rejects, "the dirty world should have rejected account rows"
    assert len(listed) + sum(report.rejects.values()) == rows_in


@pytest.fixture(scope="module")
def old_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small world whose history ended on 2024-02-05, long before the clock of any test run."""
    out = tmp_path_factory.mktemp("old")
    generate_world(WorldSpec(accounts=60, seed=5, start=datetime(2023, 1, 1), days=400), out)
    return out


@pytest.fixture(scope="module")
def score_cli(
    trained: tuple[Path, TrainResult], tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``inmarket score`` with the session model, on a copy of its store."""
    store = copy_store(trained[0], tmp_path_factory.mktemp("score-store") / "mlruns")

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        model = ("--store", store, "--model", trained[1].model_uri)
        return subprocess.run(
            [sys.executable, "-m", "inmarket.cli", "score", *map(str, (*args, *model))],
            capture_output=True,
            text=True,
            timeout=300,
        )

    return run


def test_score_refuses_an_export_time_taken_from_the_clock_long_after_the_data(
    old_world: Path, score_cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    """Issue 14: score took the clock for an old export and ranked every account 'cold'."""
    # given the old world without its _extract.json
    world = tmp_path / "world"
    shutil.copytree(old_world, world)
    (world / "_extract.json").unlink()
    # when it is scored as is, and with the export time given
    refused = score_cli(world, "--out", tmp_path / "clock.parquet")
    given = score_cli(world, "--out", tmp_path / "given.parquet", "--extracted-at", "2024-02-05")
    # then score refuses in one line naming the events' end, the export time's source and
    # the fix, and writes nothing; given the time, it ranks every account, with no word of staleness
    assert refused.returncode == 2, refused.stderr
    error = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "Traceback" not in refused.stderr
    assert re.search(r"events end 2024-02-04, \d+ days before the export time", error[0])
    assert "taken from the clock" in error[0]
    assert "--extracted-at" in error[0] and "_extract.json" in error[0]
    assert not list(tmp_path.glob("clock*"))
    assert given.returncode == 0, given.stderr
    assert "events end" not in given.stderr
    ranked = pd.read_parquet(tmp_path / "given.parquet")
    assert len(ranked) == 60 and str(ranked["as_of"].iloc[0]).startswith("2024-02-05")


def test_score_warns_once_when_the_events_end_long_before_a_given_export_time(
    old_world: Path, score_cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    # given the old world whose event feed stopped two months before its export
    world = tmp_path / "world"
    shutil.copytree(old_world, world)
    events = pd.read_parquet(world / "events.parquet")
    events[events["timestamp"] < pd.Timestamp("2023-12-01", tz="UTC")].to_parquet(
        world / "events.parquet", index=False
    )
    # when it is scored with the export time given
    scored = score_cli(world, "--out", tmp_path / "ranked.parquet", "--extracted-at", "2024-02-05")
    # then it is scored, and told once, as a warning of its own (not drift), what to check
    assert scored.returncode == 0, scored.stderr
    warned = [line for line in scored.stderr.splitlines() if "events end" in line]
    assert len(warned) == 1, scored.stderr
    assert re.match(r"warning: events end 2023-11-30, \d+ days before the export time", warned[0])
    assert "whether the event feed stopped" in warned[0]
    assert len(pd.read_parquet(tmp_path / "ranked.parquet")) == 60
