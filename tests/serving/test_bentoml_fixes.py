"""BentoML request-path fixes (serving/bentoml_fixes.py), on their own."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from serving.bentoml_fixes import CancellingTimeoutMiddleware


async def _call(app: Any, timeout: float) -> tuple[list[dict[str, Any]], list[asyncio.TimerHandle]]:
    loop = asyncio.get_running_loop()
    timers: list[asyncio.TimerHandle] = []
    call_later = loop.call_later

    def recording(delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        timers.append(call_later(delay, callback, *args))
        return timers[-1]

    loop.call_later = recording  # type: ignore[method-assign, assignment]
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    await CancellingTimeoutMiddleware(app, timeout=timeout)({"type": "http"}, receive, send)
    return sent, timers


def test_the_timer_is_cancelled_when_the_request_ends() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    sent, timers = asyncio.run(_call(app, timeout=60))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert len(timers) == 1 and timers[0].cancelled()


def test_a_slow_request_still_gets_a_504() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(5)

    sent, _ = asyncio.run(_call(app, timeout=0.05))
    assert sent[0]["status"] == 504
    assert json.loads(sent[1]["body"])["error"] == {
        "code": "timeout",
        "message": "not able to process the request in 0.05 s",
        "field": None,
    }


def test_every_route_states_its_media_type_once() -> None:
    from serving.service import InMarketService

    for method in InMarketService.apis.values():  # type: ignore[attr-defined]
        assert method.output_spec.media_type == "application/json"


def test_metrics_are_labelled_by_route_template() -> None:
    from serving.bentoml_fixes import route_template
    from serving.service import InMarketService

    # given the served app's routes
    routes = InMarketService.to_asgi(is_main=True).routes  # type: ignore[attr-defined]
    paths = {
        "/v1/accounts/ACME-1": "/v1/accounts/{account_id}",
        "/v1/accounts/%2E%2E": "/v1/accounts/{account_id}",
        "/v1/accounts": "/v1/accounts",
        "/v1/model": "/v1/model",
        "/v1/score": "/v1/score",
        "/docs/ui/swagger-ui.css": "/docs/ui/{path}",
        "/static/app.js": "/static/{path}",
        "/no/such/path": None,
    }
    # when each path is matched, then its label is its route's template (never the path)
    for path, template in paths.items():
        scope = {"type": "http", "path": path, "root_path": "", "method": "GET", "headers": []}
        assert route_template(routes, scope) == template, path
