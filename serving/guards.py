"""HTTP-level guards in front of every route: bounded request bodies sent in bounded time,
and the security headers on every response."""

from __future__ import annotations

import asyncio
from typing import Any

from serving.errors import send_error
from serving.settings import ServiceSettings

LOGIN_MAX_BYTES = 4096  # a form with one token field


class _Refused(Exception):
    """The body broke a limit; the middleware answers instead of the route."""


class BodyLimit:
    """ASGI middleware: a body larger than the limit is refused with 413 before it is read
    (from its Content-Length, or as soon as the bytes received pass the limit), and a body not
    fully sent within ``body_seconds`` of the request's start gets 408. Without it one
    unauthenticated 50 MB POST held the worker for 12 s and 2.5 GB (issue 15)."""

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
        limit = self.limit(str(scope.get("path", "")))
        declared = dict(scope.get("headers") or []).get(b"content-length")
        # (a Content-Length that is not a number never gets here: uvicorn's parser answers 400)
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            await send_error(send, 413, _too_large(limit), extra=_CLOSE)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        received = 0
        refusal: tuple[int, str] | None = None
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
                refusal = (408, f"the request body did not arrive within {self.seconds:g} s")
                raise _Refused from None
            received += len(message.get("body", b""))
            if received > limit:
                refusal = (413, _too_large(limit))
                raise _Refused
            body_done = message["type"] != "http.request" or not message.get("more_body")
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
            await send_error(send, *refusal, extra=_CLOSE)


def _too_large(limit: int) -> str:
    return (
        f"request body over {limit:,} bytes: send fewer records per request "
        "(the limit is INMARKET_MAX_BODY_MB)"
    )


_CLOSE = ((b"connection", b"close"),)


class SecurityHeaders:
    """ASGI middleware: every response says not to sniff types, frame the page, send referrers
    or cache (scores and account names are the user's data), and carries a content security
    policy that only allows this server's scripts and styles (the review page's and the API
    docs' Swagger UI alike)."""

    COMMON = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cache-control", b"no-store"),
    )
    POLICY = (
        b"default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        b"form-action 'self'; frame-ancestors 'none'"
    )

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [*self.COMMON, (b"content-security-policy", self.POLICY)]

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                given = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((n, v) for n, v in extra if n not in given),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)
