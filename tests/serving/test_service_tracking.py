"""The service on a team's tracking server (``INMARKET_MODEL`` + ``MLFLOW_TRACKING_URI``): it
is not ready until the model is loaded, serves what the server's alias names, and keeps serving
it, ready and saying so, when the server stops answering."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.serving.server import Server, feature_records
from tests.serving.server import _free_port as free_port
from training.job import TrainResult
from training.registry import CHAMPION, tracking_uri

pytestmark = pytest.mark.slow

# the service as a team runs it: its model on the server only, no store of its own
_NO_STORE = {"INMARKET_STORE": "", "INMARKET_TRACKING_URI": "", "INMARKET_RELOAD_SECONDS": "1"}


class Relay:
    """A TCP relay on 127.0.0.1 to a server: the server as the service reaches it, which the
    test cuts (new connections refused, open ones closed) and restores, on the same port."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (str(parts.hostname), int(parts.port or 80))
        self.port = 0
        self._open: list[socket.socket] = []
        self.restore()
        self.url = f"http://127.0.0.1:{self.port}"

    def restore(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def cut(self) -> None:
        # shut first: a socket closed while a thread waits in accept() would go on listening
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in self._open:
            sock.close()
        self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # cut
                return
            upstream = socket.create_connection(self.target)
            self._open += [client, upstream]
            for one, other in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(one, other), daemon=True).start()


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Bytes from ``source`` to ``target`` until either closes; then both are shut."""
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    for sock in (source, target):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _register_champion(server: str, trained: tuple[Path, TrainResult], folder: Path) -> str:
    """The session's model registered on the tracking server under a name of its own, as its
    champion; its models:/ URI."""
    store = tracking_uri(trained[0])
    local = mlflow.artifacts.download_artifacts(
        trained[1].model_uri, dst_path=str(folder), tracking_uri=store, registry_uri=store
    )
    client = MlflowClient(server, server)
    name = f"inmarket-served-{uuid.uuid4().hex[:8]}"
    run = client.create_run(client.create_experiment(name))
    client.log_artifacts(run.info.run_id, local, "model")
    client.set_terminated(run.info.run_id)
    client.create_registered_model(name)
    version = client.create_model_version(name, f"{run.info.artifact_uri}/model", run.info.run_id)
    client.set_registered_model_alias(name, CHAMPION, version.version)
    return f"models:/{name}@{CHAMPION}"


def _readiness_once(server: Server, said: Callable[[str], bool]) -> httpx.Response:
    """The first /readyz answer whose text ``said`` accepts, or the last after two minutes (a
    bound on a hang, not a measure: the service checks the server every second)."""
    deadline = time.monotonic() + 120
    while not said((answer := httpx.get(server.url + "/readyz", timeout=30)).text):
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return answer


def test_a_tracking_server_that_does_not_answer_leaves_the_service_unready(
    tmp_path: Path,
) -> None:
    # given a service told to serve a model of a tracking server that is not there
    nowhere = f"http://127.0.0.1:{free_port()}"
    env = {**_NO_STORE, "INMARKET_MODEL": "models:/inmarket@champion"}
    with Server({**env, "MLFLOW_TRACKING_URI": nowhere}, tmp_path) as server:
        # when it is asked whether it is ready, and what it serves
        ready = server.wait("/readyz")
        card = httpx.get(server.url + "/v1/model", timeout=30)
    # then it is not, and says the tracking server, by its URI, is unreachable
    assert ready.status_code == 503 and card.status_code == 503
    said = ready.json()["error"]["message"]
    assert said.startswith(f"no model loaded: the tracking server {nowhere} is unreachable"), said


def test_the_model_of_a_tracking_server_is_served_and_kept_when_the_server_goes(
    tracking_server: Any,
    trained: tuple[Path, TrainResult],
    served: tuple[Server, Path],
    world_features: Path,
    tmp_path: Path,
) -> None:
    # given the session's model as the champion of a model on the team's tracking server, and a
    # service that reaches the server (through a relay the test can cut) with only its URI
    uri = _register_champion(tracking_server.uri, trained, tmp_path / "model")
    relay = Relay(tracking_server.uri)
    records = feature_records(world_features, 20)
    env = {**_NO_STORE, "INMARKET_MODEL": uri, "MLFLOW_TRACKING_URI": relay.url}
    with Server(env, tmp_path) as server:
        # when it has loaded the model
        ready = server.wait("/readyz")
        card = httpx.get(server.url + "/v1/model", timeout=30).json()
        scored = httpx.post(server.url + "/v1/score", json={"records": records}, timeout=60)
        # then it is ready, names the server and the URI, and scores as `inmarket serve`
        assert ready.status_code == 200 and "tracking_server" in ready.text, ready.text
        assert card["source"] == {
            "kind": "tracking_server",
            "tracking_uri": relay.url,
            "model_uri": uri,
            "alias": CHAMPION,
        }
        same = httpx.post(served[0].url + "/v1/score", json={"records": records}, timeout=60)
        np.testing.assert_allclose(
            [r["probability"] for r in scored.json()["results"]],
            [r["probability"] for r in same.json()["results"]],
            rtol=0,
            atol=1e-9,
        )
        # when the server stops answering
        relay.cut()
        cut = _readiness_once(server, lambda text: "unreachable" in text)
        after = httpx.post(server.url + "/v1/score", json={"records": records}, timeout=60)
        # then the service is still ready, says the server is unreachable, and still scores
        assert cut.status_code == 200, cut.text
        assert f"the tracking server {relay.url} is unreachable" in cut.text, cut.text
        assert after.status_code == 200
        assert after.json()["results"] == scored.json()["results"]
        # and when the server is back, readiness says nothing more
        relay.restore()
        back = _readiness_once(server, lambda text: "unreachable" not in text)
        assert back.status_code == 200 and "unreachable" not in back.text, back.text
    relay.cut()
