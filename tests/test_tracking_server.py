"""A team's MLflow tracking server (issue 25): every command through ``--tracking-uri`` against a
real ``mlflow server`` on PostgreSQL with proxied artifacts, a second client that has only the
URI, and the faults: a server killed during a train, a server answering 5xx, each one line and
exit 4 with no alias moved."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import httpx
import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from features.errors import ConfigError
from tests.commands import run_cli
from tests.serving.server import Server, feature_records
from tests.stores import QUICK, client_of, experiment_id
from tests.tracking_server import TrackingServer, free_port
from training.job import TrainResult
from training.registry import CHALLENGER, CHAMPION, connect, load_model
from training.settings import TrackingSettings
from training.tracking import make_challenger, read_test_set, register_model

pytestmark = pytest.mark.slow

TRAIN_QUICKLY = "[train]\n" + "".join(f"{key} = {str(v).lower()}\n" for key, v in QUICK.items())

# a client that knows nothing but the server's URI (MLFLOW_TRACKING_URI): what it sees of a
# registered model, as JSON
_SECOND_CLIENT = """
import json, os, sys
import mlflow
from mlflow import MlflowClient

name, folder = sys.argv[1:]
client = MlflowClient()
experiment = client.get_experiment_by_name(name)
runs = client.search_runs([experiment.experiment_id])
versions = client.search_model_versions(f"name = '{name}'")
files = mlflow.artifacts.download_artifacts(f"models:/{name}@champion", dst_path=folder)
print(json.dumps({
    "experiment_artifacts": experiment.artifact_location,
    "runs": {r.info.run_id: r.info.status for r in runs},
    "run_artifacts": [r.info.artifact_uri for r in runs],
    "versions": {str(v.version): v.run_id for v in versions},
    "sources": [v.source for v in versions],
    "aliases": {a: str(v) for a, v in client.get_registered_model(name).aliases.items()},
    "champion_files": sorted(os.listdir(files)),
}))
"""


def _second_client(uri: str, name: str, folder: Path) -> dict[str, Any]:
    """What another process, in another folder and with only the tracking URI, sees."""
    folder.mkdir()
    seen = subprocess.run(
        [sys.executable, "-c", _SECOND_CLIENT, name, str(folder / "champion")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=folder,
        env={"PATH": os.environ["PATH"], "HOME": str(folder), "MLFLOW_TRACKING_URI": uri},
    )
    assert seen.returncode == 0, seen.stderr[-3000:]
    answer: dict[str, Any] = json.loads(seen.stdout.strip().splitlines()[-1])
    return answer


def test_a_team_trains_promotes_scores_and_serves_through_one_tracking_server(
    tracking_server: TrackingServer, world_dir: Path, world_features: Path, tmp_path: Path
) -> None:
    # given the session's tracking server (PostgreSQL, artifacts proxied), a model of this
    # test's own on it, and a store folder that a command would use without a server
    config = tmp_path / "inmarket.toml"
    config.write_text(TRAIN_QUICKLY + '[tracking]\nproject = "through-a-server"\n')
    name = "inmarket-through-a-server"
    local = tmp_path / "mlruns"
    through: list[str | Path] = ["--tracking-uri", tracking_server.uri, "--store", local]
    # when a model is trained and promoted through the server
    data: list[str | Path] = [world_dir, "--features", world_features]
    trained = run_cli("--config", config, "train", *data, *through)
    promoted = run_cli("--config", config, "promote", *through)
    # then each command names the server, not a folder
    assert trained.returncode == 0, trained.stderr[-3000:]
    named = re.search(rf"MLflow run (\w+) in (\S+); model models:/{name}/(\d+) ", trained.stdout)
    assert named is not None and named[2] == tracking_server.uri, trained.stdout[-2000:]
    run_id, version = named[1], named[3]
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert f"{name} v{version} promoted to champion" in promoted.stdout
    # when another process, elsewhere, with only the URI reads the server
    seen = _second_client(tracking_server.uri, name, tmp_path / "elsewhere")
    # then it sees the run, the version and both aliases, and the model's files come through
    # the server: every artifact URI is the server's, none is a local path, and the files are
    # in the server's artifact folder, not in the store folder (never made)
    assert seen["runs"] == {run_id: "FINISHED"}
    assert seen["versions"] == {version: run_id}
    assert seen["aliases"] == {CHAMPION: version, CHALLENGER: version}
    proxied = [seen["experiment_artifacts"], *seen["run_artifacts"]]
    assert all(uri.startswith("mlflow-artifacts:/") for uri in proxied), proxied
    assert not any(source.startswith(("/", "file:")) for source in seen["sources"])
    assert "MLmodel" in seen["champion_files"]
    assert list(tracking_server.artifacts.rglob("MLmodel")) and not local.exists()
    # when the accounts are scored and served with the champion, through the server
    ranked = tmp_path / "ranked.parquet"
    scored = run_cli("--config", config, "score", world_dir, "--out", ranked, *through)
    assert scored.returncode == 0, scored.stderr[-3000:]
    serve = ["--config", config, "serve", "--ranked", ranked, *through]
    with Server(
        {"INMARKET_RELOAD_SECONDS": "0"},
        tmp_path,
        command=lambda port: [
            *(sys.executable, "-m", "inmarket.cli"),
            *map(str, [*serve, "--port", port]),
        ],
    ) as server:
        ready = server.wait("/readyz")
        card = httpx.get(server.url + "/v1/model", timeout=30)
        answer = httpx.post(
            server.url + "/v1/score", json={"records": feature_records(world_features, 5)}
        )
    # then the list and the service use the champion's version
    assert set(pd.read_parquet(ranked, columns=["model_version"])["model_version"]) == {version}
    assert ready.status_code == 200, server.log.read_text()[-3000:]
    assert (card.json()["name"], card.json()["version"]) == (name, version)
    assert answer.status_code == 200 and answer.json()["model"]["version"] == version
    # and the report's model card is read through the server
    report = [*("report", "--ranked", ranked, "--out", tmp_path / "report.html"), *through]
    reported = run_cli("--config", config, *report)
    assert reported.returncode == 0 and "no model card" not in reported.stderr, reported.stderr


def _champion_on(uri: str, trained: tuple[Path, TrainResult]) -> str:
    """The session's model registered on the server at ``uri`` as champion and challenger
    (as after a train and a promote); its version."""
    store, result = trained
    client_of(store)
    model, test = load_model(result.model_uri), read_test_set(result.run_id)
    client = connect(TrackingSettings(uri=uri))
    with mlflow.start_run():
        version = register_model(client, "inmarket", model, test)
    make_challenger(client, "inmarket", version)
    client.set_registered_model_alias("inmarket", CHAMPION, version)
    return version


def _aliases(client: MlflowClient) -> dict[str, str]:
    return {a: str(v) for a, v in client.get_registered_model("inmarket").aliases.items()}


def test_a_server_killed_during_a_train_stops_it_in_one_line_and_moves_no_alias(
    start_tracking_server: Callable[[], TrackingServer],
    trained: tuple[Path, TrainResult],
    world_dir: Path,
    world_features: Path,
    tmp_path: Path,
) -> None:
    # given a tracking server of this test's own whose champion and challenger is version 1
    server = start_tracking_server()
    champion = _champion_on(server.uri, trained)
    client = MlflowClient(server.uri, server.uri)
    before = _aliases(client)
    config = tmp_path / "inmarket.toml"
    config.write_text(TRAIN_QUICKLY + "[tracking]\nrequest_retries = 1\n")
    # when the server is killed once the training's run has logged its first file
    out, err = tmp_path / "train.out", tmp_path / "train.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        train = subprocess.Popen(
            [
                *(sys.executable, "-m", "inmarket.cli", "--config", str(config), "train"),
                *map(str, (world_dir, "--features", world_features, "--tracking-uri", server.uri)),
            ],
            stdout=stdout,
            stderr=stderr,
        )
        deadline = time.monotonic() + 600
        while not list(server.artifacts.rglob("config.json")) and train.poll() is None:
            assert time.monotonic() < deadline, "the training logged nothing in 600 s"
            time.sleep(0.05)
        server.kill()
        train.wait(timeout=600)
    # then the training stops with exit 4 and one line naming the server, no traceback
    said = err.read_text()
    assert train.returncode == 4, said[-3000:]
    assert (
        said.strip()
        .splitlines()[-1]
        .startswith(f"error: tracking server {server.uri} is unreachable")
    ), said[-3000:]
    assert said.count("error:") == 1 and "Traceback" not in said and "Retrying" not in said
    # when the server is back
    server.start()
    # then the aliases are where they were and no version of the cut training is left
    assert _aliases(client) == before == {CHAMPION: champion, CHALLENGER: champion}
    left = client.search_model_versions("name = 'inmarket'")
    assert [str(v.version) for v in left] == [champion]
    # and the cut training's run is there, RUNNING: its end could not be recorded
    cut = client.search_runs([experiment_id(client)], "attributes.status = 'RUNNING'")
    assert len(cut) == 1, [run.info for run in cut]
    # when the next promote runs, then it marks that run FAILED and keeps the champion
    promoted = run_cli("promote", "--tracking-uri", server.uri)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert f"left RUNNING by a process that died: {cut[0].info.run_id}" in promoted.stderr
    assert f"v{champion} not promoted: version {champion} is already the champion" in (
        promoted.stdout
    )
    assert client.get_run(cut[0].info.run_id).info.status == "FAILED"
    assert _aliases(client) == before


class _Failing(BaseHTTPRequestHandler):
    """Answers 500 to every request, and counts them."""

    answered: list[str]

    def _fail(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.answered.append(self.path)
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _fail

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def failing_server() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server that answers 500 to everything: its URI and the paths it was asked."""
    answered: list[str] = []
    handler = type("Failing", (_Failing,), {"answered": answered})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", answered
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "command",
    [
        ["train", "{data}"],
        ["promote"],
        ["evaluate", "--model", "models:/inmarket@champion", "{data}"],
        ["score", "{data}"],
        ["report", "--ranked", "{ranked}"],
    ],
    ids=lambda command: command[0],
)
def test_a_server_answering_5xx_stops_each_command_in_one_line(
    command: list[str], failing_server: tuple[str, list[str]], tmp_path: Path
) -> None:
    # given a tracking server that answers 500 to everything, and one retry allowed
    uri, answered = failing_server
    config = tmp_path / "inmarket.toml"
    config.write_text(f'[tracking]\nuri = "{uri}"\nrequest_retries = 1\n')
    ranked = tmp_path / "ranked.parquet"
    ranked.write_bytes(b"")
    args = [a.format(data=tmp_path, ranked=ranked) for a in command]
    # when the command runs
    result = run_cli("--config", config, *args, "--store", tmp_path / "mlruns")
    # then it stops after the one request and its retry, in one line naming the server, exit 4
    assert result.returncode == 4, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"error: tracking server {uri} is unreachable (it answered 500, retries included): "
        "check that it runs and that the URI is right, then run the command again"
    ]
    assert len(answered) == 2, answered


def test_an_experiment_keeping_its_files_on_one_machine_is_refused(
    tracking_server: TrackingServer, tmp_path: Path
) -> None:
    """Found in review: only a new experiment took the server's proxied store; one created
    before with a local folder had every model written to the client's disk."""
    # given an experiment on the server whose artifact location is a local folder
    name = "inmarket-local-files"
    MlflowClient(tracking_server.uri).create_experiment(name, (tmp_path / "a").as_uri())
    # when a command connects to it
    with pytest.raises(ConfigError) as refused:
        connect(TrackingSettings(uri=tracking_server.uri, project="local-files"))
    # then it is refused, naming the experiment, the folder and what to do
    assert f"experiment '{name}'" in str(refused.value) and "a folder of one machine" in str(
        refused.value
    )
    assert not (tmp_path / "a").exists()


def test_the_tracking_uri_is_the_flag_then_the_file_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given three tracking URIs where no server listens: in the environment, the file, a flag
    env, file, flag = (f"http://127.0.0.1:{free_port()}" for _ in range(3))
    config = tmp_path / "inmarket.toml"
    config.write_text(f'[tracking]\nuri = "{file}"\nrequest_retries = 0\n')
    bare = tmp_path / "bare.toml"
    bare.write_text("[tracking]\nrequest_retries = 0\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env)
    # when promote runs with all three, with the file and the environment, with the environment
    runs = [
        run_cli("--config", config, "promote", "--tracking-uri", flag),
        run_cli("--config", config, "promote"),
        run_cli("--config", bare, "promote"),
    ]
    # then the flag wins, then the file, then the environment: the one line names that server
    named = [re.search(r"tracking server (\S+) is unreachable", r.stderr) for r in runs]
    assert [n[1] if n else r.stderr for n, r in zip(named, runs, strict=True)] == [flag, file, env]
    assert [r.returncode for r in runs] == [4, 4, 4]
