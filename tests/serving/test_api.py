"""The API's contract on its own: the OpenAPI document, OpenAPI 3.0's dialect, old paths,
ids, the low-information rule and the error shape (the same on a real server:
tests/serving/test_service_api.py and test_service_scoring.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import ValidationError

from serving import api
from serving.errors import ErrorShape, from_validation
from serving.schemas import AccountIn, EventIn, record_notices


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (
            {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
            {"type": "string", "nullable": True, "default": None},
        ),
        (
            {"anyOf": [{"$ref": "#/x"}, {"type": "null"}]},
            {"allOf": [{"$ref": "#/x"}], "nullable": True},
        ),
        (
            {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "null"}]},
            {
                "anyOf": [
                    {"type": "number", "nullable": True},
                    {"type": "string", "nullable": True},
                ],
                "nullable": True,
            },
        ),
        ({"const": "won"}, {"enum": ["won"]}),
        ({"exclusiveMinimum": 0}, {"minimum": 0, "exclusiveMinimum": True}),
        ({"examples": [1, 2]}, {"example": 1}),
        ({"$ref": "#/x", "description": "d"}, {"allOf": [{"$ref": "#/x"}], "description": "d"}),
        (
            {"properties": {"a": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}},
            {"properties": {"a": {"type": "integer", "nullable": True}}},
        ),
    ],
    ids=[
        "nullable",
        "nullable-ref",
        "nullable-union",
        "const",
        "exclusive",
        "examples",
        "ref-siblings",
        "nested",
    ],
)
def test_schemas_are_put_in_openapi_3_0s_dialect(
    schema: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert api._schema30(schema) == expected


def test_the_document_is_valid_openapi_without_a_server() -> None:
    from openapi_spec_validator import validate

    from serving.service import InMarketService, app

    document = api.openapi_document(InMarketService, app, None)
    validate(document)  # type: ignore[arg-type]
    assert document["openapi"] == "3.0.3"
    assert all(
        p.startswith(("/v1/", "/admin/")) or p in ("/livez", "/readyz", "/metrics")
        for p in document["paths"]
    )
    # every operation documents its refusals in the one shape
    for item in document["paths"].values():
        for operation in item.values():
            assert "default" in operation["responses"], operation["operationId"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/score", "/v1/score"),
        ("/score_events", "/v1/score_events"),
        ("/accounts.csv", "/v1/accounts.csv"),
        ("/accounts/A-1", "/v1/accounts/A-1"),
        ("/v1/score", None),
        ("/admin/reload", None),
        ("/scores", None),
        ("/", None),
    ],
)
def test_old_paths_stand_for_their_v1_routes(path: str, expected: str | None) -> None:
    assert api.versioned(path) == expected


def test_ids_are_text_or_whole_numbers() -> None:
    assert AccountIn.model_validate({"account_id": 4821377}).account_id == "4821377"
    assert AccountIn.model_validate({"account_id": "0017A"}).account_id == "0017A"
    assert (
        EventIn.model_validate(
            {"timestamp": "2026-01-01", "event_type": "x", "person_id": 7}
        ).person_id
        == "7"
    )
    for bad, shown in ((1.5, "1.5"), (True, "true"), ("", "at least 1")):
        with pytest.raises(ValidationError, match=shown):
            AccountIn.model_validate({"account_id": bad})


@pytest.mark.parametrize(("missing", "low"), [(10, True), (6, True), (5, False), (0, False)])
def test_a_record_giving_fewer_than_half_the_features_is_low_information(
    missing: int, low: bool
) -> None:
    known, flagged, notices = record_notices("A", [f"f{i}" for i in range(missing)], {}, 10)
    assert known == 10 - missing and flagged is low
    assert [n.code for n in notices] == (["low_information"] if low else [])


def test_validation_errors_name_their_field() -> None:
    message, field = from_validation(
        [
            {"loc": ("body", "records", 0, "events_30d"), "msg": "Input should be a number"},
            {"loc": ("query", "limit"), "msg": "Value error, too big"},
        ]
    )
    assert field == "records.0.events_30d"
    assert message == "records.0.events_30d: Input should be a number; limit: too big"


def _through_shape(status: int, kind: bytes, body: bytes) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", kind)]}
        )
        await send({"type": "http.response.body", "body": body})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(ErrorShape(app)({"type": "http", "path": "/x"}, None, send))
    return sent


def test_an_error_of_another_shape_is_put_in_the_one_shape() -> None:
    # Starlette's plain-text 405, and BentoML's list of one error
    plain = _through_shape(405, b"text/plain", b"Method Not Allowed")
    listed = _through_shape(400, b"application/json", b'[{"error": "bad thing"}]')
    assert plain[0]["status"] == 405
    assert json.loads(plain[1]["body"]) == {
        "error": {"code": "method_not_allowed", "message": "Method Not Allowed", "field": None}
    }
    assert json.loads(listed[1]["body"])["error"]["message"] == "bad thing"
    # while the sign-in form's HTML and a success pass untouched
    for status, kind in ((401, b"text/html; charset=utf-8"), (200, b"application/json")):
        passed = _through_shape(status, kind, b"<p>as is</p>")
        assert passed[1]["body"] == b"<p>as is</p>"


def test_features_built_from_raw_rows_keep_the_records_bounds() -> None:
    from types import SimpleNamespace

    import pandas as pd

    from features.settings import FeatureSpec
    from serving.schemas import beyond_bounds

    # given a model of three features: a count, a share and a category
    model = SimpleNamespace(
        spec=FeatureSpec(),
        features=["events_30d", "anonymous_share_90d", "industry"],
        categories={"industry": ["retail"]},
    )

    def frame(events: float, share: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "account_id": ["A", "B"],
                "events_30d": [3.0, events],
                "anonymous_share_90d": [0.5, share],
                "industry": ["retail", None],
            }
        )

    # when the features built are within the bounds of their catalogue rows (or missing), or not
    within = beyond_bounds(frame(float("nan"), 1.0), model)  # type: ignore[arg-type]
    beyond = {
        "count-past-a-billion": beyond_bounds(frame(2e9, 0.1), model),  # type: ignore[arg-type]
        "fraction-of-a-count": beyond_bounds(frame(2.5, 0.1), model),  # type: ignore[arg-type]
        "share-above-one": beyond_bounds(frame(4, 1.5), model),  # type: ignore[arg-type]
    }
    # then only the others are said to be wrong, naming the feature and the account
    assert within is None
    assert beyond["count-past-a-billion"] is not None
    assert beyond["count-past-a-billion"].startswith("events_30d: the rows sent make it 2e+09")
    assert "'B'" in beyond["count-past-a-billion"]
    assert "whole numbers" in str(beyond["fraction-of-a-count"])
    assert str(beyond["share-above-one"]).startswith("anonymous_share_90d")


def test_an_error_never_echoes_a_long_name() -> None:
    message, field = from_validation(
        [{"loc": ("body", "records", 0, "x" * 10_000), "msg": "Extra inputs are not permitted"}]
    )
    assert field is not None and len(field) < 100 and field.startswith("records.0.xxx")
    assert len(message) < 200
