"""The BentoML service as a real `bentoml serve` process on 127.0.0.1."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.core.result import Err, Ok

from features.settings import DataSettings, FeatureSettings, FeatureSpec
from serving.batch import score_batch
from serving.scoring import WINDOWED_TEXT
from tests.serving.server import Server
from tests.stores import client_of, copy_store, train_job
from tests.worlds import WORLD_SPEC
from training.job import TrainResult
from training.registry import load_model, promote

pytestmark = pytest.mark.slow
CATEGORIES = ("industry", "region", "employee_band")


@pytest.fixture(scope="module")
def served(
    trained: tuple[Path, TrainResult], world_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Path]]:
    """A store with a champion, a batch scoring, and a server on them."""
    root = tmp_path_factory.mktemp("served")
    store = copy_store(trained[0], root / "mlruns")
    client = client_of(store)
    promote(client, "inmarket")
    ranked = root / "ranked.parquet"
    score_batch(
        load_model("models:/inmarket@champion"),
        world_dir,
        ranked,
        DataSettings(),
        FeatureSettings(),
        model_uri=f"models:/inmarket/{trained[1].version}",
    )
    with Server(
        {
            "INMARKET_STORE": str(store),
            "INMARKET_RANKED": str(ranked),
            "INMARKET_RELOAD_SECONDS": "0",
        },
        root,
    ) as server:
        assert server.wait("/readyz").status_code == 200
        yield server, ranked


def _records(world_features: Path | pd.DataFrame, n: int) -> list[dict[str, object]]:
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


def test_score_matches_the_model(
    served: tuple[Server, Path], world_features: Path, trained: tuple[Path, TrainResult]
) -> None:
    # given twenty accounts' latest features and the champion the server loaded
    server, _ = served
    records = _records(world_features, 20)
    # when they are scored over HTTP
    response = httpx.post(server.url + "/score", json={"records": records}, timeout=30)
    # then the answers are the model's own probabilities, in order, with scores 0-100
    assert response.status_code == 200, response.text
    body = response.json()
    assert all(
        s["model_name"] == "inmarket" and s["model_version"] == trained[1].version for s in body
    )
    assert [s["account_id"] for s in body] == [r["account_id"] for r in records]
    frame = pd.DataFrame(records).astype({c: "category" for c in CATEGORIES})
    expected = load_model(trained[1].model_uri).predict(frame)
    got = np.array([s["probability"] for s in body])
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert all(0 <= s["score"] <= 100 for s in body)


def test_missing_features_are_allowed_and_listed(served: tuple[Server, Path]) -> None:
    # given a record with one feature
    server, _ = served
    record = {"account_id": "A1", "events_30d": 4}
    # when it is scored
    response = httpx.post(server.url + "/score", json={"records": [record]}, timeout=30)
    # then it is scored, with the features it lacks listed
    assert response.status_code == 200, response.text
    scored = response.json()[0]
    assert "events_30d" not in scored["missing_features"]
    assert "people_engaged_30d" in scored["missing_features"]


def test_categories_are_spelled_as_batch_spells_them(
    served: tuple[Server, Path], world_features: Path
) -> None:
    # given one account's features, its industry and region spelled three ways
    server, _ = served
    record = _records(world_features, 1)[0]
    industry, region = str(record["industry"]), str(record["region"])
    spellings = {
        "as-batch": record,
        "as-a-crm-writes-it": {
            **record,
            "industry": f" {industry.replace('_', ' ').title()} ",
            "region": region.upper(),
        },
        "unknown": {**record, "industry": "Martian Mining"},
        "missing": {**record, "industry": None},
    }
    # when each is scored
    response = httpx.post(
        server.url + "/score", json={"records": list(spellings.values())}, timeout=30
    )
    # then a CRM's spelling scores as the batch's does; an industry the model never saw scores
    # as a missing one and is reported, never silently dropped
    assert response.status_code == 200, response.text
    scored = dict(zip(spellings, response.json(), strict=True))
    assert scored["as-a-crm-writes-it"]["probability"] == scored["as-batch"]["probability"]
    assert scored["as-a-crm-writes-it"]["unknown_categories"] == {}
    assert scored["unknown"]["unknown_categories"] == {"industry": "martian_mining"}
    assert scored["unknown"]["probability"] == scored["missing"]["probability"]
    assert "industry" in scored["missing"]["missing_features"]


def test_explain_gives_reasons_and_roles(served: tuple[Server, Path], world_features: Path) -> None:
    # given three accounts' latest features
    server, _ = served
    records = _records(world_features, 3)
    # when the server is asked to explain their scores
    response = httpx.post(server.url + "/explain", json={"records": records}, timeout=30)
    # then each account has reasons in words and its buying-group roles
    assert response.status_code == 200, response.text
    for account in response.json()["accounts"]:
        assert account["positive"] or account["negative"]
        assert all(r["text"] for r in account["positive"])
        assert set(account["roles_engaged"]) | set(account["roles_missing"]) >= {
            "decision_maker",
            "champion",
        }
        assert account["buying_group_gap"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"records": [{"account_id": "A1", "stage": 3}]}, "stage"),
        ({"records": [{"account_id": "A1", "events_30d": "many"}]}, "events_30d"),
        ({"records": [{"events_30d": 1}]}, "account_id"),
        ({"records": []}, "records"),
        ({"records": [{"account_id": "A1"}] * 1001}, "records"),
        ({"rows": []}, "records"),
    ],
    ids=[
        "unknown-field",
        "text-for-a-number",
        "no-account-id",
        "no-records",
        "too-many-records",
        "wrong-top-level-key",
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(
    served: tuple[Server, Path], body: dict[str, object], field: str
) -> None:
    server, _ = served
    response = httpx.post(server.url + "/score", json=body, timeout=30)
    assert 400 <= response.status_code < 500
    assert field in response.text


@pytest.mark.parametrize(
    "raw",
    [
        b'{"records": [{"account_id": "A1", "events_30d": NaN}]}',
        b'{"records": [{"account_id": "A1", "events_30d": Infinity}]}',
        b"{not json",
        b"",
    ],
    ids=["nan", "infinity", "malformed", "empty"],
)
def test_nan_inf_and_malformed_json_are_4xx(served: tuple[Server, Path], raw: bytes) -> None:
    server, _ = served
    response = httpx.post(
        server.url + "/score", content=raw, headers={"content-type": "application/json"}, timeout=30
    )
    assert 400 <= response.status_code < 500, response.text


def test_model_card_and_ranked_accounts(served: tuple[Server, Path]) -> None:
    # given a server with a champion and a batch scoring
    server, ranked = served
    # when the model card and pages of ranked accounts are asked for
    card = httpx.get(server.url + "/model", timeout=30).json()
    page = httpx.get(server.url + "/accounts", params={"limit": 5, "offset": 5}, timeout=30).json()
    ready = httpx.get(
        server.url + "/accounts", params={"stage": "ready", "limit": 1000}, timeout=30
    ).json()
    empty = httpx.get(server.url + "/accounts", params={"limit": 0}, timeout=30)
    # then the card shows the champion beating the MQL rule, the pages follow the ranking and
    # the filter, and a limit of 0 is refused
    assert card["alias"] == "champion" and card["features"]
    assert card["test_metrics"]["roc_auc"] > card["mql_test_metrics"]["roc_auc"]
    assert card["drift"]["psi"]
    # the list was scored by the version that serves /score (a promotion since would differ)
    assert card["scored_list"]["model_version"] == card["version"]
    assert all(a["model_version"] == card["version"] for a in page["accounts"])
    assert page["total"] == len(pd.read_parquet(ranked))
    assert [a["rank"] for a in page["accounts"]] == [6, 7, 8, 9, 10]
    assert all(a["stage"] == "ready" for a in ready["accounts"])
    assert empty.status_code == 422


def test_health_and_metrics(served: tuple[Server, Path]) -> None:
    server, _ = served
    assert httpx.get(server.url + "/livez", timeout=30).status_code == 200
    metrics = httpx.get(server.url + "/metrics", timeout=30)
    assert metrics.status_code == 200 and "bentoml" in metrics.text


def test_readiness_fails_without_a_model(tmp_path: Path) -> None:
    # given a server on an empty store
    with Server(
        {
            "INMARKET_STORE": str(tmp_path / "empty"),
            "INMARKET_RELOAD_SECONDS": "0",
            "INMARKET_RANKED": str(tmp_path / "ranked.parquet"),  # absent
        },
        tmp_path,
    ) as server:
        # when it is asked whether it is ready, and to score
        ready = server.wait("/readyz")
        score = httpx.post(
            server.url + "/score", json={"records": [{"account_id": "A"}]}, timeout=30
        )
        listed = httpx.get(server.url + "/accounts", timeout=30)
        # then it is not ready, answers 503 and logs why; with no batch scoring the list is a
        # 404 that names the file, not the server's folders
        assert ready.status_code != 200
        assert score.status_code == 503
        assert "cannot load the champion model" in server.log.read_text()
        assert listed.status_code == 404 and "ranked.parquet" in listed.text
        assert str(tmp_path) not in listed.text


# the routes behind the token; one server answers them all, so they are looped over rather
# than parametrised (a server per route would cost a start-up each)
GUARDED_ROUTES = (
    ("POST", "/score"),
    ("POST", "/explain"),
    ("GET", "/model"),
    ("GET", "/accounts"),
    ("POST", "/admin/reload"),
)
# Authorization header (none, a wrong token, the right one) -> the status each route gives
AUTHORIZATIONS = {"": 401, "Bearer nope": 401, "Bearer s3cret": 200}


def test_the_token_guards_every_route_but_health(
    served: tuple[Server, Path], tmp_path: Path
) -> None:
    # given a server on the served store and ranking, with a token set
    _, ranked = served
    store = ranked.parent / "mlruns"
    with Server(
        {
            "INMARKET_STORE": str(store),
            "INMARKET_RANKED": str(ranked),
            "INMARKET_RELOAD_SECONDS": "0",
            "INMARKET_TOKEN": "s3cret",
        },
        tmp_path,
    ) as server:
        # when health and metrics are called without a token, and every other route without
        # one, with a wrong one and with the right one
        health = [httpx.get(server.url + path, timeout=30) for path in ("/readyz", "/metrics")]
        body = {"records": [{"account_id": "A1"}]}
        answers = {
            (path, authorization): httpx.request(
                method,
                server.url + path,
                json=body,
                timeout=30,
                headers={"Authorization": authorization} if authorization else {},
            )
            for method, path in GUARDED_ROUTES
            for authorization in AUTHORIZATIONS
        }
        page = httpx.get(server.url + "/", timeout=30, headers={"Authorization": "Bearer s3cret"})
        # then health and metrics answer; the other routes only to the right token
        assert [response.status_code for response in health] == [200, 200]
        for (path, authorization), response in answers.items():
            assert response.status_code == AUTHORIZATIONS[authorization], (
                path,
                authorization,
                response.text,
            )
        # and every answer, refused or not, forbids sniffing, framing and caching; the page
        # allows only this server's scripts
        for response in [*health, *answers.values(), page]:
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["cache-control"] == "no-store"
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy


def test_inmarket_serve_starts_the_service_with_workers(
    served: tuple[Server, Path], tmp_path: Path
) -> None:
    # given the served store and ranking
    _, ranked = served
    with Server(
        {},
        tmp_path,
        lambda port: [
            sys.executable,
            "-m",
            "inmarket.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            "2",
            "--store",
            str(ranked.parent / "mlruns"),
            "--ranked",
            str(ranked),
        ],
    ) as server:
        # when `inmarket serve --workers 2` runs on them
        ready = server.wait("/readyz")
        page = httpx.get(server.url + "/accounts", params={"limit": 1}, timeout=30)
        # then it is ready, serves the ranking and starts a second worker
        assert ready.status_code == 200
        assert page.json()["accounts"][0]["rank"] == 1
        deadline = time.monotonic() + 60
        while "entry_service:inmarket:2" not in server.log.read_text():
            assert time.monotonic() < deadline, "the second worker did not start"
            time.sleep(0.5)


def _account_tables(world_dir: Path, account_ids: list[str]) -> dict[str, list[dict[str, object]]]:
    tables = {}
    for name in ("accounts", "people", "events", "intent", "opportunities"):
        frame = pd.read_parquet(world_dir / f"{name}.parquet")
        frame = frame[frame["account_id"].isin(account_ids)]
        if name == "people":
            frame = frame.drop(columns=["email"])
        for column in frame.columns:
            if pd.api.types.is_datetime64_any_dtype(frame[column]) or (
                name == "intent" and column == "date"
            ):
                stamps = pd.to_datetime(frame[column], utc=True)
                frame[column] = stamps.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").where(stamps.notna())
        tables[name] = json.loads(frame.to_json(orient="records"))
    return tables


@pytest.mark.spark
def test_one_model_scores_alike_on_every_path(
    served: tuple[Server, Path],
    trained: tuple[Path, TrainResult],
    world_dir: Path,
    world_features: Path,
    tmp_path: Path,
) -> None:
    # given the session model, trained on a spec that is not the default (tests/worlds.py),
    # and its local batch scoring, made with the default settings of the day
    server, ranked = served
    store, result = trained
    client_of(store)
    model = load_model(result.model_uri)
    assert model.spec == WORLD_SPEC and model.spec != FeatureSpec()
    local = pd.read_parquet(ranked)
    # when the same world is scored on Spark, and four prospects over HTTP: from their raw rows
    # (/score_events), and from their feature rows built under the spec (/score and /explain)
    spark_out = tmp_path / "ranked.parquet"
    score_batch(
        model,
        world_dir,
        spark_out,
        DataSettings(),
        FeatureSettings(engine="spark", spark_master="local[2]"),
        model_uri=result.model_uri,
    )
    spark = pd.read_parquet(spark_out)
    picked = local[local["status"] == "prospect"].iloc[[0, 3, 50, 700]]
    ids = list(picked["account_id"])
    others = local[local["status"] != "prospect"].groupby("status").head(1)  # one of each
    request = {
        "as_of": str(picked["as_of"].iloc[0].isoformat()),
        **_account_tables(world_dir, [*ids, *others["account_id"]]),
    }
    events = httpx.post(server.url + "/score_events", json={"request": request}, timeout=60)
    features = pd.read_parquet(world_features)
    assert features["as_of"].max() == picked["as_of"].iloc[0]
    records = _records(features[features["account_id"].isin(ids)], len(ids))
    scored = httpx.post(server.url + "/score", json={"records": records}, timeout=30)
    explained = httpx.post(server.url + "/explain", json={"records": records}, timeout=30)
    # then Spark agrees with the local batch everywhere, and every HTTP path with both
    assert spark["account_id"].tolist() == local["account_id"].tolist()
    np.testing.assert_allclose(spark["probability"], local["probability"], rtol=0, atol=1e-9)
    assert spark["score"].equals(local["score"]) and spark["reasons"].equals(local["reasons"])
    history = pd.read_parquet(spark_out.with_name("ranked.history.parquet"))
    local_history = pd.read_parquet(ranked.with_name("ranked.history.parquet"))
    np.testing.assert_allclose(history["probability"], local_history["probability"], atol=1e-9)
    for response in (events, scored, explained):
        assert response.status_code == 200, response.text[:2000]
    assert events.json()["rows_rejected"] == {}
    expected = picked.set_index("account_id")["probability"]
    answers = {
        "score_events": {a["account_id"]: a for a in events.json()["accounts"]},
        "score": {a["account_id"]: a for a in scored.json()},
        "explain": {a["account_id"]: a for a in explained.json()["accounts"]},
    }
    for path, got in answers.items():
        for account, probability in expected.items():
            assert got[account]["probability"] == pytest.approx(probability, abs=1e-9), path
            assert got[account]["score"] == picked.set_index("account_id").at[account, "score"]
    assert all(not a["unknown_categories"] for a in scored.json())
    # the same reasons, in the same words, on the three paths that give them
    for account, text in picked.set_index("account_id")["reasons"].items():
        batch_reasons = json.loads(text)
        for path in ("score_events", "explain"):
            for side in ("positive", "negative"):
                got_texts = [r["text"] for r in answers[path][account][side]]
                assert got_texts == [r["text"] for r in batch_reasons[side]], (path, account)
    # and /score_events gives customers and accounts in pipeline the batch list's status
    assert len(others) == 2
    for account, status in others.set_index("account_id")["status"].items():
        got = answers["score_events"][account]
        assert got["status"] == got["stage"] == status
    assert {answers["score_events"][a]["status"] for a in ids} == {"prospect"}
    # and the reasons of the configured windows name them (none is worded as 90 days)
    reasons = [r for text in local["reasons"] for side in json.loads(text).values() for r in side]
    pattern = re.compile(rf"^({'|'.join(WINDOWED_TEXT)})_(\d+)d$")
    windowed = [(r, pattern.match(r["feature"])) for r in reasons]
    windowed = [(r, int(m.group(2))) for r, m in windowed if m]
    assert {days for _, days in windowed} >= {120}
    assert all(f"last {days} days" in r["text"] for r, days in windowed)


def test_score_events_counts_the_rows_it_rejects(
    served: tuple[Server, Path], world_dir: Path
) -> None:
    # given one account's raw rows plus an event of an unknown account
    server, ranked = served
    account = str(pd.read_parquet(ranked)["account_id"].iloc[0])
    tables = _account_tables(world_dir, [account])
    tables["accounts"][0]["industry"] = "Martian Mining"  # an industry the model never saw
    tables["events"].append(
        {
            "timestamp": "2025-01-01T00:00:00Z",
            "event_type": "page_view",
            "account_id": "NOT-AN-ACCOUNT",
        }
    )
    request = {"as_of": "2026-07-01T00:00:00Z", **tables}
    # when they are scored, and scored again without any account
    body = httpx.post(server.url + "/score_events", json={"request": request}, timeout=60).json()
    bad = httpx.post(
        server.url + "/score_events", json={"request": {**request, "accounts": []}}, timeout=60
    )
    blank = [{**tables["accounts"][0], "account_id": "   "}]  # passes the schema, not the contract
    all_rejected = httpx.post(
        server.url + "/score_events", json={"request": {**request, "accounts": blank}}, timeout=60
    )
    # then the unknown account's event is counted as rejected, and no accounts, or none left
    # after the contract, is a 400 naming the table
    assert body["rows_rejected"] == {"events": {"unknown_account": 1}}
    assert body["accounts"][0]["unknown_categories"] == {"industry": "martian_mining"}
    assert bad.status_code == 400 and "accounts" in bad.text
    assert all_rejected.status_code == 400, all_rejected.text
    assert "every account was rejected" in all_rejected.text


def _tree_rss_mb(process: subprocess.Popen[bytes]) -> float:
    import psutil

    root = psutil.Process(process.pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 1e6


def test_a_fixed_rate_minute_with_a_promotion_in_the_middle(
    trained: tuple[Path, TrainResult], world_dir: Path, world_features: Path, tmp_path: Path
) -> None:
    """60 s at 25 requests/s; a new champion trained and promoted after 15 s is picked up
    without restart while requests are in flight: no errors, both versions answer, and memory
    is flat over the last 20 s (bench/serve.py runs the same at 50/s)."""
    from concurrent.futures import Future, ThreadPoolExecutor

    # given a server reloading every second on a store with a champion
    store = copy_store(trained[0], tmp_path / "mlruns")
    client = client_of(store)
    promote(client, "inmarket")
    records = _records(world_features, 200)
    with Server({"INMARKET_STORE": str(store), "INMARKET_RELOAD_SECONDS": "1"}, tmp_path) as server:
        assert server.wait("/readyz").status_code == 200
        before = httpx.get(server.url + "/model", timeout=30).json()["version"]
        http = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=16))

        def one(i: int) -> tuple[int, str | None]:
            response = http.post(server.url + "/score", json={"records": [records[i % 200]]})
            ok = response.status_code == 200
            return response.status_code, response.json()[0]["model_version"] if ok else None

        rate, seconds = 25, 60
        answers: list[Future[tuple[int, str | None]]] = []
        memory: list[float] = []

        def retrain_and_promote() -> TrainResult:
            result = train_job(store, seed=8).run(world_dir, world_features)
            promote(client, "inmarket", force=True)
            return result

        # when requests come at a fixed rate for a minute while a new champion is trained and
        # promoted after 15 s
        retrained: Future[TrainResult] | None = None
        with ThreadPoolExecutor(16) as pool, ThreadPoolExecutor(1) as trainer:
            began = time.monotonic()
            while (elapsed := time.monotonic() - began) < seconds:
                while len(answers) < elapsed * rate:
                    answers.append(pool.submit(one, len(answers)))
                if len(memory) < elapsed:
                    memory.append(_tree_rss_mb(server.process))
                if retrained is None and elapsed >= 15:
                    retrained = trainer.submit(retrain_and_promote)
                time.sleep(0.01)
            results = [a.result() for a in answers]
        http.close()
        # then every request is answered, first by the old champion and last by the new one,
        # and memory is flat over the last 20 s
        assert retrained is not None
        newer = retrained.result()
        assert newer.version != before
        assert len(results) >= rate * seconds - 1
        assert [code for code, _ in results if code != 200] == []
        versions = [v for _, v in results]
        assert versions[0] == before and versions[-1] == newer.version
        assert httpx.get(server.url + "/model", timeout=30).json()["version"] == newer.version
        last = memory[-20:]
        assert max(last) - min(last) < 15, f"server memory grew over the last 20 s: {last}"


def test_concurrent_requests_are_batched_and_answered_apart(
    served: tuple[Server, Path], world_features: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    # given forty accounts' latest features
    server, _ = served
    records = _records(world_features, 40)

    def one(record: dict[str, object]) -> list[dict[str, object]]:
        response = httpx.post(server.url + "/score", json={"records": [record]}, timeout=30)
        assert response.status_code == 200
        result: list[dict[str, object]] = response.json()
        return result

    # when each is scored in its own request, sixteen at a time
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, records))
    # then each answer is its own account's, and the server batched them adaptively
    assert [a[0]["account_id"] for a in answers] == [r["account_id"] for r in records]
    metrics = httpx.get(server.url + "/metrics", timeout=30).text
    assert "adaptive_batch_size" in metrics


def test_fuzz_from_the_openapi_schema_never_gives_a_5xx(served: tuple[Server, Path]) -> None:
    """Requests generated by schemathesis from the service's own OpenAPI document, for every
    operation: any answer but a 5xx."""
    from hypothesis import given

    # given the operations of the served OpenAPI document
    server, _ = served
    schema = schemathesis.openapi.from_url(server.url + "/docs.json")
    results = list(schema.get_all_operations())
    assert [r.err() for r in results if isinstance(r, Err)] == []
    operations = [r.ok() for r in results if isinstance(r, Ok)]
    assert {op.path for op in operations} >= {"/score", "/explain", "/score_events"}
    # when each is called with 40 generated requests
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def call(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(base_url=server.url, timeout=30)
            # then no answer is a 5xx
            assert response.status_code < 500, (case.path, case.body, response.text[:500])

        call()
