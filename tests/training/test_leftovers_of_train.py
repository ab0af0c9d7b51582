"""What a killed `inmarket train` leaves in the temporary folder: MLflow's own temporary files,
the model it saved before logging it among them, are gone once the next training has run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# `inmarket train`, killed with SIGKILL once MLflow has logged the model and is registering it:
# MLflow's temporary folder holding the saved model is still there
_KILLED_WHILE_REGISTERING = """
import os, signal, sys
from unittest import mock
from inmarket.cli import main

sys.argv = ["inmarket", *sys.argv[1:]]
with mock.patch(
    "mlflow.tracking._model_registry.fluent._register_model",
    side_effect=lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL),
):
    main()
"""


def test_the_next_train_removes_what_a_killed_train_left_in_the_temporary_folder(
    world_dir: Path, world_features: Path, tmp_path: Path
) -> None:
    # given a training killed after MLflow logged its model, with its own temporary folder
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {**os.environ, "TMPDIR": str(temporary)}
    config = tmp_path / "inmarket.toml"
    config.write_text("[train]\nablations = false\nbootstrap_rounds = 100\n", encoding="utf-8")
    args = ["--config", config, "train", world_dir, "--features", world_features]
    args += ["--store", tmp_path / "mlruns"]
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_WHILE_REGISTERING, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    left = sorted(temporary.rglob("MLmodel"))
    assert left, f"no saved model left by the killed run: {sorted(temporary.rglob('*'))}"
    # when `inmarket train` runs again with the same temporary folder
    again = subprocess.run(
        [sys.executable, "-m", "inmarket.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    # then it succeeds and the temporary folder is empty: the killed run's files are gone
    assert again.returncode == 0, again.stderr[-2000:]
    assert sorted(p.name for p in temporary.iterdir()) == []
