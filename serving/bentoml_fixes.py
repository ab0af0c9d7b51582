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
   A header block over 64 KB closes the connection with 431, however it was written (uvicorn
   took 20 MB; a block sent in one write was served); bytes that are not HTTP get uvicorn's 400
   in the error shape; both with the security headers.
5. Unknown top-level fields of a request were ignored: they are a 400 now.
6. Every 400 logged a 2 KB traceback at ERROR (a client's mistake, not the server's): a
   refusal now logs one line at INFO, a 503 one line at WARNING, a body the guards refused
   (408, 413, a client gone mid-body) nothing here (``serving.guards`` logs its line); other
   5xx keep their traceback.
9. uvicorn believes X-Forwarded-For from 127.0.0.1 by default, so any local client chose the
   address the login brake counts (6,658 guesses in 10 s with a new header each): only the
   proxies of INMARKET_TRUSTED_PROXIES are believed (none by default).

And two make BentoML's routes speak the API's contract (issue 16):

7. BentoML answered its APIs' errors in three shapes (a validation error's ``detail`` list, a
   4xx as ``[{"error": ...}]``, every 5xx, 503 included, as "An unexpected error"): they answer
   the one error shape (``serving.errors``) here, a 503 with its reason.
8. A batchable API answers each request with the list of its records' outputs; an API that
   answers an envelope turns that list into it (``answer_batches_as``).

And one makes readiness say why (issue 25):

10. ``/readyz`` answered an empty 200 or "Service is not ready because .__is_ready__() returns
    False": it answers the service's ``readiness()`` words, a 503 in the error shape until a
    model is loaded, a 200 after, naming what is served and what went wrong since (a tracking
    server that stopped answering: the loaded model is still served, so still ready).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, MutableMapping, Sequence
from http import HTTPStatus
from typing import Any

import uvicorn.config
from _bentoml_impl.server import app as bentoml_app
from bentoml._internal.server.http import instruments, traffic
from bentoml.exceptions import BentoMLException
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, Mount
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving.api import versioned
from serving.errors import error_body, from_validation, shortened
from serving.guards import BodyRefused, SecurityHeaders
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
                response = Response(
                    error_body(504, f"not able to process the request in {self.timeout} s"),
                    status_code=504,
                    media_type="application/json",
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
        path = versioned(scope["path"]) or scope["path"]  # an old path counts as its /v1 route
        template = route_template(routes, {**scope, "path": path}) or UNMATCHED
        await super().__call__({**scope, "path": template, self.PATH: scope["path"]}, receive, send)


class HeadersTooLarge(Exception):
    """Raised in a parser callback: the parser stops, uvicorn calls ``send_400_response``."""


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol with limits on each request's headers: a connection that has not
    sent them within INMARKET_HEADER_SECONDS of opening (or of its previous response) is
    closed, and a request whose header block passes MAX_HEADER_BYTES is answered 431 and
    closed. The block is counted as the parser reads it (the request target and each line
    ``name: value``), whatever the writes; bytes read while the block has not ended count
    too, so one endless line is cut off before it ends."""

    seconds: float | None = None
    _deadline: asyncio.TimerHandle | None = None
    _received = 0  # bytes read while this request's headers had not ended
    _header_bytes = 0  # this request's header block, as parsed

    def _arm(self) -> None:
        if HeaderDeadlineProtocol.seconds is None:
            HeaderDeadlineProtocol.seconds = ServiceSettings.from_env().header_seconds
        self._disarm()
        self._received = 0
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
        self._received += len(data)
        if self._received > MAX_HEADER_BYTES and not self.transport.is_closing():
            self._headers_too_large()

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            raise HeadersTooLarge

    def on_message_begin(self) -> None:
        self._header_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # name: value CRLF
        super().on_header(name, value)

    def _headers_too_large(self) -> None:
        self._disarm()
        self._refuse(431, f"request headers over {MAX_HEADER_BYTES:,} bytes")

    def _refuse(self, status: int, message: str) -> None:
        """Answer on the raw connection, before any app has the request, and close it."""
        body = error_body(status, message)
        reason = HTTPStatus(status).phrase.encode()
        security = b"".join(b"%s: %s\r\n" % pair for pair in SecurityHeaders.HEADERS)
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"%sconnection: close\r\n\r\n%s" % (status, reason, len(body), security, body)
        )
        self._close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that are not HTTP (or a header block the parser callbacks
        found too large), in the error shape."""
        if self._header_bytes > MAX_HEADER_BYTES:
            self._headers_too_large()
            return
        self._disarm()
        self._refuse(400, f"the request is not valid HTTP: {msg}")

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


class TrustedProxyHeaders(ProxyHeadersMiddleware):
    """uvicorn's X-Forwarded-For and X-Forwarded-Proto handling, believing only the proxies of
    INMARKET_TRUSTED_PROXIES (none by default), whatever uvicorn's configuration says."""

    def __init__(self, app: Any, trusted_hosts: list[str] | str = "") -> None:
        super().__init__(app, ServiceSettings.from_env().proxies())


_log_exception = bentoml_app.log_exception
log = logging.getLogger("inmarket.service")


def _log_refusal(request: Any, exc_info: Any = True) -> None:
    """A client's error in one line, a 503 in one line at WARNING; a body the guards refused
    (408, 413, a client gone mid-body) not here: ``serving.guards`` logs its line; anything
    else as BentoML logs it, with its traceback."""
    exc = sys.exc_info()[1]
    if isinstance(exc, BodyRefused):
        return
    if isinstance(exc, ValidationError):
        status = 400
        said = from_validation(exc.errors(include_context=False, include_input=False))[0]
    elif isinstance(exc, BentoMLException):
        status = exc.error_code.value
        said = str(exc)
    else:
        status, said = 500, ""
    if status >= 500 and status != HTTPStatus.SERVICE_UNAVAILABLE:
        _log_exception(request, exc_info)
        return
    first = shortened(said.splitlines()[0], 200) if said else type(exc).__name__
    level = logging.WARNING if status >= 500 else logging.INFO
    log.log(level, "%s %s refused (%d): %s", request.method, request.url.path, status, first)


async def _api_endpoint_wrapper(self: Any, name: str, request: Request) -> Response:
    """BentoML's ``api_endpoint_wrapper``, refusals in the error shape: a validation error names
    its field; a BentoML error keeps its status and message (a 503 says why); anything else is
    a 500 whose details stay in the server's log."""
    try:
        response = await self.api_endpoint(name, request)
    except ValidationError as exc:
        bentoml_app.log_exception(request)
        message, field = from_validation(exc.errors(include_context=False, include_input=False))
        response = Response(error_body(400, message, field), 400, media_type="application/json")
    except BentoMLException as exc:
        bentoml_app.log_exception(request)
        status = exc.error_code.value
        message = str(exc) if status < 500 or status == 503 else "internal error: see the log"
        response = Response(error_body(status, message), status, media_type="application/json")
    except Exception:
        bentoml_app.log_exception(request)
        response = Response(
            error_body(500, "internal error: see the server's log"),
            500,
            media_type="application/json",
        )
    self._add_response_headers(response)
    context = self.service.context
    if response.background is not None:
        context.response.background.tasks.append(response.background)
    context.response.background.add_task(request.close)  # as BentoML: after the response
    response.background = context.response.background
    del context.response.background  # as BentoML: no reference cycle through the context
    return response


async def _readyz(self: Any, request: Request) -> Response:
    """Ready once the service says so, in its words (``readiness()``)."""
    instance = self._service_instance
    if instance is None:
        ready, words = False, "starting"
    else:
        ready, words = instance.readiness()  # two attributes read: no thread needed
    if not ready:
        return Response(error_body(503, words), 503, media_type="application/json")
    return PlainTextResponse(f"{words}\n")


def answer_batches_as(service: Any, name: str, build: Callable[[list[Any]], BaseModel]) -> None:
    """Answer each request to the batchable API ``name`` with ``build(outputs)``, its records'
    outputs as BentoML split them from the batch, instead of the bare list."""

    async def to_http_response(obj: Any, serde: Any) -> Response:
        return JSONResponse(build(obj).model_dump(mode="json"))

    service.apis[name].output_spec.to_http_response = staticmethod(to_http_response)


def apply(service: Any) -> None:
    """Install the fixes for ``service`` (a ``@bentoml.service`` class)."""
    traffic.TimeoutMiddleware = CancellingTimeoutMiddleware  # type: ignore[misc]
    instruments.RunnerTrafficMetricsMiddleware = RouteTemplateMetrics  # type: ignore[misc,assignment]
    uvicorn.config.HTTP_PROTOCOLS["auto"] = f"{__name__}:HeaderDeadlineProtocol"
    uvicorn.config.ProxyHeadersMiddleware = TrustedProxyHeaders  # type: ignore[misc]
    bentoml_app.log_exception = _log_refusal
    bentoml_app.ServiceAppFactory.api_endpoint_wrapper = _api_endpoint_wrapper  # type: ignore[method-assign]
    bentoml_app.ServiceAppFactory.readyz = _readyz  # type: ignore[method-assign]
    for method in service.apis.values():
        if method.output_spec.media_type is None:
            method.output_spec.media_type = method.output_spec.mime_type()
        method.input_spec.model_config["extra"] = "forbid"
        method.input_spec.model_rebuild(force=True)
