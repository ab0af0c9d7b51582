"""Fixes to BentoML 1.4.39's (and uvicorn's) request path, applied when the service module is
imported.

The first two were found with ``bench/serve.py`` and py-spy on a loaded server (BENCHMARKS.md):

1. ``TimeoutMiddleware`` arms a ``loop.call_later(timeout, ...)`` timer for every request and
   never cancels it, so each request's future, context and tracing span stay alive for the
   whole traffic timeout (60 s). At 1,000 requests/s that is ~60,000 requests' objects in the
   oldest GC generation; every full collection walks them and stalls all requests in flight by
   50-200 ms. The replacement below is the same middleware with its timer cancelled when the
   request ends.
2. A route whose output is a list works out its media type from the output's JSON schema on
   every response (a quarter of a single-row request's CPU). Every route here answers JSON, so
   the media type is set once.

The others close what a probe without the token could do to the server (issue 15):

3. The traffic metrics label each request by its raw path, refusals included: 17,097 random
   ``/accounts/<id>`` paths grew the worker by 180 MB and ``/metrics`` to 35 MB (and showed which
   accounts users opened). They are labelled by route template here (``/accounts/{account_id}``;
   ``unmatched`` for paths no route serves).
4. uvicorn gives a connection unlimited time to send its request headers (900 half-sent
   requests were held for 75 s): here it has ``INMARKET_HEADER_SECONDS``.
   Headers over 64 KB close the connection with 431 (uvicorn took 20 MB).
5. Unknown top-level fields of a request were ignored: they are a 400 now.
6. Every 400 logged a 2 KB traceback at ERROR (a client's mistake, not the server's): a
   refusal now logs one line at INFO; 5xx keep their traceback.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import MutableMapping, Sequence
from typing import Any

import uvicorn.config
from _bentoml_impl.server import app as bentoml_app
from bentoml._internal.server.http import instruments, traffic
from bentoml.exceptions import BentoMLException
from pydantic import ValidationError
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match, Mount
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving.settings import ServiceSettings

UNMATCHED = "unmatched"
MAX_HEADER_BYTES = 64 * 1024


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


def route_template(routes: Sequence[BaseRoute], scope: MutableMapping[str, Any]) -> str | None:
    """The template of the route that serves ``scope`` (``/accounts/{account_id}``), looking
    into mounted apps and FastAPI's included routers; None when no route does."""
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        if isinstance(route, Mount):
            inner = getattr(route.app, "routes", None)
            if inner is None:  # static files
                return f"{route.path}/{{path}}"
            found = route_template(inner, {**scope, **child})
            if found is not None:
                return route.path + found
            continue
        candidates = getattr(route, "effective_candidates", None)  # an included router
        if candidates is not None:
            found = route_template(candidates(), scope)
            if found is not None:
                return found
            continue
        return str(getattr(route, "path", None) or UNMATCHED)
    return None


class RouteTemplateMetrics(instruments.RunnerTrafficMetricsMiddleware):
    """BentoML's traffic metrics, labelled by route template instead of raw path: bounded
    label sets whatever paths clients send."""

    PATH = "inmarket.path"

    def __init__(self, app: Any, **options: Any) -> None:
        async def with_real_path(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
            real = scope.pop(self.PATH, None)
            await app({**scope, "path": real} if real is not None else scope, receive, send)

        super().__init__(with_real_path, **options)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] == "/metrics":
            await super().__call__(scope, receive, send)
            return
        routes = getattr(scope.get("app"), "routes", ())
        template = route_template(routes, dict(scope)) or UNMATCHED
        await super().__call__({**scope, "path": template, self.PATH: scope["path"]}, receive, send)


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol with limits on each request's headers: a connection that has not
    sent them within INMARKET_HEADER_SECONDS of opening (or of its previous response) is
    closed, and so is one whose headers pass MAX_HEADER_BYTES (uvicorn takes any size)."""

    seconds: float | None = None
    _deadline: asyncio.TimerHandle | None = None
    _header_bytes = 0

    def _arm(self) -> None:
        if HeaderDeadlineProtocol.seconds is None:
            HeaderDeadlineProtocol.seconds = ServiceSettings.from_env().header_seconds
        self._disarm()
        self._header_bytes = 0
        self._deadline = self.loop.call_later(HeaderDeadlineProtocol.seconds, self._close)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        waiting = self._deadline is not None  # for this request's headers
        super().data_received(data)
        if not waiting or self._deadline is None:  # not waiting, or the headers ended here
            return
        self._header_bytes += len(data)
        if self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
            self._disarm()
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-length: 0\r\nconnection: close\r\n\r\n"
            )
            self._close()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # its headers are in: it needs no deadline
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


_log_exception = bentoml_app.log_exception
log = logging.getLogger("inmarket.service")


def _log_refusal(request: Any, exc_info: Any = True) -> None:
    """A client's error in one line; anything else as BentoML logs it, with its traceback."""
    exc = sys.exc_info()[1]
    if isinstance(exc, ValidationError):
        status = 400
    elif isinstance(exc, BentoMLException):
        status = exc.error_code.value
    else:
        status = 500
    if status >= 500:
        _log_exception(request, exc_info)
        return
    first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    log.info("%s %s refused (%d): %s", request.method, request.url.path, status, first)


def apply(service: Any) -> None:
    """Install the fixes for ``service`` (a ``@bentoml.service`` class)."""
    traffic.TimeoutMiddleware = CancellingTimeoutMiddleware  # type: ignore[misc]
    instruments.RunnerTrafficMetricsMiddleware = RouteTemplateMetrics  # type: ignore[misc,assignment]
    uvicorn.config.HTTP_PROTOCOLS["auto"] = f"{__name__}:HeaderDeadlineProtocol"
    bentoml_app.log_exception = _log_refusal
    for method in service.apis.values():
        if method.output_spec.media_type is None:
            method.output_spec.media_type = method.output_spec.mime_type()
        method.input_spec.model_config["extra"] = "forbid"
        method.input_spec.model_rebuild(force=True)
