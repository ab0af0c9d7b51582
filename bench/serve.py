"""Serving benchmark: our BentoML service against `mlflow models serve`, same model, same run.

    python -m bench.serve --store mlruns --features data/demo/features.parquet

Starts both servers on 127.0.0.1 on the registered champion, then sends single-account
scoring requests from 16 concurrent clients to each for ``--seconds``, and 1,000-account
batches from one client to ours. The load comes from ``wrk`` (C): a Python client on the same
two cores costs more CPU per request than our server does and would measure itself. Reports
p50/p90/p99 latency and requests per second. Then a fixed-rate soak with a promotion half-way
(Python, asyncio: 50 requests/s is well within its reach). Results go to
``bench/results/serve.json`` and stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from bench.measure import record, stamp

CATEGORIES = ("industry", "region", "employee_band")
WRK_SCRIPT = Path(__file__).with_name("wrk_post.lua")


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _repromote(store: Path) -> None:
    """Promote another registered version (the one before the champion) mid-run."""
    from training.promotion import promote
    from training.registry import CHALLENGER, CHAMPION, connect
    from training.settings import TrackingSettings

    client = connect(TrackingSettings(store=store))
    champion = int(client.get_model_version_by_alias("inmarket", CHAMPION).version)
    other = champion - 1 if champion > 1 else champion + 1
    client.set_registered_model_alias("inmarket", CHALLENGER, str(other))
    promote(client, "inmarket", force=True)


def _start(
    command: list[str], env: dict[str, str], ready: str, log: Path
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=log.open("w"), stderr=subprocess.STDOUT
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


def _wrk(url: str, bodies: list[Any], connections: int, seconds: float) -> dict[str, float]:
    """A closed-loop load from ``wrk`` (C, one thread): ``connections`` clients, each sending
    the next body as soon as its previous answer arrived, for ``seconds``."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("bench.serve needs wrk: `apt-get install -y wrk` (make bench does it)")
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as handle:
        handle.writelines(json.dumps(body) + "\n" for body in bodies)
    try:
        done = subprocess.run(
            [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(WRK_SCRIPT), url],
            env={**os.environ, "WRK_BODIES": handle.name},
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


def _tree_rss(process: subprocess.Popen[bytes]) -> float:
    import psutil

    try:
        root = psutil.Process(process.pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 1e6
    except psutil.Error:
        return float("nan")


async def _soak(
    url: str,
    bodies: list[Any],
    rate: float,
    seconds: float,
    process: subprocess.Popen[bytes],
    on_half: Any,
) -> dict[str, Any]:
    """A fixed request rate for ``seconds``; the server's memory every second; ``on_half``
    called half-way (a promotion)."""
    statuses: dict[int, int] = {}
    versions: set[str] = set()
    memory: list[float] = []
    began = time.perf_counter()
    tasks = []

    async def one(http: httpx.AsyncClient, body: Any) -> None:
        try:
            response = await http.post(url, json=body)
        except httpx.HTTPError:
            statuses[-1] = statuses.get(-1, 0) + 1
            return
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if response.status_code == 200:
            versions.add(response.json()["model"]["version"])

    async with httpx.AsyncClient(timeout=30) as http:
        sent, promoted, next_sample = 0, False, 0.0
        while (elapsed := time.perf_counter() - began) < seconds:
            while sent < elapsed * rate:
                tasks.append(asyncio.create_task(one(http, bodies[sent % len(bodies)])))
                sent += 1
            if elapsed >= next_sample:
                memory.append(round(_tree_rss(process), 1))
                next_sample += 1.0
            if not promoted and elapsed >= seconds / 2:
                await asyncio.to_thread(on_half)
                promoted = True
            await asyncio.sleep(0.005)
        await asyncio.gather(*tasks)
    return {
        "rate_per_second": rate,
        "seconds": seconds,
        "sent": sent,
        "statuses": statuses,
        "errors": sum(n for code, n in statuses.items() if code != 200),
        "model_versions_seen": sorted(versions),
        "rss_mb_first": memory[0],
        "rss_mb_last": memory[-1],
        "rss_mb_max": max(memory),
        "rss_mb_second_half_growth": round(memory[-1] - memory[len(memory) // 2], 1),
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, default=Path("mlruns"))
    parser.add_argument("--features", type=Path, default=Path("data/demo/features.parquet"))
    parser.add_argument("--distinct", type=int, default=4000, help="distinct request bodies")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20, help="length of each load")
    parser.add_argument(
        "--soak-rate",
        type=float,
        default=50,
        help="requests per second of the fixed-rate soak (0: skip it)",
    )
    args = parser.parse_args(argv)
    features = pd.read_parquet(args.features)
    latest = features[features["as_of"] == features["as_of"].max()]
    rows = latest.drop(columns=["as_of", "in_pipeline"]).astype({c: "str" for c in CATEGORIES})
    records = json.loads(rows.to_json(orient="records"))
    mlflow_rows = [{k: v for k, v in r.items() if k != "account_id"} for r in records]
    n = args.distinct
    ours_body = [{"records": [records[i % len(records)]]} for i in range(n)]
    mlflow_body = [{"dataframe_records": [mlflow_rows[i % len(rows)]]} for i in range(n)]
    batch_body = [{"records": records[i * 1000 % len(records) :][:1000]} for i in range(20)]
    bin_dir = Path(sys.executable).parent
    store = args.store.resolve()
    uri = f"sqlite:///{store}/mlflow.db"
    logs = Path("bench/results")
    logs.mkdir(parents=True, exist_ok=True)
    ours_port, mlflow_port = _port(), _port()
    ours = _start(
        [
            str(bin_dir / "bentoml"),
            "serve",
            "serving.service:InMarketService",
            "--host",
            "127.0.0.1",
            "--port",
            str(ours_port),
        ],
        {"INMARKET_STORE": str(store), "INMARKET_RELOAD_SECONDS": "2"},
        f"http://127.0.0.1:{ours_port}/readyz",
        logs / "serve-bentoml.log",
    )
    reference = _start(
        [
            str(bin_dir / "mlflow"),
            "models",
            "serve",
            "-m",
            "models:/inmarket@champion",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
        ],
        {
            "MLFLOW_TRACKING_URI": uri,
            "MLFLOW_REGISTRY_URI": uri,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        },
        f"http://127.0.0.1:{mlflow_port}/ping",
        logs / "serve-mlflow.log",
    )
    try:
        ours_url = f"http://127.0.0.1:{ours_port}/v1/score"
        mlflow_url = f"http://127.0.0.1:{mlflow_port}/invocations"
        _wrk(ours_url, ours_body, 4, 3)  # warm-up
        _wrk(mlflow_url, mlflow_body, 4, 3)
        single = _wrk(ours_url, ours_body, args.clients, args.seconds)
        baseline = _wrk(mlflow_url, mlflow_body, args.clients, args.seconds)
        batch = _wrk(ours_url, batch_body, 1, args.seconds)
        soak = None
        if args.soak_rate > 0:
            soak = asyncio.run(
                _soak(
                    f"http://127.0.0.1:{ours_port}/v1/score",
                    ours_body,
                    args.soak_rate,
                    60,
                    ours,
                    lambda: _repromote(store),
                )
            )
    finally:
        for process in (ours, reference):
            process.terminate()
            process.wait(timeout=30)
    result = {
        **stamp(),
        "clients": args.clients,
        "single_account_bentoml": single,
        "single_account_mlflow_models_serve": baseline,
        "throughput_ratio": round(
            single["requests_per_second"] / baseline["requests_per_second"], 2
        ),
        "batch_1000_accounts_bentoml": batch,
        "soak_60s_with_promotion": soak,
    }
    return record("serve", result)


if __name__ == "__main__":
    main()
