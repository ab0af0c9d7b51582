"""HTTP-level guards in front of every route: bounded request bodies sent in bounded time, as
JSON, and the security headers on every response."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from serving.errors import send_error
from serving.settings import ServiceSettings

LOGIN_MAX_BYTES = 4096  # a form with one token field
# the sign-in form posts a form, as browsers do; every other body is JSON
FORMS = frozenset({"/login", "/logout"})
JSON = b"application/json"
WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})
log = logging.getLogger("inmarket.service")


class BodyRefused(Exception):
    """The body broke a limit: the middleware answers ``status`` instead of the route, which
    logs nothing of its own for it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BodyLimit:
    """ASGI middleware: a body larger than the limit is refused with 413 before it is read
    (from its Content-Length, or as soon as the bytes received pass the limit), and a body not
    fully sent within ``body_seconds`` of the request's start gets 408. Without it one
    unauthenticated 50 MB POST held the worker for 12 s and 2.5 GB (issue 15). A client that
    leaves before its body is in is refused too (400, to nobody), so no route sees it leave;
    each refusal is one line in the log, not a traceback."""

    def __init__(self, app: Any, settings: ServiceSettings | None = None) -> None:
        self.app = app
        settings = settings or ServiceSettings.from_env()
        self.max_bytes = int(settings.max_body_mb * 1024 * 1024)
        self.seconds = settings.body_seconds

    def limit(self, path: str) -> int:
        return LOGIN_MAX_BYTES if path == "/login" else self.max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        limit = self.limit(path)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        # (a Content-Length that is not a number never gets here: uvicorn's parser answers 400)
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            await _refuse(send, scope, BodyRefused(413, _too_large(path, limit)))
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        received = 0
        refusal: BodyRefused | None = None
        started = False
        body_done = False

        async def bounded_receive() -> dict[str, Any]:
            nonlocal received, refusal, body_done
            if body_done:  # a response watching for the client to leave: no deadline
                message: dict[str, Any] = await receive()
                return message
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.001))
            except TimeoutError:
                seconds = f"the request body did not arrive within {self.seconds:g} s"
                refusal = BodyRefused(408, seconds)
                raise refusal from None
            received += len(message.get("body", b""))
            if received > limit:
                refusal = BodyRefused(413, _too_large(path, limit))
                raise refusal
            if message["type"] == "http.disconnect":  # an answer nobody reads, said once
                refusal = BodyRefused(400, "the client left before sending its whole body")
                raise refusal
            body_done = not message.get("more_body")
            return message

        async def watched_send(message: dict[str, Any]) -> None:
            nonlocal started
            if refusal is not None:
                return  # the route's own error answer for the broken body is not sent
            started = True
            await send(message)

        try:
            await self.app(scope, bounded_receive, watched_send)
        except Exception:
            if refusal is None:
                raise
        if refusal is not None and not started:
            await _refuse(send, scope, refusal)


def _where(scope: dict[str, Any]) -> str:
    return f"{scope.get('method')} {str(scope.get('path'))[:200]}"


async def _refuse(send: Any, scope: dict[str, Any], refusal: BodyRefused) -> None:
    log.info("%s refused (%d): %s", _where(scope), refusal.status, refusal.message)
    await send_error(send, refusal.status, refusal.message, extra=_CLOSE)


def _too_large(path: str, limit: int) -> str:
    if path == "/login":
        return f"the sign-in form is over {limit // 1024} KB: send the token field alone"
    return (
        f"request body over {limit:,} bytes: send fewer records per request "
        "(the limit is INMARKET_MAX_BODY_MB)"
    )


_CLOSE = ((b"connection", b"close"),)


class JsonBodies:
    """ASGI middleware: a request body (or a declared type) other than ``application/json`` is
    refused with 415 before any route reads it. Browsers send text/plain, form and multipart
    bodies to another site without asking it first, so without this a page elsewhere could
    make a signed-in browser post to the API (a text/plain POST was scored), with its cookie's
    SameSite as the only guard. The sign-in form (``FORMS``) posts its form."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") not in WITH_BODY
            or scope.get("path") in FORMS
            or _is_json(scope)
        ):
            await self.app(scope, receive, send)
            return
        await send_error(
            send,
            415,
            "send the body as JSON, with the header 'Content-Type: application/json'",
        )


def _is_json(scope: dict[str, Any]) -> bool:
    """Whether a request has no body (whatever type it declares), or declares a JSON one."""
    headers = dict(scope.get("headers") or [])
    length = headers.get(b"content-length", b"").strip()
    if b"transfer-encoding" not in headers and length in (b"", b"0"):
        return True
    return headers.get(b"content-type", b"").split(b";")[0].strip().lower() == JSON


class SecurityHeaders:
    """ASGI middleware: every response says not to sniff types, frame the page, send referrers
    or cache (scores and account names are the user's data), and carries a content security
    policy that only allows this server's scripts and styles (the review page's and the API
    docs' Swagger UI alike)."""

    POLICY = (
        b"default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        b"form-action 'self'; frame-ancestors 'none'"
    )
    HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cache-control", b"no-store"),
        (b"content-security-policy", POLICY),
    )

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                given = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((n, v) for n, v in self.HEADERS if n not in given),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)
