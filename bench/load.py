"""HTTP load for the serving benchmarks: a server started and waited for, ``wrk``'s closed loop
over a list of requests, and the memory of a server's processes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

WRK_SCRIPT = Path(__file__).with_name("wrk_requests.lua")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(
    command: list[str], env: dict[str, str], ready: str, log: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a server and wait until ``ready`` answers 200 (at most 3 minutes)."""
    process = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=cwd
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(ready, timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.5)
    process.kill()
    raise SystemExit(f"{command[0]} did not start: {log.read_text()[-2000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wrk(
    url: str, requests: list[tuple[str, str, str]], connections: int, seconds: float
) -> dict[str, float]:
    """A closed-loop load from ``wrk`` (C, one thread) on the server at ``url``: ``connections``
    clients, each sending the next of ``requests`` (method, path, JSON body or "") as soon as its
    previous answer arrived, for ``seconds``. An answer slower than 10 s counts as a timeout."""
    found = shutil.which("wrk")
    options = [f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(WRK_SCRIPT)]
    if found is None:
        raise SystemExit("the serving benchmarks need wrk: `apt-get install -y wrk`")
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as handle:
        handle.writelines(f"{method}\t{path}\t{body}\n" for method, path, body in requests)
    try:
        done = subprocess.run(
            [found, "-t1", *options, url],
            env={**os.environ, "WRK_REQUESTS": handle.name},
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        )
    finally:
        os.unlink(handle.name)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    result["errors"] = result.pop("status_errors") + result.pop("socket_errors")
    result["requests_per_second"] = round(result["requests"] / result["seconds"], 1)
    return result


def memory_mb(process: subprocess.Popen[bytes]) -> dict[str, float]:
    """RSS of a server's process tree, and of its largest process (the worker), in MB."""
    try:
        root = psutil.Process(process.pid)
        sizes = [p.memory_info().rss for p in [root, *root.children(recursive=True)]]
    except psutil.Error:
        return {"tree": float("nan"), "worker": float("nan")}
    return {"tree": round(sum(sizes) / 1e6, 1), "worker": round(max(sizes) / 1e6, 1)}


def sampled(process: subprocess.Popen[bytes], load: Any) -> tuple[Any, list[dict[str, float]]]:
    """Run ``load()`` while sampling the memory of ``process`` every second."""
    samples: list[dict[str, float]] = []
    running = threading.Event()
    running.set()

    def sample() -> None:
        while running.is_set():
            samples.append(memory_mb(process))
            time.sleep(1.0)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    try:
        result = load()
    finally:
        running.clear()
        watcher.join()
    return result, samples
