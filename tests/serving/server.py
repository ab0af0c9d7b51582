"""A real server process on 127.0.0.1 for the integration tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import httpx


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A server subprocess on a free port (``bentoml serve`` unless a command is given), its
    output in ``cwd/serve-<port>.log``.

    Used as a context manager: entering waits until the server answers ``/livez`` (any answer
    below 500 counts) and leaving stops it::

        with Server(env, tmp_path) as server:
            assert server.wait("/readyz").status_code == 200
    """

    def __init__(
        self, env: dict[str, str], cwd: Path, command: Callable[[int], list[str]] | None = None
    ) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"serve-{self.port}.log"
        bentoml = str(Path(sys.executable).with_name("bentoml"))
        args = (
            command(self.port)
            if command
            else [
                bentoml,
                "serve",
                "serving.service:InMarketService",
                # no --host: the service listens on loopback by default
                "--port",
                str(self.port),
            ]
        )
        self._output = self.log.open("w")
        self.process = subprocess.Popen(
            args,
            cwd=Path(__file__).resolve().parents[2],
            # a BentoML home of its own: every `bentoml serve` empties its home's Prometheus
            # folder, which would wipe the metrics of the other servers running meanwhile
            env={**os.environ, "BENTOML_HOME": str(cwd / f"bentoml-{self.port}"), **env},
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )

    def __enter__(self) -> Server:
        try:
            self.wait()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def wait(self, path: str = "/livez", timeout: float = 120) -> httpx.Response:
        """The first answer to GET ``path``; for ``/livez``, the first one below 500."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = httpx.get(self.url + path, timeout=5)
                if response.status_code < 500 or path != "/livez":
                    return response
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"server did not come up: {self.log.read_text()[-3000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._output.close()
