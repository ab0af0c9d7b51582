"""Bearer-token authentication for every route but health, metrics and the login form."""

from __future__ import annotations

import hmac
import json
from http.cookies import SimpleCookie
from typing import Any

from serving.page import COOKIE
from serving.settings import ServiceSettings


class BearerAuth:
    """ASGI middleware: with INMARKET_TOKEN set, every route but health, metrics and the login
    form needs ``Authorization: Bearer <token>`` or the cookie the login form sets; without
    them, the API answers 401 and the page sends the browser to the login form."""

    OPEN = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/login"})
    PAGES = frozenset({"/", "/index.html"})

    def __init__(self, app: Any) -> None:
        self.app = app
        token = ServiceSettings.from_env().token  # read when the server starts
        self.expected = token.encode() if token else None

    def _allowed(self, scope: dict[str, Any]) -> bool:
        assert self.expected is not None
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"")
        if hmac.compare_digest(given, b"Bearer " + self.expected):
            return True
        cookie = SimpleCookie(headers.get(b"cookie", b"").decode("latin-1")).get(COOKIE)
        return cookie is not None and hmac.compare_digest(cookie.value.encode(), self.expected)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            self.expected is None
            or scope["type"] != "http"
            or scope.get("path", "") in self.OPEN
            or self._allowed(scope)
        ):
            await self.app(scope, receive, send)
            return
        if scope.get("path") in self.PAGES and scope.get("method") == "GET":
            await send(
                {
                    "type": "http.response.start",
                    "status": 303,
                    "headers": [(b"location", b"/login")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        body = json.dumps(
            {
                "error": "missing or wrong bearer token: send the header "
                "'Authorization: Bearer <INMARKET_TOKEN>' (browsers: sign in at /login)"
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    """ASGI middleware: every response says not to sniff types, frame the page, send referrers
    or cache (scores and account names are the user's data); the page's own routes also get a
    content security policy that only allows this server's scripts and styles."""

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
    # BentoML's own API docs load their assets their own way; the policy is left off them
    UNPOLICED = ("/docs", "/static_content")

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(self.COMMON)
        if not str(scope.get("path", "")).startswith(self.UNPOLICED):
            extra.append((b"content-security-policy", self.POLICY))

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                given = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((n, v) for n, v in extra if n not in given),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)
