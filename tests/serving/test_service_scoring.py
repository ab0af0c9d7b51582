"""The scoring routes of a real server: /v1/score, /v1/explain and /v1/score_events."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from features.settings import DataSettings, FeatureSettings, FeatureSpec
from serving.batch import score_batch
from serving.published import Scoring
from tests.serving.server import CATEGORIES, Server, feature_records
from tests.stores import client_of
from tests.worlds import WORLD_SPEC
from training.job import TrainResult
from training.registry import load_model

pytestmark = pytest.mark.slow


def test_score_matches_the_model(
    served: tuple[Server, Path], world_features: Path, trained: tuple[Path, TrainResult]
) -> None:
    # given twenty accounts' latest features and the champion the server loaded
    server, _ = served
    records = feature_records(world_features, 20)
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
    record = feature_records(world_features, 1)[0]
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
    records = feature_records(world_features, 3)
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
    logged = server.log.stat().st_size
    response = httpx.post(server.url + "/v1/score", json=body, timeout=30)
    assert response.status_code == 400
    assert field in response.json()["error"]["message"]
    # a client's mistake is not logged as the server's (it was a 2 KB traceback each)
    assert "Traceback" not in server.log_after(logged)


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
    event = {"timestamp": "2025-05-01T00:00:00Z", "event_type": "demo_request", "account_id": "A1"}
    # the bounds /v1/score has, and the data contract's (each of these was scored; 50 events of
    # weight 1e308 moved a score from 93 to 97)
    beyond = {
        "huge-weight": (
            {**request, "events": [{**event, "weight": 1e308}] * 50},
            "events.0.weight",
        ),
        "weight-over-1000": ({**request, "events": [{**event, "weight": 1001}]}, "events.0.weight"),
        "negative-employees": (
            {**request, "accounts": [{"account_id": "A1", "employee_count": -5}]},
            "accounts.0.employee_count",
        ),
        "as-of-in-9999": ({**request, "as_of": "9999-12-31T00:00:00Z"}, "as_of"),
        "as-of-before-1990": ({**request, "as_of": "1970-01-01"}, "as_of"),
    }
    # when it is sent as is, and with each flaw
    good = httpx.post(server.url + "/v1/score_events", json=request, timeout=30)
    answers = {
        name: httpx.post(server.url + "/v1/score_events", json=body, timeout=30)
        for name, body in {**bad, **{k: body for k, (body, _) in beyond.items()}}.items()
    }
    # then only the valid one is scored; each flaw is a 400, naming the field
    assert good.status_code == 200, good.text
    assert {name: a.status_code for name, a in answers.items()} == dict.fromkeys(answers, 400)
    for name, (_, field) in beyond.items():
        assert answers[name].json()["error"]["field"] == field, answers[name].text


def test_an_error_names_a_long_field_without_echoing_it(served: tuple[Server, Path]) -> None:
    # given a record, and the request, with a field whose name is 10,000 characters long
    server, _ = served
    name = "x" * 10_000
    bodies = {
        "record": {"records": [{"account_id": "A1", name: 1}]},
        "request": {"records": [{"account_id": "A1"}], name: 1},
    }
    # when each is scored
    answers = {
        what: httpx.post(server.url + "/v1/score", json=body, timeout=30)
        for what, body in bodies.items()
    }
    # then each is a 400 naming the field by its start, in under 1 KB (the name came back whole)
    for what, answer in answers.items():
        assert answer.status_code == 400, (what, answer.text[:500])
        assert len(answer.content) < 1_000, (what, len(answer.content))
        assert "xxxxxxxxxx" in answer.json()["error"]["message"], (what, answer.text)


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
    records = feature_records(features[features["account_id"].isin(ids)], len(ids))
    scored = httpx.post(server.url + "/v1/score", json={"records": records}, timeout=30)
    explained = httpx.post(server.url + "/v1/explain", json={"records": records}, timeout=30)
    # then Spark agrees with the local batch everywhere, and every HTTP path with both
    assert spark["account_id"].tolist() == local["account_id"].tolist()
    np.testing.assert_allclose(spark["probability"], local["probability"], rtol=0, atol=1e-9)
    assert spark["score"].equals(local["score"]) and spark["reasons"].equals(local["reasons"])
    history, local_history = (_published(out).history for out in (spark_out, ranked))
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


def test_concurrent_requests_are_batched_and_answered_apart(
    served: tuple[Server, Path], world_features: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    # given forty accounts' latest features
    server, _ = served
    records = feature_records(world_features, 40)

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
    full = feature_records(world_features, 1)[0]
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


def _published(ranked: Path) -> Scoring:
    """The run published at ``ranked``, read through its manifest."""
    scoring = Scoring.read(ranked)
    assert scoring is not None
    return scoring
