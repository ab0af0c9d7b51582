"""A real server's limits: large and slow bodies, slow headers, hostile requests."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from serving.guards import SecurityHeaders
from tests.serving.server import Server, send_raw, tree_rss_mb

pytestmark = pytest.mark.slow


# every route, a body of 50 MB: refused before it is read
BIG_BODY_ROUTES = ("/score", "/explain", "/score_events", "/admin/reload", "/login", "/accounts")


# a client in a process of its own (so the 50 MB it pushes does not slow the test's /livez
# calls): prints the status; chunked: no Content-Length
_SENDER = """
import sys, httpx
url, chunked = sys.argv[1], sys.argv[2] == "chunked"
body = (b" " * 1_000_000 for _ in range(50)) if chunked else b"{" + b" " * 50_000_000 + b"}"
try:
    print(httpx.post(url, content=body, headers={"content-type": "application/json"},
                     timeout=60).status_code)
except httpx.HTTPError:  # the server answered and closed before the client had sent it all
    print("closed")
"""


class Livez:
    """/livez asked every 20 ms: how many answers, how many not 200, over how long."""

    def __init__(self) -> None:
        self.answers = self.failed = 0
        self.seconds = 0.0

    def ask_until(self, client: httpx.Client, done: Callable[[], bool]) -> None:
        start = time.perf_counter()
        while not done():
            self.answers += 1
            self.failed += client.get("/livez").status_code != 200
            time.sleep(0.02)
        self.seconds += time.perf_counter() - start

    @property
    def rate(self) -> float:
        return self.answers / self.seconds


def test_a_50_mb_body_is_refused_while_livez_answers(served: tuple[Server, Path]) -> None:
    """No wall-clock threshold: how often /livez answers is compared with how often it answers
    the same client with nothing else going on, measured here first."""
    # given a server, its memory, and /livez asked for a second with nothing else going on
    server, _ = served
    memory = tree_rss_mb(server.process)
    idle, busy = Livez(), Livez()
    answers: dict[str, str] = {}
    cases = [(path, "whole") for path in BIG_BODY_ROUTES] + [("/score_events", "chunked")]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        start = time.perf_counter()
        idle.ask_until(client, lambda: time.perf_counter() - start > 1)
        # when 50 MB are posted to every route (and once without a Content-Length), while
        # /livez is asked as before
        for path, how in cases:
            sender = subprocess.Popen(
                [sys.executable, "-c", _SENDER, server.url + path, how],
                stdout=subprocess.PIPE,
                text=True,
            )
            busy.ask_until(client, lambda: sender.poll() is not None)  # noqa: B023
            answers[f"{path} {how}"] = sender.communicate()[0].strip()
    # and 50 MB are announced to every route with none of it sent
    announced = {
        path: send_raw(
            server,
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 50000000\r\n\r\n".encode(),
            wait=8,
        )[:12]
        for path in BIG_BODY_ROUTES
    }
    # then each is a 413 (the chunked one may see the connection closed after it), the
    # announced ones at once, before a byte of the body came: nothing was read
    whole = {case: status for case, status in answers.items() if case.endswith("whole")}
    assert whole == dict.fromkeys(whole, "413"), answers
    assert answers["/score_events chunked"] in ("413", "closed"), answers
    assert announced == dict.fromkeys(BIG_BODY_ROUTES, b"HTTP/1.1 413"), announced
    # and /livez answered every time, at least a quarter as often as when idle (it waited
    # 11.8 s), and the server holds none of it (one such body took 2.5 GB)
    assert busy.failed == 0 and busy.answers >= len(cases), vars(busy)
    assert busy.rate > idle.rate / 4, (vars(busy), vars(idle))
    assert tree_rss_mb(server.process) - memory < 100


def test_slow_clients_are_cut_off(served: tuple[Server, Path]) -> None:
    # given a server giving 2 s for headers and 3 s for a body
    server, _ = served
    # when one client sends half its headers, and another a tenth of the body it announced
    start = time.monotonic()
    half_headers = send_raw(server, b"GET /livez HTTP/1.1\r\nHost: x\r\n", wait=8)
    header_seconds = time.monotonic() - start
    start = time.monotonic()
    short_body = send_raw(
        server,
        b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"records"',
        wait=8,
    )
    body_seconds = time.monotonic() - start
    huge_headers = send_raw(
        server, b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100_000, wait=8
    )
    # then the first is closed and the second answered 408, each not before its deadline
    # (they were held for 75 s and 60 s: send_raw waits 8 s at most)
    assert half_headers == b"closed" and header_seconds > 1.5
    assert short_body.startswith(b"HTTP/1.1 408"), short_body[:200]
    assert body_seconds > 2.5
    # and 100 KB of headers never ended are refused with 431 (uvicorn took 20 MB)
    assert huge_headers.startswith(b"HTTP/1.1 431"), huge_headers[:200]


def test_a_header_block_over_64_kb_is_431_however_it_is_written(
    served: tuple[Server, Path],
) -> None:
    # given a server, and whole requests written at once: one header of 60 KB, 70 KB and
    # 100 KB, and 80 KB in 2,000 short headers
    server, _ = served
    blocks = {
        "60 KB": b"X-Pad: " + b"a" * 60_000 + b"\r\n",
        "70 KB": b"X-Pad: " + b"a" * 70_000 + b"\r\n",
        "100 KB": b"X-Pad: " + b"a" * 100_000 + b"\r\n",
        "2,000 headers": b"".join(b"X-Pad-%04d: %s\r\n" % (i, b"a" * 28) for i in range(2_000)),
    }
    # when each is sent in one write
    answers = {
        name: send_raw(server, b"GET /livez HTTP/1.1\r\nHost: x\r\n" + block + b"\r\n", wait=8)
        for name, block in blocks.items()
    }
    # then the one under 64 KB is served and the others are 431 (70 KB and 100 KB were
    # served), with the security headers and the error shape
    assert answers.pop("60 KB").startswith(b"HTTP/1.1 200")
    for name, answer in answers.items():
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431"), (name, answer[:300])
        lines = head.lower().split(b"\r\n")
        for header, value in SecurityHeaders.HEADERS:
            assert header + b": " + value.lower() in lines, (name, header, head)
        assert json.loads(body)["error"]["code"] == "headers_too_large", (name, body)


def _chunked(path: str, megabytes: int) -> bytes:
    """A request to ``path`` whose body comes in 1 MB chunks, without a Content-Length."""
    chunk = b"100000\r\n" + b" " * 0x100000 + b"\r\n"
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
        + chunk * megabytes
        + b"0\r\n\r\n"
    )


def test_a_refused_body_is_one_line_in_the_log(served: tuple[Server, Path]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    # given a server taking 3 s for a body and 16 MB at most
    server, _ = served
    logged = server.log.stat().st_size
    short = (
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        'Content-Length: 100\r\n\r\n{{"records"'
    )
    requests = {
        ("/v1/score", 408): short.format("/v1/score").encode(),
        ("/v1/explain", 408): short.format("/v1/explain").encode(),
        ("/v1/score", 413): _chunked("/v1/score", 17),
        ("/v1/explain", 413): _chunked("/v1/explain", 17),
    }
    # when a body stops short on /v1/score and /v1/explain, and one passes 16 MB mid-stream
    with ThreadPoolExecutor(len(requests)) as pool:
        list(pool.map(lambda data: send_raw(server, data, wait=8), requests.values()))
    # then each refusal is one line (each was a 25-40 line traceback)
    wanted = {f"POST {path} refused ({status})" for path, status in requests}
    log = server.log_when(logged, wanted)
    assert "Traceback" not in log, log[-3000:]
    assert {line: log.count(line) for line in wanted} == dict.fromkeys(wanted, 1), log[-3000:]


def test_the_sign_in_form_names_its_own_limit(served: tuple[Server, Path]) -> None:
    # when the sign-in form is sent with 5 KB
    server, _ = served
    form = {"content-type": "application/x-www-form-urlencoded"}
    answer = httpx.post(server.url + "/login", content=b"token=" + b"x" * 5000, headers=form)
    # then it is a 413 that names the form's limit, not the API's setting
    message = answer.json()["error"]["message"]
    assert answer.status_code == 413 and "4 KB" in message, message
    assert "INMARKET_MAX_BODY_MB" not in message


# what a probe sent that ended in a 5xx or a stall, and other hostile bodies
HOSTILE = [
    (
        "POST",
        "/login",
        {"content-type": "application/x-www-form-urlencoded"},
        "token=ĂŤ€😀".encode(),
    ),
    ("POST", "/login", {"content-type": "application/x-www-form-urlencoded"}, b"token=\xff\xfe"),
    (
        "POST",
        "/score",
        {"content-type": "application/json"},
        b'{"records": [{"account_id": "\\u0000"}]}',
    ),
    ("POST", "/score", {"content-type": "application/json"}, b"[" * 10_000),
    ("POST", "/score", {"content-type": "text/plain"}, b"account_id=1"),
    (
        "POST",
        "/score_events",
        {"content-type": "application/json"},
        b'{"as_of": "0001-01-01T00:00:00Z", "accounts": [{"account_id": " "}]}',
    ),
    (
        "POST",
        "/score_events",
        {"content-type": "application/json"},
        b'{"as_of": "9999-12-31T00:00:00Z", "accounts": [{"account_id": "A"}]}',
    ),
    ("GET", "/accounts/%00%ff", {}, b""),
    ("GET", "/accounts?limit=99999999999999999999", {}, b""),
    ("POST", "/admin/reload", {"content-type": "application/json"}, b'{"x": 1}'),
]


@pytest.mark.parametrize(("method", "path", "headers", "body"), HOSTILE)
def test_hostile_requests_never_give_a_5xx(
    served: tuple[Server, Path], method: str, path: str, headers: dict[str, str], body: bytes
) -> None:
    server, _ = served
    response = httpx.request(method, server.url + path, headers=headers, content=body, timeout=30)
    assert response.status_code < 500, response.text[:500]
