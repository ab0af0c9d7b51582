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
from serving.errors import CODES, ErrorResponse
from serving.page import COOKIE
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
            # short, so the tests of slow clients are quick
            "INMARKET_HEADER_SECONDS": "2",
            "INMARKET_BODY_SECONDS": "3",
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
    response = httpx.post(server.url + "/v1/score", json={"records": records}, timeout=30)
    # then the answers are the model's own probabilities, in order, with scores 0-100, in one
    # envelope that names the model once
    assert response.status_code == 200, response.text
    envelope = response.json()
    assert envelope["model"]["name"] == "inmarket"
    assert envelope["model"]["version"] == trained[1].version
    assert envelope["model"]["fitted_until"] and envelope["model"]["trained_at"]
    assert envelope["warnings"] == []
    body = envelope["results"]
    assert [s["account_id"] for s in body] == [r["account_id"] for r in records]
    assert not any(s["low_information"] for s in body)
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
    response = httpx.post(server.url + "/v1/score", json={"records": [record]}, timeout=30)
    # then it is scored, with the features it lacks listed
    assert response.status_code == 200, response.text
    scored = response.json()["results"][0]
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
        server.url + "/v1/score", json={"records": list(spellings.values())}, timeout=30
    )
    # then a CRM's spelling scores as the batch's does; an industry the model never saw scores
    # as a missing one and is reported, never silently dropped
    assert response.status_code == 200, response.text
    scored = dict(zip(spellings, response.json()["results"], strict=True))
    assert scored["as-a-crm-writes-it"]["probability"] == scored["as-batch"]["probability"]
    assert scored["as-a-crm-writes-it"]["unknown_categories"] == {}
    assert scored["unknown"]["unknown_categories"] == {"industry": "martian_mining"}
    assert scored["unknown"]["probability"] == scored["missing"]["probability"]
    assert "industry" in scored["missing"]["missing_features"]
    assert {(w["code"], w["field"]) for w in response.json()["warnings"] if w["account_id"]} == {
        ("unknown_category", "industry")
    }


def test_explain_gives_reasons_and_roles(served: tuple[Server, Path], world_features: Path) -> None:
    # given three accounts' latest features
    server, _ = served
    records = _records(world_features, 3)
    # when the server is asked to explain their scores
    response = httpx.post(server.url + "/v1/explain", json={"records": records}, timeout=30)
    # then each account has reasons in words and its buying-group roles
    assert response.status_code == 200, response.text
    for account in response.json()["results"]:
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
        ({"records": [{"account_id": "A1"}], "debug": True}, "debug"),
        ({"records": [{"account_id": "A1", "events_30d": "5"}]}, "events_30d"),
        ({"records": [{"account_id": "A1", "events_30d": True}]}, "events_30d"),
        ({"records": [{"account_id": "A1", "events_30d": -1}]}, "events_30d"),
        ({"records": [{"account_id": "A1", "events_30d": 1e308}]}, "events_30d"),
        ({"records": [{"account_id": "A1", "anonymous_share_90d": 1.5}]}, "anonymous_share_90d"),
        ({"records": [{"account_id": "A1", "intent_max_score_90d": 101}]}, "intent_max_score"),
    ],
    ids=[
        "unknown-field",
        "text-for-a-number",
        "no-account-id",
        "no-records",
        "too-many-records",
        "wrong-top-level-key",
        "unknown-top-level-field",
        "number-as-text",
        "boolean-for-a-number",
        "negative-count",
        "absurd-count",
        "share-above-one",
        "intent-above-100",
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(
    served: tuple[Server, Path], body: dict[str, object], field: str
) -> None:
    server, _ = served
    response = httpx.post(server.url + "/v1/score", json=body, timeout=30)
    assert response.status_code == 400
    assert field in response.json()["error"]["message"]
    # a client's mistake is not logged as the server's (it was a 2 KB traceback each)
    assert "Traceback" not in server.log.read_text()


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
    # each with its bootstrap interval, and how it was evaluated
    lo, hi = card["test_intervals"]["recall_at_10"]
    assert lo <= card["test_metrics"]["recall_at_10"] <= hi and lo < hi
    assert card["mql_test_intervals"]["pr_auc"] and card["evaluation"] == "time_split"
    # and the card's table has every method of the comparison, each value with its interval
    table = card["comparison_table"]
    assert table["columns"] == [
        "model",
        "without intent",
        "buying group only",
        "MQL rule",
        "logistic",
        "engagement",
    ]
    rows = {row["name"].split(" (")[0]: row["cells"] for row in table["rows"]}
    assert rows["Recall in top 10%, x the MQL rule's"][3] == "1.00 [1.00–1.00]"
    assert all("[" in cell for cell in rows["Lead days"]), rows["Lead days"]
    assert card["drift"]["psi"]
    # the list was scored by the version that serves /score (a promotion since would differ)
    assert card["scored_list"]["model_version"] == card["version"]
    assert all(a["model_version"] == card["version"] for a in page["accounts"])
    assert page["total"] == len(pd.read_parquet(ranked))
    assert [a["rank"] for a in page["accounts"]] == [6, 7, 8, 9, 10]
    assert all(a["stage"] == "ready" for a in ready["accounts"])
    assert empty.status_code == 422


def test_score_events_is_as_strict(served: tuple[Server, Path], world_dir: Path) -> None:
    # given a valid /score_events request
    server, _ = served
    # (dates as the tables' readers take them: a date alone, epoch seconds)
    request = {
        "as_of": "2025-06-01",
        "accounts": [{"account_id": "A1", "created_at": 1_700_000_000}],
        "intent": [{"account_id": "A1", "date": "2025-05-01", "topic": "crm", "score": 80}],
    }
    bad = {
        "unknown-field": {**request, "debug": True},
        "count-as-text": {**request, "accounts": [{"account_id": "A1", "employee_count": "5"}]},
        "negative-weight": {
            **request,
            "events": [
                {
                    "timestamp": "2025-05-01T00:00:00Z",
                    "event_type": "page_view",
                    "account_id": "A1",
                    "weight": -1,
                }
            ],
        },
        "weight-as-boolean": {
            **request,
            "events": [
                {
                    "timestamp": "2025-05-01T00:00:00Z",
                    "event_type": "page_view",
                    "account_id": "A1",
                    "weight": True,
                }
            ],
        },
    }
    # when it is sent as is, and with each flaw
    good = httpx.post(server.url + "/v1/score_events", json=request, timeout=30)
    answers = {
        name: httpx.post(server.url + "/v1/score_events", json=body, timeout=30)
        for name, body in bad.items()
    }
    # then only the valid one is scored; each flaw is a 400
    assert good.status_code == 200, good.text
    assert {name: a.status_code for name, a in answers.items()} == dict.fromkeys(bad, 400)


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
        card = httpx.get(server.url + "/model", timeout=30)
        listed = httpx.get(server.url + "/accounts", timeout=30)
        # then it is not ready, answers 503 and logs why; with no batch scoring the list is a
        # 404 that names the file, not the server's folders
        assert ready.status_code != 200
        assert score.status_code == 503 and card.status_code == 503
        # in the one error shape, saying why (BentoML's said "An unexpected error has occurred")
        for refused in (score, card):
            error = refused.json()["error"]
            assert error["code"] == "unavailable", refused.text
            assert "no model loaded" in error["message"], refused.text
        assert "cannot load the champion model" in server.log.read_text()
        assert listed.status_code == 404 and "ranked.parquet" in listed.text
        assert str(tmp_path) not in listed.text
        # when the ranked file is there but is not Parquet
        (tmp_path / "ranked.parquet").write_bytes(b"PAR1 not really")
        broken = [httpx.get(server.url + p, timeout=30) for p in ("/accounts", "/summary")]
        # then the list answers 503 saying to score again, not a 500
        assert [b.status_code for b in broken] == [503, 503], [b.text for b in broken]
        assert all("inmarket score" in b.text for b in broken)
        # and, started without --host, it listens on loopback only
        assert _listening(server) == {"127.0.0.1"}


def _listening(server: Server) -> set[str]:
    """The addresses the server's processes listen on, for its port."""
    import psutil

    root = psutil.Process(server.process.pid)
    return {
        conn.laddr.ip
        for proc in [root, *root.children(recursive=True)]
        for conn in proc.net_connections("tcp")
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == server.port
    }


TOKEN = "api-token-0123456789abcdef"
ADMIN_TOKEN = "admin-token-0123456789abcdef"
# the routes behind the token; one server answers them all, so they are looped over rather
# than parametrised (a server per route would cost a start-up each)
GUARDED_ROUTES = (
    ("POST", "/v1/score"),
    ("POST", "/score"),
    ("POST", "/v1/explain"),
    ("GET", "/v1/model"),
    ("GET", "/accounts"),
    ("GET", "/metrics"),
    ("GET", "/v1/openapi.json"),
)
# Authorization header (none, a wrong token, the admin's, the right one) -> the status
AUTHORIZATIONS = {"": 401, "Bearer nope": 401, f"Bearer {ADMIN_TOKEN}": 401, f"Bearer {TOKEN}": 200}
# /admin/* takes the admin token only
ADMIN_AUTHORIZATIONS = {"": 401, f"Bearer {TOKEN}": 401, f"Bearer {ADMIN_TOKEN}": 200}


def test_the_token_guards_every_route_but_health(
    served: tuple[Server, Path], tmp_path: Path
) -> None:
    # given a server on the served store and ranking, with an API token and an admin token
    _, ranked = served
    store = ranked.parent / "mlruns"
    with Server(
        {
            "INMARKET_STORE": str(store),
            "INMARKET_RANKED": str(ranked),
            "INMARKET_RELOAD_SECONDS": "0",
            "INMARKET_TOKEN": TOKEN,
            "INMARKET_ADMIN_TOKEN": ADMIN_TOKEN,
        },
        tmp_path,
    ) as server:
        # when health is called without a token, and every other route without one, with a
        # wrong one, with the other one and with the right one
        health = [httpx.get(server.url + path, timeout=30) for path in ("/readyz", "/livez")]
        body = {"records": [{"account_id": "A1"}]}

        def call(method: str, path: str, authorization: str) -> httpx.Response:
            headers = {"Authorization": authorization} if authorization else {}
            payload = None if path.startswith("/admin") else body
            return httpx.request(
                method, server.url + path, json=payload, timeout=30, headers=headers
            )

        answers = {
            (path, authorization): (call(method, path, authorization), status)
            for method, path in GUARDED_ROUTES
            for authorization, status in AUTHORIZATIONS.items()
        } | {
            ("/admin/reload", authorization): (call("POST", "/admin/reload", authorization), status)
            for authorization, status in ADMIN_AUTHORIZATIONS.items()
        }
        page = httpx.get(server.url + "/", timeout=30, headers={"Authorization": f"Bearer {TOKEN}"})
        # (the admin route spelled otherwise, with the API token, opens nothing)
        variants = [
            httpx.post(server.url + v, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"})
            for v in ("/admin/reload/", "//admin/reload", "/%61dmin/reload", "/ADMIN/reload")
        ]
        # then health answers; metrics and the other routes only to the right token, /admin
        # only to the admin's
        assert [response.status_code for response in health] == [200, 200]
        for (path, authorization), (response, status) in answers.items():
            assert response.status_code == status, (path, authorization, response.text)
            if status == 401:  # the one error shape, from the token check too
                assert response.json()["error"]["code"] == "unauthorized", response.text
        assert all(v.status_code in (401, 404, 405) for v in variants), [
            (v.url, v.status_code) for v in variants
        ]
        # and every answer, refused or not, forbids sniffing, framing and caching; the page
        # allows only this server's scripts
        for response in [*health, *(r for r, _ in answers.values()), page]:
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["cache-control"] == "no-store"
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy


def test_a_browser_signs_in_with_a_signed_expiring_cookie_and_guessing_is_throttled(
    served: tuple[Server, Path], tmp_path: Path
) -> None:
    # given a server with an API token and an admin token
    _, ranked = served
    with Server(
        {
            "INMARKET_STORE": str(ranked.parent / "mlruns"),
            "INMARKET_RANKED": str(ranked),
            "INMARKET_RELOAD_SECONDS": "0",
            "INMARKET_TOKEN": TOKEN,
            "INMARKET_ADMIN_TOKEN": ADMIN_TOKEN,
            "INMARKET_SESSION_HOURS": "2",
        },
        tmp_path,
    ) as server:
        # when a browser signs in with the right token
        signed = httpx.post(server.url + "/login", data={"token": TOKEN}, timeout=30)
        cookie = signed.cookies[COOKIE]
        jar = {COOKIE: cookie}
        listed = httpx.get(server.url + "/accounts", cookies=jar, timeout=30)
        admin = httpx.post(server.url + "/admin/reload", cookies=jar, timeout=30)
        expires, nonce, signature = cookie.split(".")
        forged = {COOKIE: f"{int(expires) + 86_400}.{nonce}.{signature}"}
        forged_answer = httpx.get(server.url + "/accounts", cookies=forged, timeout=30)
        old_style = httpx.get(server.url + "/accounts", cookies={COOKIE: TOKEN}, timeout=30)
        # then the cookie is not the token, lasts the session hours, opens the list but not
        # /admin; a cookie with its expiry moved, or the raw token as a cookie, opens nothing
        assert signed.status_code == 303 and TOKEN not in cookie
        assert "Max-Age=7200" in signed.headers["set-cookie"]
        assert "HttpOnly" in signed.headers["set-cookie"]
        assert listed.status_code == 200
        assert admin.status_code == 401
        assert forged_answer.status_code == 401 and old_style.status_code == 401
        # when one client guesses wrong tokens six times in a row
        guesses = [
            httpx.post(server.url + "/login", data={"token": f"guess-{i}"}, timeout=30)
            for i in range(6)
        ]
        late_right = httpx.post(server.url + "/login", data={"token": TOKEN}, timeout=30)
        # then the first five are refused as wrong, then the form answers 429 with how long
        # to wait, even to the right token, until a minute has passed
        assert [g.status_code for g in guesses] == [401] * 5 + [429]
        assert int(guesses[-1].headers["retry-after"]) > 0
        assert late_right.status_code == 429


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
        # who to reach is no feature: /score_events takes none of it
        contact = {"accounts": ["owner"], "people": ["name", "email", "owner"]}.get(name, [])
        frame = frame.drop(columns=contact)
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
    events = httpx.post(server.url + "/v1/score_events", json=request, timeout=60)
    features = pd.read_parquet(world_features)
    assert features["as_of"].max() == picked["as_of"].iloc[0]
    records = _records(features[features["account_id"].isin(ids)], len(ids))
    scored = httpx.post(server.url + "/v1/score", json={"records": records}, timeout=30)
    explained = httpx.post(server.url + "/v1/explain", json={"records": records}, timeout=30)
    # then Spark agrees with the local batch everywhere, and every HTTP path with both
    assert spark["account_id"].tolist() == local["account_id"].tolist()
    np.testing.assert_allclose(spark["probability"], local["probability"], rtol=0, atol=1e-9)
    assert spark["score"].equals(local["score"]) and spark["reasons"].equals(local["reasons"])
    history = pd.read_parquet(spark_out.with_name("ranked.history.parquet"))
    local_history = pd.read_parquet(ranked.with_name("ranked.history.parquet"))
    np.testing.assert_allclose(history["probability"], local_history["probability"], atol=1e-9)
    for response in (events, scored, explained):
        assert response.status_code == 200, response.text[:2000]
    assert events.json()["warnings"] == []
    expected = picked.set_index("account_id")["probability"]
    answers = {
        "score_events": {a["account_id"]: a for a in events.json()["results"]},
        "score": {a["account_id"]: a for a in scored.json()["results"]},
        "explain": {a["account_id"]: a for a in explained.json()["results"]},
    }
    for path, got in answers.items():
        for account, probability in expected.items():
            assert got[account]["probability"] == pytest.approx(probability, abs=1e-9), path
            assert got[account]["score"] == picked.set_index("account_id").at[account, "score"]
    assert all(not a["unknown_categories"] for a in scored.json()["results"])
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
    pattern = re.compile(r"^(people_engaged|high_intent_events|events)_(\d+)d$")
    matched = [(r, pattern.match(r["feature"])) for r in reasons]
    windowed = [(r, int(m.group(2))) for r, m in matched if m]
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
    body = httpx.post(server.url + "/v1/score_events", json=request, timeout=60).json()
    bad = httpx.post(server.url + "/v1/score_events", json={**request, "accounts": []}, timeout=60)
    blank = [{**tables["accounts"][0], "account_id": "   "}]  # passes the schema, not the contract
    all_rejected = httpx.post(
        server.url + "/v1/score_events", json={**request, "accounts": blank}, timeout=60
    )
    # then the unknown account's event is counted as rejected, and no accounts, or none left
    # after the contract, is a 400 naming the table
    rejected = [w for w in body["warnings"] if w["code"] == "rows_rejected"]
    assert [(w["field"], w["reason"], w["count"]) for w in rejected] == [
        ("events", "unknown_account", 1)
    ]
    assert body["results"][0]["unknown_categories"] == {"industry": "martian_mining"}
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
            response = http.post(server.url + "/v1/score", json={"records": [records[i % 200]]})
            ok = response.status_code == 200
            return response.status_code, response.json()["model"]["version"] if ok else None

        rate, seconds = 25, 60
        answers: list[Future[tuple[int, str | None]]] = []
        memory: list[float] = []

        def retrain_and_promote() -> TrainResult:
            result = train_job(store, seed=8).run(world_dir, world_features)
            promote(client, "inmarket", force=True)
            return result

        # when requests come at a fixed rate for a minute while a new champion is trained and
        # promoted after 15 s (on a loaded machine the training may outlast the minute: the
        # requests go on until 25 s after the promotion, 180 s at most, so that the last 20 s
        # whose memory is compared all come after the new champion was loaded)
        retrained: Future[TrainResult] | None = None
        landed: float | None = None

        def going(elapsed: float) -> bool:
            if elapsed >= 180:
                return False
            return elapsed < seconds or landed is None or elapsed < landed + 25

        with ThreadPoolExecutor(16) as pool, ThreadPoolExecutor(1) as trainer:
            began = time.monotonic()
            while going(elapsed := time.monotonic() - began):
                if landed is None and retrained is not None and retrained.done():
                    landed = elapsed
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
        response = httpx.post(server.url + "/v1/score", json={"records": [record]}, timeout=30)
        assert response.status_code == 200
        result: list[dict[str, object]] = response.json()["results"]
        return result

    # when each is scored in its own request, sixteen at a time
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, records))
    # then each answer is its own account's, and the server batched them adaptively
    assert [a[0]["account_id"] for a in answers] == [r["account_id"] for r in records]
    metrics = httpx.get(server.url + "/metrics", timeout=30).text
    assert "adaptive_batch_size" in metrics


def _metrics_size(server: Server) -> int:
    return len(httpx.get(server.url + "/metrics", timeout=30).content)


def test_unknown_paths_leave_metrics_and_memory_flat(served: tuple[Server, Path]) -> None:
    """Each raw path used to become a metrics label: 17,097 random paths grew the worker by
    180 MB and /metrics to 35 MB."""
    from concurrent.futures import ThreadPoolExecutor

    # given a server that has answered a first 2,000 requests to unknown paths
    server, _ = served

    def hammer(start: int, count: int) -> list[int]:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            return [
                client.get(f"/accounts/probe-{i}" if i % 2 else f"/no/such/{i}").status_code
                for i in range(start, start + count)
            ]

    hammer(0, 2_000)
    size, rss = _metrics_size(server), _tree_rss_mb(server.process)
    # when 20,000 more requests go to 20,000 other paths
    with ThreadPoolExecutor(4) as pool:
        answers = [
            c for part in pool.map(hammer, range(2_000, 22_000, 5_000), [5_000] * 4) for c in part
        ]
    # and 50 WebSocket handshakes go to 50 more (no route speaks it)
    handshakes = [
        _raw(
            server,
            f"GET /ws-probe-{i} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode(),
            wait=3,
        )
        for i in range(50)
    ]
    # then all are 404s (the handshakes refused), /metrics has not grown by a label and the
    # server's memory is flat
    assert not any(h.startswith(b"HTTP/1.1 101") for h in handshakes), handshakes[0][:100]
    assert len(answers) == 20_000 and set(answers) == {404}
    assert _metrics_size(server) - size < 2_000
    assert _tree_rss_mb(server.process) - rss < 30
    text = httpx.get(server.url + "/metrics", timeout=30).text
    labels = set(re.findall(r'endpoint="([^"]*)"', text))
    assert "/v1/accounts/{account_id}" in labels, labels
    assert not any("probe-" in label for label in labels), labels


# every route, a body of 50 MB: refused before it is read
BIG_BODY_ROUTES = ("/score", "/explain", "/score_events", "/admin/reload", "/login", "/accounts")
# a client in a process of its own (so the 50 MB it pushes does not slow the test's /livez
# calls): prints the status and the seconds to it; chunked: no Content-Length
_SENDER = """
import sys, time, httpx
url, chunked = sys.argv[1], sys.argv[2] == "chunked"
body = (b" " * 1_000_000 for _ in range(50)) if chunked else b"{" + b" " * 50_000_000 + b"}"
start = time.perf_counter()
try:
    status = str(httpx.post(url, content=body, headers={"content-type": "application/json"},
                            timeout=60).status_code)
except httpx.HTTPError:  # the server answered and closed before the client had sent it all
    status = "closed"
print(status, time.perf_counter() - start)
"""


def test_a_50_mb_body_is_refused_at_once_while_livez_answers(served: tuple[Server, Path]) -> None:
    # given a server
    server, _ = served
    answers: dict[str, tuple[str, float]] = {}
    livez: list[float] = []
    cases = [(path, "whole") for path in BIG_BODY_ROUTES] + [("/score_events", "chunked")]
    # when 50 MB are posted to every route (and once without a Content-Length), while /livez
    # is asked every 20 ms
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for path, how in cases:
            sender = subprocess.Popen(
                [sys.executable, "-c", _SENDER, server.url + path, how],
                stdout=subprocess.PIPE,
                text=True,
            )
            while sender.poll() is None:
                start = time.perf_counter()
                assert client.get("/livez").status_code == 200
                livez.append(time.perf_counter() - start)
                time.sleep(0.02)
            status, seconds = sender.communicate()[0].split()
            answers[f"{path} {how}"] = (status, float(seconds))
    # then each is a 413 (the chunked one may see the connection closed after it) within a
    # couple of seconds (it was 12.7 s, and /livez waited 11.8 s)
    whole = {case: status for case, (status, _) in answers.items() if case.endswith("whole")}
    assert whole == dict.fromkeys(whole, "413"), answers
    assert answers["/score_events chunked"][0] in ("413", "closed"), answers
    assert max(seconds for _, seconds in answers.values()) < 5, answers
    assert len(livez) >= len(cases) and float(np.median(livez)) < 0.1, livez
    assert max(livez) < 0.5, livez


def _raw(server: Server, data: bytes, wait: float) -> bytes:
    """What the server sends back within ``wait`` seconds to ``data`` on a fresh connection
    (b"" if it closed without a word)."""
    import socket

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


def test_slow_clients_are_cut_off(served: tuple[Server, Path]) -> None:
    # given a server giving 2 s for headers and 3 s for a body
    server, _ = served
    # when one client sends half its headers, and another a tenth of the body it announced
    start = time.monotonic()
    half_headers = _raw(server, b"GET /livez HTTP/1.1\r\nHost: x\r\n", wait=8)
    header_seconds = time.monotonic() - start
    start = time.monotonic()
    short_body = _raw(
        server,
        b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"records"',
        wait=8,
    )
    body_seconds = time.monotonic() - start
    huge_headers = _raw(
        server, b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100_000, wait=8
    )
    # then the first is closed after about 2 s, the second answered 408 after about 3 s
    # (they were held for 75 s and 60 s)
    assert half_headers == b"closed" and 1.5 < header_seconds < 6
    assert short_body.startswith(b"HTTP/1.1 408"), short_body[:200]
    assert 2.5 < body_seconds < 7
    # and 100 KB of headers are refused with 431 (uvicorn took 20 MB)
    assert huge_headers.startswith(b"HTTP/1.1 431"), huge_headers[:200]


# what a probe sent that ended in a 5xx or a stall, and other hostile bodies
HOSTILE = [
    (
        "POST",
        "/login",
        {"content-type": "application/x-www-form-urlencoded"},
        "token=ĂŤ€😀".encode(),
    ),
    ("POST", "/login", {"content-type": "application/x-www-form-urlencoded"}, b"token=\xff\xfe"),
    (
        "POST",
        "/score",
        {"content-type": "application/json"},
        b'{"records": [{"account_id": "\\u0000"}]}',
    ),
    ("POST", "/score", {"content-type": "application/json"}, b"[" * 10_000),
    ("POST", "/score", {"content-type": "text/plain"}, b"account_id=1"),
    (
        "POST",
        "/score_events",
        {"content-type": "application/json"},
        b'{"as_of": "0001-01-01T00:00:00Z", "accounts": [{"account_id": " "}]}',
    ),
    (
        "POST",
        "/score_events",
        {"content-type": "application/json"},
        b'{"as_of": "9999-12-31T00:00:00Z", "accounts": [{"account_id": "A"}]}',
    ),
    ("GET", "/accounts/%00%ff", {}, b""),
    ("GET", "/accounts?limit=99999999999999999999", {}, b""),
    ("POST", "/admin/reload", {"content-type": "application/json"}, b'{"x": 1}'),
]


@pytest.mark.parametrize(("method", "path", "headers", "body"), HOSTILE)
def test_hostile_requests_never_give_a_5xx(
    served: tuple[Server, Path], method: str, path: str, headers: dict[str, str], body: bytes
) -> None:
    server, _ = served
    response = httpx.request(method, server.url + path, headers=headers, content=body, timeout=30)
    assert response.status_code < 500, response.text[:500]


def test_fuzz_from_the_openapi_document_finds_no_5xx_and_no_undocumented_answer(
    served: tuple[Server, Path],
) -> None:
    """Requests generated by schemathesis from the service's one OpenAPI document, for every
    operation: no 5xx, and every answer (refusals included) has a documented status, content
    type and shape."""
    from hypothesis import given
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    # given the operations of the served OpenAPI document
    server, _ = served
    schema = schemathesis.openapi.from_url(server.url + "/v1/openapi.json")
    results = list(schema.get_all_operations())
    assert [r.err() for r in results if isinstance(r, Err)] == []
    operations = [r.ok() for r in results if isinstance(r, Ok)]
    assert {op.path for op in operations} >= {"/v1/score", "/v1/explain", "/v1/score_events"}
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    # when each is called with 40 generated requests
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def call(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(base_url=server.url, timeout=30)
            # then no answer is a 5xx or outside what the document says
            assert response.status_code < 500, (case.path, case.body, response.text[:500])
            case.validate_response(response, checks=checks)

        call()


def test_one_openapi_document_validates_and_lists_every_route(served: tuple[Server, Path]) -> None:
    from importlib.metadata import version

    from openapi_spec_validator import validate

    # given a server
    server, _ = served
    # when its OpenAPI document is asked for, at its path and at the two paths of before
    document = httpx.get(server.url + "/v1/openapi.json", timeout=30)
    retired = [httpx.get(server.url + path, timeout=30) for path in ("/docs.json", "/openapi.json")]
    # then it is one valid OpenAPI document of every public route, with the package's version,
    # a description, the bearer scheme and the page's cookie, examples and enums
    assert document.status_code == 200
    spec = document.json()
    validate(spec)
    assert set(spec["paths"]) >= {
        "/v1/score",
        "/v1/explain",
        "/v1/score_events",
        "/v1/model",
        "/v1/accounts",
        "/v1/accounts.csv",
        "/v1/accounts/{account_id}",
        "/v1/summary",
        "/admin/reload",
        "/livez",
        "/readyz",
        "/metrics",
    }
    assert not [p for p in spec["paths"] if p in ("/score", "/docs.json", "/")]
    assert spec["info"]["version"] == version("inmarket") != "None"
    assert "envelope" in spec["info"]["description"]
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["session"]["in"] == "cookie"
    assert {"bearer": []} in spec["security"]
    score = spec["paths"]["/v1/score"]["post"]
    assert score["requestBody"]["content"]["application/json"]["example"]["records"]
    assert score["responses"]["200"]["content"]["application/json"]["example"]["model"]
    stage = spec["components"]["schemas"]["ScoredAccount"]["properties"]["stage"]
    assert "in-market" in stage["enum"]
    # and the documents of before redirect to it
    assert [r.status_code for r in retired] == [308, 308]
    assert {r.headers["location"] for r in retired} == {"/v1/openapi.json"}


def test_swagger_ui_loads_nothing_from_elsewhere(served: tuple[Server, Path]) -> None:
    from playwright.sync_api import sync_playwright

    # given a server
    server, _ = served
    # when its API docs page and everything it links are fetched
    page = httpx.get(server.url + "/docs", timeout=30)
    links = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assets = [httpx.get(server.url + link, timeout=30) for link in links]
    # then every asset is this server's, served, and the page keeps the strict policy
    assert links and all(link.startswith("/") for link in links), links
    assert [a.status_code for a in assets] == [200] * len(assets)
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # when a headless browser renders it
    requests: list[str] = []
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            tab = browser.new_page()
            tab.on("request", lambda r: requests.append(r.url))
            tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: problems.append(str(e)))
            tab.on("response", lambda r: problems.append(r.url) if r.status >= 400 else None)
            tab.goto(server.url + "/docs")
            tab.wait_for_selector(".opblock", timeout=30_000)
            listed = tab.locator(".opblock-summary-path").all_inner_texts()
        finally:
            browser.close()
    # then it lists the operations, with no request leaving this server and no error (a
    # content security policy violation would be one)
    assert {"/v1/score", "/v1/explain", "/v1/score_events"} <= {p.strip() for p in listed}
    assert requests and all(u.startswith(server.url + "/") for u in requests), requests
    assert problems == []


def test_every_refusal_has_the_one_error_shape(served: tuple[Server, Path]) -> None:
    # given a server, and one request for each refusal it makes without a token
    server, _ = served
    url = server.url
    answers = {
        (400, "records.0.events_30d"): httpx.post(
            url + "/v1/score", json={"records": [{"account_id": "A", "events_30d": "x"}]}
        ),
        (400, "as_of"): httpx.post(url + "/v1/score_events", json={"accounts": []}),
        (400, None): httpx.post(
            url + "/score", content=b"{not json", headers={"content-type": "application/json"}
        ),
        (404, None): httpx.get(url + "/no/such/path"),
        (404, "account_id"): httpx.get(url + "/v1/accounts/no-such-account"),
        (405, None): httpx.get(url + "/v1/score"),
        (422, "limit"): httpx.get(url + "/v1/accounts", params={"limit": 0}),
    }
    raw = {
        408: _raw(
            server,
            b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"records"',
            wait=8,
        ),
        413: _raw(
            server,
            b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 999999999\r\n\r\n{",
            wait=8,
        ),
        431: _raw(server, b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100_000, wait=8),
        400: _raw(server, b"NOT HTTP AT ALL\r\n\r\n", wait=8),
    }
    # then each answers {"error": {"code", "message", "field"}}, its code the status's
    for (status, field), response in answers.items():
        assert response.status_code == status, (status, response.text)
        error = ErrorResponse.model_validate(response.json()).error
        assert error.code == CODES[status] and error.message, response.text
        if field is not None:
            assert field in (error.field or "") + error.message, (status, response.text)
    for status, answer in raw.items():
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status}".encode()), answer[:300]
        assert ErrorResponse.model_validate_json(body).error.code == CODES[status], answer[:300]


def test_ids_may_be_numbers_but_not_fractions_or_booleans(
    served: tuple[Server, Path], world_dir: Path
) -> None:
    # given a HubSpot-style numeric account id, and ids that are not ids
    server, _ = served
    # when records and raw tables are sent with them
    numeric = httpx.post(
        server.url + "/v1/score", json={"records": [{"account_id": 4821377, "events_30d": 3}]}
    )
    big = httpx.post(server.url + "/v1/explain", json={"records": [{"account_id": 2**70}]})
    fraction = httpx.post(server.url + "/v1/score", json={"records": [{"account_id": 1.5}]})
    boolean = httpx.post(server.url + "/v1/score", json={"records": [{"account_id": True}]})
    events = httpx.post(
        server.url + "/v1/score_events",
        json={
            "as_of": "2026-07-01T00:00:00Z",
            "accounts": [{"account_id": 77, "name": "Acme"}],
            "people": [{"person_id": 5, "account_id": 77}],
            "events": [{"timestamp": "2026-06-20", "event_type": "pricing_page", "person_id": 5}],
        },
        timeout=60,
    )
    # then a whole number is its decimal string; 1.5 and true are refused naming the field
    assert numeric.status_code == 200, numeric.text
    assert numeric.json()["results"][0]["account_id"] == "4821377"
    assert big.status_code == 200 and big.json()["results"][0]["account_id"] == str(2**70)
    assert events.status_code == 200, events.text
    assert events.json()["results"][0]["account_id"] == "77"
    assert events.json()["warnings"] == []  # the person and their event were used
    for refused, shown in ((fraction, "1.5"), (boolean, "true")):
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["field"] == "records.0.account_id" and shown in error["message"]


def test_a_record_with_too_few_features_is_flagged(
    served: tuple[Server, Path], world_features: Path
) -> None:
    # given a record with only its account id, one with a few features, and a full one
    server, _ = served
    full = _records(world_features, 1)[0]
    records = [{"account_id": "ONLY-ID"}, {"account_id": "FEW", "events_30d": 4}, full]
    # when they are scored and explained
    answers = [
        httpx.post(server.url + path, json={"records": records}, timeout=30)
        for path in ("/v1/score", "/v1/explain")
    ]
    # then the first two are flagged low_information, in their results and in the warnings,
    # and the full one is not
    for answer in answers:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert [r["low_information"] for r in body["results"]] == [True, True, False]
        assert body["results"][0]["known_features"] == 0
        flagged = [w["account_id"] for w in body["warnings"] if w["code"] == "low_information"]
        assert flagged == ["ONLY-ID", "FEW"]


def test_old_paths_are_aliases_of_v1(served: tuple[Server, Path]) -> None:
    # given a server
    server, _ = served
    record = {"records": [{"account_id": "A1", "events_30d": 4}]}
    # when the old paths are called as the /v1 ones
    old = httpx.post(server.url + "/score", json=record, timeout=30)
    new = httpx.post(server.url + "/v1/score", json=record, timeout=30)
    listed = httpx.get(server.url + "/accounts", params={"limit": 1}, timeout=30)
    # then they answer the same, saying they are deprecated and what replaces them
    assert old.status_code == new.status_code == 200
    assert old.json() == new.json()
    assert old.headers["deprecation"] == "true"
    assert old.headers["link"] == '</v1/score>; rel="successor-version"'
    assert listed.status_code == 200 and listed.headers["deprecation"] == "true"
    assert "deprecation" not in new.headers
