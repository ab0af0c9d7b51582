"""The review page's benchmark: the account view and the page's route mix, on the code before
and after issue 31, one worker each, in one run.

    python -m bench.page --accounts 5000 --before 1e23550

Generates (or reuses) the world ``data/bench-<accounts>`` and a store with a champion trained
on it (``--store`` reuses one). Each side gets its own code: ``--before`` is a git commit of
this repository, extracted with ``git archive``; after is this checkout. Each side scores the
world with its own ``inmarket score``, then serves it (``bentoml serve``, one worker), one side
at a time, under a closed loop from ``wrk`` with ``--clients`` connections:

- account views: ``GET /accounts/<id>`` over ``--distinct`` accounts, for ``--view-seconds``;
- the page's route mix, as the page sends it, for ``--seconds``: per visit the summary and
  the model card, a list page, three accounts opened, the summary and list of another filter,
  two more accounts (10 requests: 5 account views, 2 lists, 2 summaries, 1 model card), while
  the server's memory is sampled every second, after a warm-up of the same mix.

Results go to ``bench/results/page.json`` and stdout, with the ratio after / before of account
views per second and the memory growth of the worker over the mix.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import numpy as np
import pandas as pd

from bench.load import free_port, sampled, start, stop, wrk
from bench.measure import INMARKET, RESULTS, ensure_world, record, stamp

REPOSITORY = Path(__file__).resolve().parents[1]
BENTOML = str(Path(sys.executable).parent / "bentoml")
# the filters a visit applies in turn, as the page's query string has them
FILTERS: tuple[dict[str, Any], ...] = (
    {},
    {"stage": ["in-market", "ready"]},
    {"sort": "trend", "order": "desc"},
    {"min_score": 50},
    {"q": "a"},
    {"stage": ["engaged"], "sort": "name"},
)


def checkout(commit: str, folder: Path) -> Path:
    """The code of ``commit`` in ``folder`` (``git archive``: no worktree to clean up)."""
    archive = subprocess.run(
        ["git", "-C", str(REPOSITORY), "archive", "--format=tar", commit],
        capture_output=True,
        check=True,
    ).stdout
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def run_in(code: Path, command: list[str]) -> None:
    """Run an ``inmarket`` command with the code of ``code``."""
    done = subprocess.run(
        command, cwd=code, env=_env(code), capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"{' '.join(command[:4])} failed:\n{done.stderr[-2000:]}")


def _env(code: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(code)}


def page_mix(ranked: pd.DataFrame, visits: int, seed: int = 7) -> list[str]:
    """The paths of ``visits`` page visits (see the module doc), accounts drawn from the list's
    top and from anywhere, owners from the list."""
    rng = np.random.default_rng(seed)
    ids = ranked["account_id"].astype(str).to_numpy()
    owners = ranked["owner"].dropna().astype(str).unique()
    paths: list[str] = []
    for visit in range(visits):
        first = dict(FILTERS[visit % len(FILTERS)])
        then = dict(FILTERS[(visit + 1) % len(FILTERS)])
        if len(owners) and visit % 3 == 0:
            then["owner"] = owners[visit % len(owners)]
        top = ids[: max(50, len(ids) // 10)]
        opened = [*rng.choice(top, 3), *rng.choice(ids, 2)]
        paths += [
            f"/summary?{_query(first)}",
            "/model",
            f"/accounts?{_query({**first, 'offset': 0, 'limit': 50})}",
            *(f"/accounts/{quote(str(a), safe='')}" for a in opened[:3]),
            f"/summary?{_query(then)}",
            f"/accounts?{_query({**then, 'offset': 0, 'limit': 50})}",
            *(f"/accounts/{quote(str(a), safe='')}" for a in opened[3:]),
        ]
    return paths


def _query(filters: dict[str, Any]) -> str:
    return urlencode(filters, doseq=True)


def measure_side(
    code: Path, store: Path, ranked: Path, args: argparse.Namespace, log: Path
) -> dict[str, Any]:
    """One side's service on its scoring: account views alone, then the page's mix."""
    table = pd.read_parquet(ranked)
    rng = np.random.default_rng(11)
    distinct = rng.choice(table["account_id"].astype(str), min(args.distinct, len(table)), False)
    views = [("GET", f"/accounts/{quote(a, safe='')}", "") for a in distinct]
    mix = [("GET", path, "") for path in page_mix(table, visits=200)]
    port = free_port()
    server = start(
        [BENTOML, "serve", "serving.service:InMarketService", "--port", str(port)],
        {
            "PYTHONPATH": str(code),
            "INMARKET_STORE": str(store),
            "INMARKET_RANKED": str(ranked),
            "INMARKET_RELOAD_SECONDS": "0",
        },
        f"http://127.0.0.1:{port}/readyz",
        log,
        cwd=code,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wrk(url, mix, args.clients, args.warmup_seconds)  # the scoring read, caches warm
        viewed = wrk(url, views, args.clients, args.view_seconds)
        page, memory = sampled(server, lambda: wrk(url, mix, args.clients, args.seconds))
    finally:
        stop(server)
    worker = [m["worker"] for m in memory]
    return {
        "account_view": viewed,
        "page_mix": page,
        "worker_mb_first": worker[0],
        "worker_mb_last": worker[-1],
        "worker_mb_max": max(worker),
        "worker_growth_pct": round(100 * (worker[-1] - worker[0]) / worker[0], 1),
        "memory_mb_every_second": memory,
    }


def _prepare(args: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    """The world, and a store whose champion was trained on it (made unless given)."""
    world = args.world or Path(f"data/bench-{args.accounts}")
    ensure_world(world, args.accounts, 7)
    if args.store is not None:
        return world, args.store.resolve()
    store = work / "mlruns"
    run_in(REPOSITORY, [*INMARKET, "train", str(world.resolve()), "--store", str(store)])
    run_in(REPOSITORY, [*INMARKET, "promote", "--force", "--store", str(store)])
    return world, store


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=5000)
    parser.add_argument("--world", type=Path, help="world folder (generated if missing)")
    parser.add_argument("--store", type=Path, help="a store with a champion (default: train one)")
    parser.add_argument("--before", default="1e23550", help="git commit of the code before")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--distinct", type=int, default=2000, help="accounts viewed in turn")
    parser.add_argument("--view-seconds", type=float, default=30)
    parser.add_argument("--seconds", type=float, default=120, help="length of the page's mix")
    parser.add_argument("--warmup-seconds", type=float, default=10)
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    base = Path("data") if Path("data").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="bench-page-", dir=base) as tmp:
        work = Path(tmp).resolve()
        world, store = _prepare(args, work)
        sides = {"before": checkout(args.before, work / "before-code"), "after": REPOSITORY}
        found: dict[str, Any] = {}
        for side, code in sides.items():
            ranked = work / side / "ranked.parquet"
            print(f"bench.page: {side}: scoring, then serving ...", file=sys.stderr, flush=True)
            score = ["score", str(world.resolve()), "--out", str(ranked), "--store", str(store)]
            run_in(code, [*INMARKET, *score])
            found[side] = measure_side(code, store, ranked, args, RESULTS / f"page-{side}.log")
    before, after = found["before"]["account_view"], found["after"]["account_view"]
    result = {
        **stamp(),
        "accounts": args.accounts,
        "before": args.before,
        "clients": args.clients,
        **found,
        "account_views_ratio": round(
            after["requests_per_second"] / max(before["requests_per_second"], 0.1), 1
        ),
    }
    return record("page", result)


if __name__ == "__main__":
    main()
