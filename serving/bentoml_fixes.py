"""Two fixes to BentoML 1.4.39's request path, applied when the service module is imported.

Both were found with ``bench/serve.py`` and py-spy on a loaded server (BENCHMARKS.md):

1. ``TimeoutMiddleware`` arms a ``loop.call_later(timeout, ...)`` timer for every request and
   never cancels it, so each request's future, context and tracing span stay alive for the
   whole traffic timeout (60 s). At 1,000 requests/s that is ~60,000 requests' objects in the
   oldest GC generation; every full collection walks them and stalls all requests in flight by
   50-200 ms. The replacement below is the same middleware with its timer cancelled when the
   request ends.
2. A route whose output is a list works out its media type from the output's JSON schema on
   every response (a quarter of a single-row request's CPU). Every route here answers JSON, so
   the media type is set once.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

from bentoml._internal.server.http import traffic
from starlette.responses import JSONResponse


class CancellingTimeoutMiddleware(traffic.TimeoutMiddleware):
    """BentoML's request timeout (504 when no response started in time), timer cancelled."""

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message: MutableMapping[str, Any]) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        handler = asyncio.ensure_future(self.app(scope, receive, _send))
        try:
            await waiter
        except TimeoutError:
            if handler.cancel():
                response = JSONResponse(
                    {"error": f"Not able to process the request in {self.timeout} seconds"},
                    status_code=504,
                )
                await response(scope, receive, send)
        else:
            await handler
        finally:
            timer.cancel()


def apply(service: Any) -> None:
    """Install both fixes for ``service`` (a ``@bentoml.service`` class)."""
    traffic.TimeoutMiddleware = CancellingTimeoutMiddleware  # type: ignore[misc]
    for method in service.apis.values():
        if method.output_spec.media_type is None:
            method.output_spec.media_type = method.output_spec.mime_type()
