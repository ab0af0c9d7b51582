"""The ``inmarket`` commands end to end as a user runs them: real processes, the tables they
write, and a configuration file under the flags."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.commands import run_cli


def test_generate_then_validate(tmp_path: Path) -> None:
    out = tmp_path / "w"
    gen = run_cli("generate", "--accounts", "40", "--seed", "5", "--out", out)
    assert gen.returncode == 0, gen.stderr
    assert "40 accounts" in gen.stdout
    val = run_cli("validate", out, "--json", "--rejects-out", tmp_path / "rejects.parquet")
    assert val.returncode == 0, val.stderr
    report = json.loads(val.stdout)
    assert report["reconciles"] is True
    assert report["tables"]["accounts"]["rows_used"] == 40
    assert len(pd.read_parquet(tmp_path / "rejects.parquet")) == 0


def test_config_file_then_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "inmarket.toml"
    cfg.write_text("[generate]\naccounts = 12\nseed = 3\ndays = 200\n")
    assert run_cli("--config", cfg, "generate", "--out", tmp_path / "a").returncode == 0
    assert len(pd.read_parquet(tmp_path / "a" / "accounts.parquet")) == 12
    assert (
        run_cli("--config", cfg, "generate", "--accounts", "5", "--out", tmp_path / "b").returncode
        == 0
    )
    assert len(pd.read_parquet(tmp_path / "b" / "accounts.parquet")) == 5


def test_features_list_prints_the_catalogue() -> None:
    from features.catalogue import catalogue

    result = run_cli("features", "--list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == [f.name for f in catalogue()]


def test_features_command_writes_table_report_and_rejects(tmp_path: Path) -> None:
    world = tmp_path / "w"
    assert run_cli("generate", "--accounts", "150", "--dirty", "--out", world).returncode == 0
    out = tmp_path / "f.parquet"
    result = run_cli("features", world, "--out", out, "--snapshots", "3", "--every-days", "7")
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(out)
    assert table["as_of"].nunique() == 3
    assert (table["as_of"].diff().dropna().abs() <= pd.Timedelta(days=7)).any()
    report = json.loads((tmp_path / "f.report.json").read_text())
    assert report["reconciles"] and report["tables"]["events"]["rows_rejected"] > 0
    assert len(pd.read_parquet(tmp_path / "f.rejects.parquet")) == sum(
        t["rows_rejected"] for t in report["tables"].values()
    )
