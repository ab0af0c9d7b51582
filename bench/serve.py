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
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from bench.load import free_port, memory_mb, start, stop, wrk
from bench.measure import record, stamp

CATEGORIES = ("industry", "region", "employee_band")


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
                memory.append(memory_mb(process)["tree"])
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
    ours_load = [("POST", "/v1/score", json.dumps(body)) for body in ours_body]
    mlflow_load = [("POST", "/invocations", json.dumps(body)) for body in mlflow_body]
    batch_load = [("POST", "/v1/score", json.dumps(body)) for body in batch_body]
    bin_dir = Path(sys.executable).parent
    store = args.store.resolve()
    uri = f"sqlite:///{store}/mlflow.db"
    logs = Path("bench/results")
    logs.mkdir(parents=True, exist_ok=True)
    ours_port, mlflow_port = free_port(), free_port()
    ours = start(
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
    reference = start(
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
        ours_url = f"http://127.0.0.1:{ours_port}"
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        wrk(ours_url, ours_load, 4, 3)  # warm-up
        wrk(mlflow_url, mlflow_load, 4, 3)
        single = wrk(ours_url, ours_load, args.clients, args.seconds)
        baseline = wrk(mlflow_url, mlflow_load, args.clients, args.seconds)
        batch = wrk(ours_url, batch_load, 1, args.seconds)
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
            stop(process)
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
