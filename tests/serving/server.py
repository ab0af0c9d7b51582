"""A real server process on 127.0.0.1 for the integration tests, and what a client sends it:
feature records, raw bytes; and the memory of its processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import httpx
import pandas as pd
import psutil

CATEGORIES = ("industry", "region", "employee_band")


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A server subprocess on a free port (``bentoml serve`` unless a command is given), its
    output in ``cwd/serve-<port>.log``, run in the checkout unless ``workdir`` says where.

    Used as a context manager: entering waits until the server answers ``/livez`` (any answer
    below 500 counts) and leaving stops it::

        with Server(env, tmp_path) as server:
            assert server.wait("/readyz").status_code == 200
    """

    def __init__(
        self,
        env: dict[str, str],
        cwd: Path,
        command: Callable[[int], list[str]] | None = None,
        workdir: Path | None = None,
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
            cwd=workdir or Path(__file__).resolve().parents[2],
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

    def log_after(self, offset: int) -> str:
        """What the server logged after its log held ``offset`` bytes (``log.stat().st_size``
        taken before a request): the server is shared, its earlier lines are other tests'."""
        with self.log.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", errors="replace")

    def log_when(self, offset: int, lines: set[str], timeout: float = 30) -> str:
        """``log_after(offset)`` once it holds each of ``lines`` (a server logs a request's
        lines around its answer, not before it), or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        log = self.log_after(offset)
        while not all(line in log for line in lines) and time.monotonic() < deadline:
            time.sleep(0.1)
            log = self.log_after(offset)
        return log

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._output.close()


def feature_records(world_features: Path | pd.DataFrame, n: int) -> list[dict[str, object]]:
    """The latest snapshot's features of ``n`` accounts, as a client would send them."""
    features = (
        world_features
        if isinstance(world_features, pd.DataFrame)
        else pd.read_parquet(world_features)
    )
    latest = features[features["as_of"] == features["as_of"].max()].head(n)
    latest = latest.drop(columns=["as_of", "in_pipeline"]).astype({c: "str" for c in CATEGORIES})
    records: list[dict[str, object]] = json.loads(
        latest.to_json(orient="records", double_precision=15)
    )
    return records


def send_raw(server: Server, data: bytes, wait: float) -> bytes:
    """What the server sends back within ``wait`` seconds to ``data`` on a fresh connection
    (b"" if it closed without a word)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as sock:
        got = b""
        try:
            sock.sendall(data)
        except ConnectionResetError:
            return b"reset"
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                return got or b"reset"
            if not chunk:
                return got or b"closed"
            got += chunk
        return got


def tree_rss_mb(process: subprocess.Popen[bytes]) -> float:
    """The resident memory of a process and all its children, in MB."""
    root = psutil.Process(process.pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 1e6
