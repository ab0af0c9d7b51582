"""The configuration file (``inmarket.config``) as the README promises it, through the real
command: TOML or YAML, and any key or section the settings do not define is an error."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.commands import run_cli


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_a_yaml_file_configures_every_section(suffix: str, tmp_path: Path) -> None:
    # given a YAML file setting the generator and the feature windows
    config = tmp_path / f"inmarket{suffix}"
    config.write_text("generate:\n  accounts: 12\n  seed: 3\nfeatures:\n  windows: [14, 60]\n")
    # when a world is generated and the feature catalogue listed with it
    made = run_cli("--config", config, "generate", "--out", tmp_path / "w")
    listed = run_cli("--config", config, "features", "--list")
    # then both follow the file
    assert made.returncode == 0, made.stderr
    assert len(pd.read_parquet(tmp_path / "w" / "accounts.parquet")) == 12
    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines()}
    assert {"events_14d", "events_60d", "events_90d"} <= names and "events_30d" not in names


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[data]\nmax_bad_shares = 0.5\n", "data.max_bad_shares"),
        ("[generate]\naccount = 12\n", "generate.account"),
        ("[features]\nwindow = [7]\n", "features.window"),
        ("[train]\nseeds = 3\n", "train.seeds"),
        ("[tracking]\nstores = 'mlruns'\n", "tracking.stores"),
        ("[promotion]\nforce = true\n", "promotion.force"),
        ("[scoring]\nlimit = 10\n", "scoring"),
        ("accounts = 12\n", "accounts"),
    ],
    ids=["data", "generate", "features", "train", "tracking", "promotion", "section", "top-level"],
)
def test_an_unknown_key_or_section_is_an_error_naming_it(
    text: str, named: str, tmp_path: Path
) -> None:
    # given a TOML file with a key or a section the settings do not define (a typo, say)
    config = tmp_path / "inmarket.toml"
    config.write_text(text)
    # when any command runs with it
    result = run_cli("--config", config, "generate", "--out", tmp_path / "w")
    # then it stops before doing anything, in one line naming the key and the file
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: invalid configuration in {config}: {named}: Extra inputs are not permitted"
    ]
    assert not (tmp_path / "w").exists()
