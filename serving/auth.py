"""Who may call the service: the API's bearer token, browsers' signed sign-ins, the admin
token, and a brake on guessing the token at ``/login``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from typing import Any

from serving.errors import send_error
from serving.page import COOKIE
from serving.settings import ServiceSettings


class Sessions:
    """Browsers' sign-ins: a cookie ``<expires>.<nonce>.<signature>`` signed with a key derived
    from the API token, never the token itself. It expires after ``hours``; changing the token
    ends every sign-in at once; it opens what the token opens, never ``/admin/*``. (A cookie
    lets its holder test guesses of the token offline: the token must be random, which its
    16-character minimum alone does not make it; the README says how to make one.)"""

    def __init__(self, token: str, hours: float) -> None:
        self.key = hmac.new(token.encode(), b"inmarket session v1", hashlib.sha256).digest()
        self.seconds = int(hours * 3600)

    def _signature(self, body: str) -> str:
        digest = hmac.new(self.key, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, now: float | None = None) -> str:
        body = f"{int((now or time.time()) + self.seconds)}.{secrets.token_urlsafe(12)}"
        return f"{body}.{self._signature(body)}"

    def valid(self, value: str, now: float | None = None) -> bool:
        expires, _, rest = value.partition(".")
        nonce, _, signature = rest.partition(".")
        if not (expires.isdigit() and nonce and signature):
            return False
        right = hmac.compare_digest(
            signature.encode(), self._signature(f"{expires}.{nonce}").encode()
        )
        return right and int(expires) > (now or time.time())


class LoginThrottle:
    """Wrong tokens at ``/login``: at most ``attempts`` per client a minute, and ``ceiling``
    from all clients together; beyond either, the form answers 429 until the oldest failure
    counted is a minute old. A client is the connection's address, or the address a trusted
    proxy forwards (INMARKET_TRUSTED_PROXIES): never a header the client chose. The ceiling lets
    many addresses together guess no faster either; reaching it stops new sign-ins (signed-in
    browsers and bearer tokens go on), so it is far above what users mistyping make. Kept per
    worker, in bounded memory (the least recent clients are forgotten first)."""

    WINDOW = 60.0
    CLIENTS = 10_000

    def __init__(self, attempts: int, ceiling: int) -> None:
        self.attempts = attempts
        self.ceiling = ceiling
        self.failures: OrderedDict[str, deque[float]] = OrderedDict()
        self.everyone: deque[float] = deque(maxlen=ceiling)

    def _wait(self, seen: deque[float] | None, limit: int, now: float) -> float:
        if seen is None or len(seen) < limit:
            return 0.0
        return max(seen[0] + self.WINDOW - now, 0.0)

    def wait(self, client: str, now: float | None = None) -> float:
        """Seconds ``client`` must wait before trying again (0: may try now)."""
        now = time.monotonic() if now is None else now
        mine = self._wait(self.failures.get(client), self.attempts, now)
        return max(mine, self._wait(self.everyone, self.ceiling, now))

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        seen = self.failures.pop(client, None) or deque(maxlen=self.attempts)
        seen.append(now)
        self.failures[client] = seen
        self.everyone.append(now)
        while len(self.failures) > self.CLIENTS:
            self.failures.popitem(last=False)


MAX_COOKIE_BYTES = 4096


def session_cookie(header: bytes) -> str | None:
    """The sign-in cookie's value in a Cookie header, found without ``http.cookies`` (its parser
    is quadratic on crafted input in Python before 3.11.10) and never in an oversized header."""
    if len(header) > MAX_COOKIE_BYTES:
        return None
    for part in header.decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value.strip().strip('"')
    return None


def _refuse(status: int, message: str, extra: tuple[tuple[bytes, bytes], ...] = ()) -> Any:
    async def respond(send: Any) -> None:
        await send_error(send, status, message, extra=extra)

    return respond


class BearerAuth:
    """ASGI middleware. With INMARKET_TOKEN set, every route but health and the login form needs
    ``Authorization: Bearer <token>`` or a browser's signed sign-in (``Sessions``); without
    them the API answers 401 and the page sends the browser to the login form. ``/admin/*``
    needs INMARKET_ADMIN_TOKEN as the bearer (off when it is not set). Without any token the
    service is open: ``inmarket serve`` then only listens on loopback."""

    OPEN = frozenset({"/livez", "/readyz", "/healthz", "/login"})
    PAGES = frozenset({"/", "/index.html"})
    ADMIN = "/admin/"
    UNAUTHORIZED = staticmethod(
        _refuse(
            401,
            "missing or wrong bearer token: send the header 'Authorization: Bearer "
            "<INMARKET_TOKEN>' (browsers: sign in at /login)",
            ((b"www-authenticate", b"Bearer"),),
        )
    )
    ADMIN_OFF = staticmethod(
        _refuse(
            403,
            "admin routes are off: start the server with INMARKET_ADMIN_TOKEN and send it as "
            "'Authorization: Bearer <INMARKET_ADMIN_TOKEN>'",
        )
    )
    NOT_ADMIN = staticmethod(
        _refuse(
            401,
            "/admin routes need 'Authorization: Bearer <INMARKET_ADMIN_TOKEN>' (not the API token, "
            "not a browser sign-in)",
            ((b"www-authenticate", b"Bearer"),),
        )
    )

    def __init__(self, app: Any, settings: ServiceSettings | None = None) -> None:
        self.app = app
        settings = settings or ServiceSettings.from_env()  # read when the server starts
        token = settings.token
        self.token = token.encode() if token else None
        self.admin = settings.admin_token.encode() if settings.admin_token else None
        self.sessions = Sessions(token, settings.session_hours) if token else None

    @staticmethod
    def _bearer(headers: dict[bytes, bytes], expected: bytes) -> bool:
        return hmac.compare_digest(headers.get(b"authorization", b""), b"Bearer " + expected)

    def _signed_in(self, headers: dict[bytes, bytes]) -> bool:
        assert self.sessions is not None
        cookie = session_cookie(headers.get(b"cookie", b""))
        return cookie is not None and self.sessions.valid(cookie)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":  # no route speaks it: refused before anything else
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        headers = dict(scope.get("headers") or [])
        if path.startswith(self.ADMIN) and (self.token or self.admin):
            if self.admin is None:
                await self.ADMIN_OFF(send)
            elif self._bearer(headers, self.admin):
                await self.app(scope, receive, send)
            else:
                await self.NOT_ADMIN(send)
            return
        if (
            self.token is None
            or path in self.OPEN
            or self._bearer(headers, self.token)
            or self._signed_in(headers)
        ):
            await self.app(scope, receive, send)
        elif path in self.PAGES and scope.get("method") == "GET":
            await send(
                {
                    "type": "http.response.start",
                    "status": 303,
                    "headers": [(b"location", b"/login")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
        else:
            await self.UNAUTHORIZED(send)
