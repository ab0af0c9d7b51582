"""Sign-ins, the login brake, the service's settings and the body limit, on their own (the
same guards on a real server: tests/serving/test_service_auth.py and test_service_limits.py)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from features.errors import ConfigError
from serving.auth import LoginThrottle, Sessions, session_cookie
from serving.guards import BodyLimit
from serving.page import COOKIE
from serving.settings import MAKE_A_TOKEN, ServiceSettings

TOKEN = "api-token-0123456789abcdef"


def test_a_sign_in_is_signed_expires_and_ends_with_the_token() -> None:
    # given sign-ins of two hours under a token
    sessions = Sessions(TOKEN, hours=2)
    cookie = sessions.issue(now=1_000_000)
    expires, nonce, signature = cookie.split(".")
    # then it holds until its expiry, not after; a changed expiry, a changed signature or
    # another token's key refuse it; the token is not in it
    assert TOKEN not in cookie and int(expires) == 1_000_000 + 7_200
    assert sessions.valid(cookie, now=1_000_000 + 7_199)
    assert not sessions.valid(cookie, now=1_000_000 + 7_200)
    assert not sessions.valid(f"{int(expires) + 1}.{nonce}.{signature}", now=1_000_000)
    assert not sessions.valid(f"{expires}.{nonce}.{signature[:-1]}x", now=1_000_000)
    assert not Sessions(TOKEN + "-rotated", hours=2).valid(cookie, now=1_000_000)
    assert not sessions.valid(TOKEN, now=1_000_000) and not sessions.valid("", now=1_000_000)


def test_the_login_brake_counts_per_client_and_all_clients_together() -> None:
    # given a brake of 3 wrong tokens a minute per client and 100 from all clients together
    throttle = LoginThrottle(attempts=3, ceiling=100)
    # when one client fails three times
    for second in (0, 1, 2):
        throttle.failed("10.0.0.1", now=second)
    # then it waits until its first failure is a minute old; another client does not
    assert throttle.wait("10.0.0.1", now=2) == pytest.approx(58)
    assert throttle.wait("10.0.0.1", now=60) == 0
    assert throttle.wait("10.0.0.2", now=2) == 0
    # when 96 other clients fail once each, a client that has not failed need not wait
    for i in range(96):
        throttle.failed(f"10.1.0.{i}", now=10)
    assert throttle.wait("10.0.0.9", now=10) == 0
    # when one more fails (100 in all), every client waits until the oldest is a minute old
    throttle.failed("10.2.0.1", now=11)
    assert throttle.wait("10.0.0.9", now=11) == pytest.approx(49)
    assert throttle.wait("10.0.0.9", now=60) == 0
    # and the memory of clients is bounded
    throttle.CLIENTS = 50
    throttle.failed("10.2.0.2", now=61)
    assert len(throttle.failures) == 50


def test_the_sign_in_cookie_is_found_without_the_quadratic_parser() -> None:
    import timeit

    # a plain header, quoted and among others; an oversized one is not parsed at all
    assert session_cookie(f"a=1; {COOKIE}=v.n.s; b=2".encode()) == "v.n.s"
    assert session_cookie(f'{COOKIE}="v.n.s"'.encode()) == "v.n.s"
    assert session_cookie(b"other=1") is None
    assert session_cookie(f"{COOKIE}=x; pad={'a' * 5000}".encode()) is None
    # 4 KB of backslashes (seconds for http.cookies before Python 3.11.10) takes no longer than
    # 4 KB of plain pairs, both timed here, the best of 20 runs of 50 each
    crafted = b'x="' + b"\\" * 2000 + b'"'
    plain = b"; ".join(b"k%d=v" % i for i in range(400))[: len(crafted)]

    def best(header: bytes) -> float:
        return min(timeit.repeat(lambda: session_cookie(header), number=50, repeat=20))

    assert best(crafted) < 5 * best(plain)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"INMARKET_TOKEN": ""}, "INMARKET_TOKEN is set but empty"),
        ({"INMARKET_TOKEN": "  "}, "INMARKET_TOKEN is set but empty"),
        ({"INMARKET_TOKEN": "s3cret"}, "INMARKET_TOKEN: has 6 characters, fewer than 16"),
        ({"INMARKET_ADMIN_TOKEN": "admin"}, "INMARKET_ADMIN_TOKEN: has 5 characters"),
        ({"INMARKET_TOKEN": " " * 15 + "x"}, "INMARKET_TOKEN: starts or ends with blank space"),
        ({"INMARKET_TOKEN": f" {TOKEN}"}, "INMARKET_TOKEN: starts or ends with blank space"),
        ({"INMARKET_TOKEN": f"{TOKEN}\t"}, "INMARKET_TOKEN: starts or ends with blank space"),
        ({"INMARKET_ADMIN_TOKEN": "ab" * 10}, "INMARKET_ADMIN_TOKEN: has 2 different characters"),
        ({"INMARKET_TOKEN": "0123456789" * 2}, None),
        ({"INMARKET_MAX_BODY_MB": "lots"}, "INMARKET_MAX_BODY_MB"),
        ({"INMARKET_TRUSTED_PROXIES": "*"}, "INMARKET_TRUSTED_PROXIES: value is not a valid"),
        ({"INMARKET_TRUSTED_PROXIES": "10.0.0.1/8"}, "INMARKET_TRUSTED_PROXIES"),
    ],
    ids=[
        "empty-token",
        "blank-token",
        "short-token",
        "short-admin-token",
        "15-spaces-and-an-x",
        "padded-token",
        "tab-ended-token",
        "two-letter-admin-token",
        "ten-different-characters",
        "bad-number",
        "any-proxy",
        "proxy-with-host-bits",
    ],
)
def test_the_service_refuses_to_start_on_a_weak_or_broken_setting(
    env: dict[str, str], message: str | None
) -> None:
    if message is None:  # (the weakest token that passes)
        assert ServiceSettings.from_env(env).token == env["INMARKET_TOKEN"]
        return
    with pytest.raises(ConfigError, match=re.escape(message)) as refused:
        ServiceSettings.from_env(env)
    # one line, and a token's refusal says how to make a good one
    assert "\n" not in str(refused.value)
    if "TOKEN" in message:
        assert MAKE_A_TOKEN in str(refused.value)


def test_forwarded_addresses_are_believed_only_from_the_proxies_named() -> None:
    # given the proxies named as the environment gives them, and none
    named = ServiceSettings.from_env({"INMARKET_TRUSTED_PROXIES": " 10.0.0.1, 10.2.0.0/16,::1"})
    # then uvicorn is given each as a network; by default, none
    assert named.proxies() == ["10.0.0.1/32", "10.2.0.0/16", "::1/128"]
    assert ServiceSettings.from_env({}).proxies() == []


def _through_limit(body: list[bytes], headers: list[tuple[bytes, bytes]]) -> list[Any]:
    """The messages a body-limited echo app sends for a request of ``body`` chunks."""
    sent: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        got = b""
        while True:
            message = await receive()
            got += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": got})

    chunks = iter(body)

    async def receive() -> dict[str, Any]:
        chunk = next(chunks, None)
        if chunk is None:
            await asyncio.sleep(10)  # a client that stops sending
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: Any) -> None:
        sent.append(message)

    settings = ServiceSettings(max_body_mb=1 / 1024, body_seconds=0.2)  # 1 KB
    scope = {"type": "http", "path": "/score", "method": "POST", "headers": headers}
    asyncio.run(BodyLimit(app, settings)(scope, receive, send))
    return sent


def test_bodies_over_the_limit_or_too_slow_are_refused() -> None:
    # a declared length over the limit: refused before reading; a body growing past it
    # without a length: refused when it does; a body that stops: 408 at the deadline
    declared = _through_limit([b"x" * 10], [(b"content-length", b"5000")])
    grown = _through_limit([b"x" * 600, b"x" * 600], [])
    stalled = _through_limit([b"x" * 10], [])
    assert declared[0]["status"] == 413 and len(declared) == 2
    assert grown[0]["status"] == 413 and len(grown) == 2
    assert stalled[0]["status"] == 408 and len(stalled) == 2
    # each in the one error shape
    for sent, code in ((declared, "body_too_large"), (stalled, "request_timeout")):
        assert json.loads(sent[1]["body"])["error"]["code"] == code


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({"INMARKET_TOKEN": ""}, [], "INMARKET_TOKEN is set but empty"),
        ({"INMARKET_TOKEN": "s3cret"}, [], "fewer than 16"),
        ({"INMARKET_TOKEN": " " * 15 + "x"}, [], MAKE_A_TOKEN),
        ({}, ["--host", "0.0.0.0"], "without INMARKET_TOKEN would serve every account"),
    ],
    ids=["empty-token", "short-token", "15-spaces-and-an-x", "open-to-the-network"],
)
def test_inmarket_serve_refuses_in_one_line(
    env: dict[str, str], args: list[str], message: str
) -> None:
    import os
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if not k.startswith("INMARKET_")}
    done = subprocess.run(
        [sys.executable, "-m", "inmarket.cli", "serve", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_the_token_check_refuses_in_the_one_error_shape() -> None:
    from serving.auth import BearerAuth

    # given a service with an API token and no admin token
    settings = ServiceSettings(token=TOKEN)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("let through")

    def call(path: str) -> list[Any]:
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {"type": "http", "path": path, "method": "POST", "headers": []}
        asyncio.run(BearerAuth(app, settings)(scope, None, send))
        return sent

    # when /v1/score is called without the token, and /admin/reload at all
    unauthorized, admin_off = call("/v1/score"), call("/admin/reload")
    # then both answer the error shape: 401 unauthorized, 403 forbidden
    assert unauthorized[0]["status"] == 401 and admin_off[0]["status"] == 403
    assert json.loads(unauthorized[1]["body"])["error"]["code"] == "unauthorized"
    error = json.loads(admin_off[1]["body"])["error"]
    assert error["code"] == "forbidden" and "INMARKET_ADMIN_TOKEN" in error["message"]
