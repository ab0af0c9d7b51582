"""The API's one error shape. Every refusal, whoever makes it (our routes, BentoML, FastAPI,
the body guards, the token check), answers JSON of one form::

    {"error": {"code": "invalid_input",
               "message": "records.0.events_30d: Input should be a valid number",
               "field": "records.0.events_30d"}}

``code`` follows the status (``CODES``), ``message`` says what was wrong and what to do,
``field`` is the request field at fault (dotted path), or null. The browser's sign-in form is
the one exception: it answers its own HTML page to a browser.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

CODES: dict[int, str] = {
    400: "invalid_input",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_parameter",
    429: "too_many_requests",
    431: "headers_too_large",
    500: "internal_error",
    503: "unavailable",
    504: "timeout",
}
FALLBACK_CODE = "error"  # a status without a code of its own
# where a field's path starts in FastAPI's and pydantic's error locations: not part of it
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})


class ErrorDetail(BaseModel):
    code: str = Field(
        description="what kind of refusal, one per HTTP status",
        json_schema_extra={"enum": [*CODES.values(), FALLBACK_CODE]},
    )
    message: str = Field(description="what was wrong and what to do")
    field: str | None = Field(
        None, description="the request field at fault, as a dotted path (records.0.events_30d)"
    )


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx answer of the API."""

    error: ErrorDetail


def shortened(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters: an error names what a client sent, never echoes
    all of it (a 10,000-character field name came back whole, five times)."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def code_of(status: int) -> str:
    return CODES.get(status, FALLBACK_CODE)


def error_body(status: int, message: str, field: str | None = None) -> bytes:
    """The JSON bytes of one refusal."""
    detail = {"code": code_of(status), "message": message, "field": field}
    return json.dumps({"error": detail}).encode()


def error_headers(extra: Iterable[tuple[bytes, bytes]] = ()) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), *extra]


async def send_error(
    send: Any,
    status: int,
    message: str,
    field: str | None = None,
    extra: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Answer a refusal straight from an ASGI middleware."""
    body = error_body(status, message, field)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*error_headers(extra), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def field_path(location: Iterable[Any]) -> str:
    """``("body", "records", 0, "events_30d")`` -> ``records.0.events_30d``."""
    parts = [shortened(str(p)) for p in location]
    while parts and parts[0] in _LOCATIONS:
        parts = parts[1:]
    return ".".join(parts)


def from_validation(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str | None]:
    """(message, field) of pydantic's or FastAPI's validation errors: each error's field and
    what is wrong with it, the first error's field as ``field``."""
    if not errors:
        return "the request is not valid", None
    lines = []
    for error in errors[:3]:
        where = field_path(error.get("loc", ()))
        what = shortened(str(error.get("msg", "is not valid")).removeprefix("Value error, "), 500)
        lines.append(f"{where}: {what}" if where else what)
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    field = field_path(errors[0].get("loc", ())) or None
    return "; ".join(lines) + more, field


def is_shaped(body: bytes) -> bool:
    """Whether a response body already has the error shape."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return isinstance(error, dict) and {"code", "message"} <= error.keys()


def _message_of(body: bytes, status: int) -> str:
    """The text of an error body of another shape (BentoML's, Starlette's plain text)."""
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return shortened(text, 500) or f"HTTP {status}"
    if isinstance(parsed, list) and len(parsed) == 1:
        parsed = parsed[0]
    if isinstance(parsed, dict):
        for key in ("error", "detail", "message"):
            if isinstance(parsed.get(key), str):
                return str(parsed[key])
    return json.dumps(parsed)[:500]


class ErrorShape:
    """ASGI middleware, the net under every route: an error answer (4xx/5xx) of another shape
    (Starlette's plain-text 404 and 405 for paths and methods no route serves, anything BentoML
    answers by itself) is rewritten into the error shape. HTML answers (the sign-in form) and
    answers already in shape pass untouched; successful answers are never buffered."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] | None = None
        chunks: list[bytes] = []

        async def shaped(message: dict[str, Any]) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                kind = headers.get(b"content-type", b"")
                if message["status"] >= 400 and not kind.startswith(b"text/html"):
                    start = message
                    return
                await send(message)
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            status = start["status"]
            if not is_shaped(body):
                body = error_body(status, _message_of(body, status))
            kept = [
                (k, v)
                for k, v in start.get("headers") or []
                if k.lower() not in (b"content-type", b"content-length")
            ]
            await send(
                {
                    **start,
                    "headers": [
                        *error_headers(kept),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, shaped)
