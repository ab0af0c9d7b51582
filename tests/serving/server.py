"""A real server process on 127.0.0.1 for the integration tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A server subprocess on a free port (``bentoml serve`` unless a command is given);
    stopped at the end."""

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
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ]
        )
        self.process = subprocess.Popen(
            args,
            cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, **env},
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )

    def wait(self, path: str = "/livez", timeout: float = 120) -> httpx.Response:
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
