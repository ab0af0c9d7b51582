"""The token check of a real server: API and admin tokens, the browser's signed sign-in."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from serving.page import COOKIE
from tests.serving.server import Server, send_raw

pytestmark = pytest.mark.slow


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


def _guarded(ranked: Path, **more: str) -> dict[str, str]:
    """The environment of a server on the served store and ranking, with the API token."""
    return {
        "INMARKET_STORE": str(ranked.parent / "mlruns"),
        "INMARKET_RANKED": str(ranked),
        "INMARKET_RELOAD_SECONDS": "0",
        "INMARKET_TOKEN": TOKEN,
        **more,
    }


def test_the_token_guards_every_route_but_health(
    served: tuple[Server, Path], tmp_path: Path
) -> None:
    # given a server on the served store and ranking, with an API token and an admin token
    _, ranked = served
    with Server(_guarded(ranked, INMARKET_ADMIN_TOKEN=ADMIN_TOKEN), tmp_path) as server:
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
    env = _guarded(ranked, INMARKET_ADMIN_TOKEN=ADMIN_TOKEN, INMARKET_SESSION_HOURS="2")
    with Server(env, tmp_path) as server:
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
        # when the signed-in browser posts a record as text/plain (what a page elsewhere can
        # make it send without asking), and says it came through https
        plain = httpx.post(
            server.url + "/v1/score",
            content=b'{"records": [{"account_id": "A1"}]}',
            headers={"content-type": "text/plain"},
            cookies=jar,
            timeout=30,
        )
        forwarded = httpx.post(
            server.url + "/login",
            data={"token": TOKEN},
            headers={"x-forwarded-proto": "https"},
            timeout=30,
        )
        # then the post is refused (it was scored) and no proxy is believed: the cookie is
        # not marked for https only
        assert (
            plain.status_code == 415 and plain.json()["error"]["code"] == "unsupported_media_type"
        )
        assert "secure" not in forwarded.headers["set-cookie"].lower()
        # when a client leaves in the middle of the sign-in form
        logged = server.log.stat().st_size
        send_raw(
            server,
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
            b"\r\nContent-Length: 100\r\n\r\ntoken=ab",
            wait=0.2,
        )
        # then the server logs one line (it was a traceback)
        line = "POST /login refused (400): the client left"
        log = server.log_when(logged, {line})
        assert log.count(line) == 1 and "Traceback" not in log, log[-3000:]
        # when a page of another site makes the browser post the sign-in form, even with the
        # right token (a stranger's page could spend the brake of every user)
        cross = httpx.post(
            server.url + "/login",
            data={"token": TOKEN},
            headers={"sec-fetch-site": "cross-site"},
            timeout=30,
        )
        # then it is refused, and counts for nothing below
        assert cross.status_code == 403 and COOKIE not in cross.cookies
        # when one client guesses 20 wrong tokens at once, each saying it is another client

        def guess(i: int) -> httpx.Response:
            return httpx.post(
                server.url + "/login",
                data={"token": f"guess-{i}"},
                headers={"x-forwarded-for": f"10.9.0.{i}"},
                timeout=30,
            )

        with ThreadPoolExecutor(20) as pool:
            guesses = list(pool.map(guess, range(20)))
        late_right = httpx.post(server.url + "/login", data={"token": TOKEN}, timeout=30)
        # then the header is not believed (6,658 guesses in 10 s got through with it) and
        # sending together gains nothing (all 20 were checked before any was counted): five
        # are refused as wrong, the others answered 429 with how long to wait, and so is the
        # right token until a minute has passed
        statuses = sorted(g.status_code for g in guesses)
        assert statuses == [401] * 5 + [429] * 15, statuses
        assert all(int(g.headers["retry-after"]) > 0 for g in guesses if g.status_code == 429)
        assert late_right.status_code == 429


def test_a_proxy_named_is_believed_and_all_clients_have_a_ceiling(
    served: tuple[Server, Path], tmp_path: Path
) -> None:
    # given a server behind a proxy on 127.0.0.1, taking 5 wrong tokens a minute per client
    # and 8 from all clients together
    _, ranked = served
    env = _guarded(ranked, INMARKET_TRUSTED_PROXIES="127.0.0.1", INMARKET_LOGIN_CEILING="8")
    with Server(env, tmp_path) as server:

        def sign_in(token: str, client: str, proto: str = "http") -> httpx.Response:
            return httpx.post(
                server.url + "/login",
                data={"token": token},
                headers={"x-forwarded-for": client, "x-forwarded-proto": proto},
                timeout=30,
            )

        # when a browser signs in through https, and clients behind the proxy guess: one six
        # times, then three others once each
        secure = sign_in(TOKEN, "10.0.0.1", "https")
        first = [sign_in(f"guess-{i}", "10.0.0.2") for i in range(6)]
        others = [sign_in("guess", f"10.0.1.{i}") for i in range(3)]
        # then the cookie is for https only; the proxy's word on who the client is counts:
        # the first guesser is braked after five, each other is a new client until eight
        # wrong tokens in all, then every client waits
        assert secure.status_code == 303 and "secure" in secure.headers["set-cookie"].lower()
        assert [g.status_code for g in first] == [401] * 5 + [429]
        assert [g.status_code for g in others] == [401] * 3
        assert sign_in("guess", "10.0.2.1").status_code == 429
        assert sign_in(TOKEN, "10.0.2.2").status_code == 429
