"""The public API's contract: its paths under ``/v1``, the old paths kept as aliases, and its
one OpenAPI document, served at ``/v1/openapi.json`` and shown by a Swagger UI at ``/docs``
whose assets come from the ``swagger-ui-bundle`` package (nothing from a CDN).

The document is OpenAPI 3.0.3 (the Swagger UI shipped in ``swagger-ui-bundle`` renders 3.0, not
3.1): pydantic's JSON Schema is turned into 3.0's dialect (``nullable``, boolean exclusive
bounds, one ``example``) by ``_schema30``.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from serving.errors import ErrorResponse
from serving.page import COOKIE
from serving.schemas import EventsResponse, ExplainResponse, ScoreResponse

V1 = "/v1"
OPENAPI_PATH = f"{V1}/openapi.json"
DOCS_PATH = "/docs"
DOCS_ASSETS = "/docs/ui"
DOCS_SCRIPT = "/docs/init.js"
# the documents of before, now redirected to OPENAPI_PATH
RETIRED_DOCUMENTS = ("/docs.json", "/openapi.json")
# old path -> its /v1 path; /accounts/<id> too. /admin/reload, health and the page stay as they
# are: they are not the versioned API.
ALIASED = (
    "/score",
    "/explain",
    "/score_events",
    "/model",
    "/accounts",
    "/accounts.csv",
    "/summary",
)
ALIASED_PREFIX = "/accounts/"
REF = "#/components/schemas/{model}"


def versioned(path: str) -> str | None:
    """The /v1 path an old path is an alias of; None for any other path."""
    if path in ALIASED or path.startswith(ALIASED_PREFIX):
        return V1 + path
    return None


class Aliases:
    """ASGI middleware: a request to an old path is served by its /v1 route, and its answer
    says so (``Deprecation: true`` and a ``Link`` to the successor). Innermost, so that the
    token check and the limits see the path the client sent."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        new = versioned(str(scope.get("path", ""))) if scope["type"] == "http" else None
        if new is None:
            await self.app(scope, receive, send)
            return
        # the path as sent, percent-encoded: a header never carries the decoded bytes
        raw = V1.encode() + (scope.get("raw_path") or quote(str(scope["path"])).encode())
        link = b"<" + raw + b'>; rel="successor-version"'

        async def marked(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"deprecation", b"true"),
                    (b"link", link),
                ]
            await send(message)

        await self.app({**scope, "path": new, "raw_path": raw}, receive, marked)


def swagger_ui_folder() -> Path:
    """Swagger UI's files, as the ``swagger-ui-bundle`` package installs them."""
    from swagger_ui_bundle import swagger_ui_path

    return Path(str(swagger_ui_path))


# The page and its start-up script are files of their own: the content security policy allows
# no inline script.
DOCS_HTML = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>In-market API</title>
<link rel="stylesheet" href="{DOCS_ASSETS}/swagger-ui.css">
<link rel="icon" type="image/png" href="{DOCS_ASSETS}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{DOCS_ASSETS}/swagger-ui-bundle.js"></script>
<script src="{DOCS_SCRIPT}"></script>
</body>
</html>
"""
DOCS_JS = f"""window.addEventListener("load", function () {{
  window.ui = SwaggerUIBundle({{
    url: "{OPENAPI_PATH}",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  }});
}});
"""

DESCRIPTION = f"""Scores B2B accounts as in-market from the engagement of their buying groups.

**Authentication.** With `INMARKET_TOKEN` set, every route but `/livez` and `/readyz` needs
`Authorization: Bearer <INMARKET_TOKEN>` (or the review page's sign-in cookie, `{COOKIE}`);
`/admin/*` needs `Authorization: Bearer <INMARKET_ADMIN_TOKEN>`. Without a token the service
is open and listens on loopback only.

**Answers.** `/v1/score`, `/v1/explain` and `/v1/score_events` answer one envelope:
`{{"model": {{name, version, trained_at, fitted_until, ...}}, "results": [...],
"warnings": [...]}}`. A record that gives fewer than half of the model's features is flagged
`low_information` (in its result and in `warnings`): its score rests mostly on missing values.

**Errors.** Every 4xx and 5xx answer is `{{"error": {{"code", "message", "field"}}}}`: 400
invalid_input (a request body), 401 unauthorized, 403 forbidden, 404 not_found, 405
method_not_allowed, 408 request_timeout, 413 body_too_large, 415 unsupported_media_type,
422 invalid_parameter (a query or path parameter), 429 too_many_requests, 431
headers_too_large (the connection is then closed), 503 unavailable (no model loaded yet),
504 timeout.

**New this period.** `/v1/accounts`, `/v1/accounts.csv` and `/v1/summary` take `new=true`: only
the accounts that moved up into in-market or ready (from a lower stage, or from in-market to
ready) since the previous scoring run. Each listed account carries `change` (`rose`, `fell` or
null), `stage_before` and `score_before`, as the scoring run saved them.

**Exports.** `/v1/accounts.csv` answers every account matching the filters as CSV;
`format=salesforce` or `format=hubspot` names the columns as that CRM's import maps them. A text
cell that a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, a tab or a
carriage return) is prefixed with a single quote.

**Ids** are text or whole numbers (a number is taken as its decimal string); `1.5` or `true`
are refused.

**Old paths.** `/score`, `/explain`, `/score_events`, `/model`, `/accounts`, `/accounts.csv`,
`/accounts/{{account_id}}` and `/summary` are aliases of their `/v1` routes (same contract,
answered with `Deprecation: true`); `/docs.json` and `/openapi.json` redirect here.
"""

_RECORD = {"account_id": "0017000000AbCdE", "people_engaged_30d": 6, "events_30d": 41}
_MODEL = {
    "name": "inmarket",
    "version": "3",
    "trained_at": "2026-07-02T09:14:00+00:00",
    "fitted_until": "2026-03-04T00:00:00+00:00",
    "label": "won",
    "horizon_days": 90,
}
_RESULT = {
    "account_id": "0017000000AbCdE",
    "probability": 0.081,
    "score": 93,
    "stage": "in-market",
    "missing_features": ["events_7d"],
    "unknown_categories": {},
    "known_features": 80,
    "low_information": False,
}
_LOW = {
    **_RESULT,
    "account_id": "4821377",
    "probability": 0.004,
    "score": 41,
    "stage": "aware",
    "known_features": 0,
    "low_information": True,
}
_LOW_NOTICE = {
    "code": "low_information",
    "account_id": "4821377",
    "message": "0 of the model's 81 features given (fewer than 50%): the score rests mostly on "
    "missing values; send more features (GET /v1/model lists them) or the raw tables to "
    "/v1/score_events",
    "field": None,
    "reason": None,
    "count": None,
}
_REASON = {
    "feature": "departments_engaged_30d",
    "value": 3,
    "contribution": 0.42,
    "text": "people from 3 departments engaged in the last 30 days",
}
_EXPLAINED = {
    **_RESULT,
    "positive": [_REASON],
    "negative": [],
    "roles_engaged": ["champion", "user"],
    "roles_missing": ["decision_maker", "influencer", "technical_evaluator", "finance"],
    "buying_group_gap": "no decision maker, technical evaluator or finance engaged yet",
}
EXAMPLES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "score": (
        {"records": [_RECORD, {"account_id": 4821377}]},
        {"model": _MODEL, "results": [_RESULT, _LOW], "warnings": [_LOW_NOTICE]},
    ),
    "explain": (
        {"records": [_RECORD]},
        {"model": _MODEL, "results": [_EXPLAINED], "warnings": []},
    ),
    "score_events": (
        {
            "as_of": "2026-07-01T00:00:00Z",
            "accounts": [{"account_id": 4821377, "name": "Acme", "industry": "software"}],
            "people": [{"person_id": "p1", "account_id": 4821377, "buying_role": "champion"}],
            "events": [
                {
                    "timestamp": "2026-06-20T10:00:00Z",
                    "event_type": "pricing_page",
                    "person_id": "p1",
                }
            ],
        },
        {
            "model": _MODEL,
            "results": [
                {
                    **_EXPLAINED,
                    "account_id": "4821377",
                    "status": "prospect",
                    "as_of": "2026-07-01 00:00:00+00:00",
                }
            ],
            "warnings": [],
        },
    ),
}
_ENVELOPES = {"score": ScoreResponse, "explain": ExplainResponse, "score_events": EventsResponse}
_SUMMARIES = {
    "score": "Score account feature records",
    "explain": "Score records and say why, in words, with the buying group",
    "score_events": "Score accounts from their raw people, events, intent and deals",
}
_ERROR = {"$ref": REF.format(model="ErrorResponse")}
_TEXT = {"text/plain": {"schema": {"type": "string"}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _errors(*statuses: int) -> dict[str, Any]:
    """The error answers an operation documents: the common ones, and any other as default."""
    said = {
        400: "the body is not valid: `field` names what",
        401: "no token, or the wrong one",
        404: "no such resource",
        408: "the body did not arrive in time",
        413: "the body is too large",
        415: "the body is not sent as application/json",
        422: "a query or path parameter is not valid: `field` names it",
        503: "no model loaded yet, or the batch scoring cannot be read",
    }
    answers = {str(s): _error(said[s]) for s in statuses}
    return {**answers, "default": _error("any other refusal, in the same shape")}


def _schema30(node: Any) -> Any:
    """A pydantic (JSON Schema 2020-12) schema in OpenAPI 3.0's dialect."""
    if isinstance(node, list):
        return [_schema30(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _schema30(v) for k, v in node.items()}
    for key in ("anyOf", "oneOf"):
        options = node.get(key)
        if not isinstance(options, list) or {"type": "null"} not in options:
            continue
        rest = [o for o in options if o != {"type": "null"}]
        del node[key]
        if len(rest) == 1 and "$ref" in rest[0]:
            node = {**node, "allOf": rest, "nullable": True}
        elif len(rest) == 1:
            node = {**node, **rest[0], "nullable": True}
        else:
            node = {**node, key: [{**o, "nullable": True} for o in rest], "nullable": True}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), int | float) and not isinstance(node[bound], bool):
            node[plain] = node[bound]
            node[bound] = True
    if isinstance(node.get("examples"), list):
        examples = node.pop("examples")
        if examples:
            node["example"] = examples[0]
    if "$ref" in node and len(node) > 1:
        node = {"allOf": [{"$ref": node.pop("$ref")}], **node}
    return node


def _components(model: Any, name: str, mode: str) -> dict[str, Any]:
    """A model's schema under ``name``, with the models it uses, as components."""
    schema = dict(model.model_json_schema(ref_template=REF, mode=mode))
    found = schema.pop("$defs", {})
    schema.pop("root_input", None)  # BentoML's mark of a body that is the model itself
    schema["title"] = name
    return {**found, name: schema}


def _api_operation(service: Any, name: str, schemas: dict[str, Any]) -> dict[str, Any]:
    """A BentoML API's operation, its request and envelope as components."""
    method = service.apis[name]
    title = "".join(part.title() for part in name.split("_"))
    envelope = _ENVELOPES[name]
    schemas.update(_components(method.input_spec, f"{title}Request", "validation"))
    schemas.update(_components(envelope, envelope.__name__, "serialization"))
    request, answer = EXAMPLES[name]
    return {
        "post": {
            "operationId": name,
            "summary": _SUMMARIES[name],
            "description": (method.doc or "").strip(),
            "tags": ["scoring"],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": REF.format(model=f"{title}Request")},
                        "example": request,
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "the envelope: the model, one result per account, warnings",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": REF.format(model=envelope.__name__)},
                            "example": answer,
                        }
                    },
                },
                **_errors(400, 401, 408, 413, 415, 503),
            },
        }
    }


def _operations(paths: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for item in paths.values() for op in item.values() if isinstance(op, dict)]


def _route_paths(paths: dict[str, Any]) -> dict[str, Any]:
    """The FastAPI routes under /v1, tagged, with the refusals they make."""
    for item in paths.values():
        for op in item.values():
            op["tags"] = ["accounts and model"]
            ok = op["responses"].get("200", {"description": "OK"})
            op["responses"] = {"200": ok, **_errors(401, 404, 422, 503)}
    csv = paths[f"{V1}/accounts.csv"]["get"]["responses"]["200"]
    csv["content"] = {"text/csv": {"schema": {"type": "string"}}}
    return paths


def _operations_paths() -> dict[str, Any]:
    """The operations' routes: the admin reload, health and metrics."""
    paths: dict[str, Any] = {
        "/admin/reload": {
            "post": {
                "operationId": "reload",
                "summary": "Check the champion alias now",
                "tags": ["operations"],
                "security": [{"admin": []}],
                "responses": {
                    "200": {
                        "description": "whether the model changed, the version now served",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "403": _error("admin routes are off: no INMARKET_ADMIN_TOKEN"),
                    **_errors(401),
                },
            }
        }
    }
    for path, summary in (
        ("/livez", "Alive: the process answers"),
        ("/readyz", "Ready: a model is loaded; the answer says which, and what failed since"),
    ):
        paths[path] = {
            "get": {
                "operationId": path.strip("/"),
                "summary": summary,
                "tags": ["operations"],
                "security": [],
                "responses": {
                    "200": {"description": "yes", "content": _TEXT},
                    "default": _error("no"),
                },
            }
        }
    paths["/metrics"] = {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics, labelled by route template",
            "tags": ["operations"],
            "responses": {"200": {"description": "metrics", "content": _TEXT}, **_errors(401)},
        }
    }
    return paths


_TAGS = (
    {"name": "scoring", "description": "scores, reasons and buying groups"},
    {"name": "accounts and model", "description": "the batch scoring and the model"},
    {"name": "operations", "description": "health, metrics, reloading the model"},
)
_SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "INMARKET_TOKEN (when the service was started with one)",
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": COOKIE,
        "description": "the review page's sign-in, from POST /login",
    },
    "admin": {
        "type": "http",
        "scheme": "bearer",
        "description": "INMARKET_ADMIN_TOKEN, for /admin/* only",
    },
}


def openapi_document(service: Any, app: FastAPI, record: type[BaseModel] | None) -> dict[str, Any]:
    """The one OpenAPI document of every public route: the BentoML APIs, the FastAPI routes
    under /v1, the admin reload and health. ``record`` is the served model's feature record
    (``serving.schemas.record_model``): its features and their bounds; none before a model is
    loaded."""
    base = get_openapi(
        title="In-market API",
        version=version("inmarket"),
        openapi_version="3.0.3",
        description=DESCRIPTION,
        routes=app.routes,
    )
    schemas: dict[str, Any] = {
        k: v
        for k, v in base.get("components", {}).get("schemas", {}).items()
        if k not in ("HTTPValidationError", "ValidationError")
    }
    schemas.update(_components(ErrorResponse, "ErrorResponse", "serialization"))
    paths: dict[str, Any] = {
        service.apis[name].route: _api_operation(service, name, schemas)
        for name in ("score", "explain", "score_events")
    }
    if record is not None:
        schemas.update(_components(record, "FeatureRecord", "validation"))
    paths.update(_route_paths(base["paths"]))
    paths.update(_operations_paths())
    for op in _operations(paths):
        for parameter in op.get("parameters", []):
            parameter["schema"] = _schema30(parameter["schema"])
        for part in [op.get("requestBody", {}), *op["responses"].values()]:
            for media in part.get("content", {}).values():
                if "schema" in media:
                    media["schema"] = _schema30(media["schema"])
    return {
        **base,
        "servers": [{"url": "/"}],
        "paths": paths,
        "security": [{"bearer": []}, {"session": []}],
        "tags": list(_TAGS),
        "components": {
            "schemas": {k: _schema30(v) for k, v in schemas.items()},
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }
