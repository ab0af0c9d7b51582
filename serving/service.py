"""The BentoML service: scores, reasons and buying-group gaps over HTTP, and the review page.

Start it with ``inmarket serve`` or ``bentoml serve serving.service:InMarketService``; its
settings come from the environment when it starts (``serving.settings``). Requests and
responses are defined in ``serving.schemas``, the scoring routes' answers in
``serving.answers``, authentication in ``serving.auth``, the served model in
``serving.champion`` (and, in a Bento, ``serving.bento``).
"""

from __future__ import annotations

import functools
import gc
import hmac
import logging
import threading
import time
from typing import Any
from urllib.parse import parse_qs

import bentoml
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as Path_
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from mlflow.exceptions import MlflowException
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving import api, bentoml_fixes
from serving.answers import events_answer, explanations, scored_items
from serving.auth import BearerAuth, LoginThrottle, Sessions
from serving.bento import ChampionSnapshot, model_source
from serving.champion import ChampionHolder, Served
from serving.errors import ErrorShape, error_body, from_validation
from serving.export import Crm, crm_csv
from serving.guards import BodyLimit, JsonBodies, SecurityHeaders
from serving.page import COOKIE, PAGE_HTML, STATIC, login_page
from serving.published import Scoring, ScoringCache
from serving.report import card_in_words, comparison_table
from serving.review import (
    JSON_TEXT,
    SORTABLE,
    STAGE_CHOICES,
    ListQuery,
    contacts_to_reach,
    csv_text,
    export_name,
    ordered,
    records,
    select,
    summary,
)
from serving.schemas import (
    BATCH,
    MAX_RECORDS,
    SERVED_FEATURES,
    EventsRequest,
    EventsResponse,
    ExplainResponse,
    FeatureRecord,
    ModelInfo,
    ScoredItem,
    feature_rows,
    records_frame,
    score_envelope,
)
from serving.settings import ServiceSettings
from training.labels import label_words

log = logging.getLogger("inmarket.service")


_STAGES_HELP = f"any of {', '.join(STAGE_CHOICES)}; repeat it for several"


async def _list_query(
    stage: tuple[str, ...] | None = Query(None, description=_STAGES_HELP),
    industry: str | None = Query(None, max_length=100),
    region: str | None = Query(None, max_length=100),
    owner: str | None = Query(None, max_length=200, description="the account's owner"),
    min_score: int = Query(0, ge=0, le=100),
    q: str | None = Query(None, max_length=200, description="part of a name or domain"),
    new: bool = Query(
        False,
        description="only the accounts new this period: moved up into in-market or ready (from "
        "a lower stage, or from in-market to ready) since the previous scoring run",
    ),
    sort: str = Query("rank", max_length=40, description=f"one of {', '.join(SORTABLE)}"),
    order: str = Query("asc", pattern="^(asc|desc)$"),
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=1000),
) -> ListQuery:
    try:
        return ListQuery(
            stage or (),
            industry,
            region,
            owner,
            min_score,
            q,
            new,
            sort,
            order == "desc",
            offset,
            limit,
        )
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc


_LIST_QUERY = Depends(_list_query)
_CRM = Query(
    None,
    alias="format",
    description="salesforce or hubspot: the columns named as that CRM's import maps them "
    "(docs/alerts-and-exports.md); none: the list's own columns",
)


# the API's one OpenAPI document and its Swagger UI are serving.api's, not FastAPI's own
app = FastAPI(title="In-market", docs_url=None, redoc_url=None, openapi_url=None)
app.mount("/static", StaticFiles(directory=STATIC), name="static")
app.mount(api.DOCS_ASSETS, StaticFiles(directory=api.swagger_ui_folder()), name="swagger-ui")


@app.get(api.DOCS_PATH, response_class=HTMLResponse, include_in_schema=False)
def _docs() -> HTMLResponse:
    """The Swagger UI of the OpenAPI document, every asset served from here."""
    return HTMLResponse(api.DOCS_HTML)


@app.get(api.DOCS_SCRIPT, include_in_schema=False)
def _docs_script() -> Response:
    return Response(api.DOCS_JS, media_type="text/javascript")


@app.get(api.OPENAPI_PATH, include_in_schema=False)
def _openapi() -> JSONResponse:
    """The one OpenAPI document of the service, its feature record the served model's."""
    return JSONResponse(_document(SERVED_FEATURES.record))


@functools.lru_cache(maxsize=1)
def _document(record: type[BaseModel] | None) -> dict[str, Any]:
    """The document of one served record, made again when a reload brings another model."""
    return api.openapi_document(InMarketService, app, record)


@app.get("/docs.json", include_in_schema=False)
@app.get("/openapi.json", include_in_schema=False)
def _retired_document() -> RedirectResponse:
    return RedirectResponse(api.OPENAPI_PATH, status_code=308)


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    return Response(
        error_body(exc.status_code, str(exc.detail)),
        status_code=exc.status_code,
        media_type="application/json",
        headers=exc.headers,
    )


@app.exception_handler(RequestValidationError)
async def _invalid_parameter(request: Request, exc: RequestValidationError) -> Response:
    message, field = from_validation(exc.errors())
    return Response(error_body(422, message, field), 422, media_type="application/json")


_SNAPSHOT = ChampionSnapshot()


# loopback unless told otherwise (`bentoml serve --host`, `inmarket serve --host`); the labels
# name the model `bentoml build` snapshots
@bentoml.service(
    name="inmarket",
    traffic={"timeout": 60},
    http={"host": "127.0.0.1"},
    labels=_SNAPSHOT.labels,
)
@bentoml.asgi_app(app, path="/")
class InMarketService:
    """Scores B2B accounts from the engagement of their buying groups."""

    snapshot = _SNAPSHOT  # the model `bentoml build` packs into the Bento

    def __init__(self) -> None:
        # the service's own lines (a refusal in one line, a reload) show at INFO: BentoML sets
        # its own loggers to INFO and every other one to WARNING
        logging.getLogger("inmarket").setLevel(logging.INFO)
        self.settings = ServiceSettings.from_env()
        # the Bento being served, if any (BentoML sets it when it loads one)
        bento = InMarketService.bento  # type: ignore[attr-defined]
        self.holder = ChampionHolder(model_source(self.settings, bento))
        self.holder.refresh()
        self.scoring = ScoringCache(self.settings.ranked)
        self.scoring.get()  # read, and the account views built, before the first request
        self.won_deals: dict[str, dict[str, float] | None] = {}
        self.throttle = LoginThrottle(self.settings.login_attempts, self.settings.login_ceiling)
        token = self.settings.token
        self.sessions = Sessions(token, self.settings.session_hours) if token else None
        # Everything loaded so far (MLflow, pandas, the model) lives as long as the server:
        # moved out of the collector's sight, full collections stop pausing every request
        # in flight for ~200 ms every couple of seconds under load (bench/serve.py).
        gc.collect()
        gc.freeze()
        if self.settings.reload_seconds > 0 and not self.holder.source.fixed:
            threading.Thread(target=self._watch, daemon=True, name="champion-watch").start()

    def _watch(self) -> None:
        while True:
            time.sleep(self.settings.reload_seconds)
            self.holder.refresh()

    def __is_ready__(self) -> bool:
        return self.holder.served is not None

    def readiness(self) -> tuple[bool, str]:
        """What /readyz answers (``serving.bentoml_fixes``): ready once a model is loaded, and
        what is served and what went wrong since, in words."""
        return self.holder.readiness()

    def _served(self) -> Served:
        served = self.holder.served
        if served is None:
            raise bentoml.exceptions.ServiceUnavailable(
                f"no model loaded: {self.holder.error or 'starting'}"
            )
        return served

    def _model_info(self, served: Served) -> ModelInfo:
        info = served.model.info
        return ModelInfo(
            name=served.name,
            version=served.version,
            trained_at=info.get("trained_at"),
            fitted_until=info.get("fitted_until"),
            label=info.get("label"),
            horizon_days=info["horizon_days"],
        )

    # max_latency_ms is where BentoML starts shedding load (503); batches form well below it
    @bentoml.api(
        route=f"{api.V1}/score", batchable=True, max_batch_size=MAX_RECORDS, max_latency_ms=5000
    )
    def score(
        self,
        records: list[FeatureRecord] = BATCH,  # type: ignore[valid-type]
    ) -> list[ScoredItem]:
        """Probability, score 0-100 and stage for a batch of account feature records.

        Adaptive batching: concurrent requests are scored together and answered apart, each in
        its own envelope (``score_envelope``)."""
        served = self._served()
        return scored_items(served.model, self._model_info(served), records)

    @bentoml.api(route=f"{api.V1}/explain")
    def explain(
        self,
        records: list[FeatureRecord] = BATCH,  # type: ignore[valid-type]
    ) -> ExplainResponse:
        """Scores plus the top positive and negative reasons in words and the buying group."""
        served = self._served()
        rows, missing, unknown = feature_rows(records, served.model)
        results, notices = explanations(
            served.model, records_frame(rows, served.model), missing, unknown
        )
        return ExplainResponse(model=self._model_info(served), results=results, warnings=notices)

    @bentoml.api(route=f"{api.V1}/score_events")
    def score_events(self, request: EventsRequest, /) -> EventsResponse:
        """Scores and reasons computed from raw people and events, at ``as_of`` (the body is
        the request itself, not wrapped)."""
        served = self._served()
        return events_answer(served.model, self._model_info(served), request)

    @bentoml.api(route="/admin/reload")
    def reload(self) -> dict[str, Any]:
        """Check the champion alias now (guarded by the token when one is set)."""
        changed = self.holder.refresh()
        return {
            "reloaded": changed,
            "model_version": self.holder.version,
            "error": self.holder.error,
        }

    @app.get(f"{api.V1}/model")
    async def model_card(self) -> dict[str, Any]:
        """The served model: name, version, training metrics next to the MQL rule, features,
        and the drift figures of the latest batch scoring."""
        served = self.holder.served
        if served is None:  # (a FastAPI route: BentoML's 503 exception would be a 500 here)
            raise HTTPException(503, f"no model loaded: {self.holder.error or 'starting'}")
        if self.scoring.stale() or served.version not in self.won_deals:  # files, the store
            return await run_in_threadpool(self._card, served)
        return self._card(served)

    def _card(self, served: Served) -> dict[str, Any]:
        model = served.model
        scoring = self.scoring.get()
        card = {
            "name": served.name,
            "version": served.version,
            "alias": served.source.get("alias"),
            "source": served.source,  # a Bento's snapshot, a tracking server or the store
            "loaded_at": served.loaded_at.isoformat(),
            "trained_at": model.info.get("trained_at"),
            "label": model.info.get("label"),
            "label_text": label_words(model.info["label"], model.info["horizon_days"]),
            "horizon_days": model.info["horizon_days"],
            "test_metrics": model.info.get("test_metrics"),
            "mql_test_metrics": model.info.get("mql_test_metrics"),
            "test_intervals": model.info.get("test_intervals"),
            "mql_test_intervals": model.info.get("mql_test_intervals"),
            "confidence": model.info.get("confidence"),
            "evaluation": model.info.get("evaluation", "time_split"),
            "features": model.features,
            "feature_sources": model.info.get("feature_sources"),
            "feature_spec": model.spec.model_dump(mode="json"),
            "drift": scoring.drift if scoring else None,
            # the list and the page show a batch scoring, maybe by an earlier champion
            "scored_list": (
                {k: scoring.manifest.get(k) for k in ("model_version", "as_of", "written_at")}
                if scoring and scoring.manifest
                else None
            ),
            "won_deals": self._won_deals(served.version),
        }
        return {
            **card,
            "in_words": card_in_words(card),
            "comparison_table": comparison_table(model.info),
        }

    def _won_deals(self, version: str) -> dict[str, float] | None:
        """The served version's later-won deals found (``serving.report``), read once."""
        if version not in self.won_deals:
            source = self.holder.source
            try:
                found = source.won_deals(version)
            # the card is still useful without them (a tracking server may not answer)
            except (MlflowException, ConnectionError) as exc:
                log.warning("cannot read the training run of %s %s: %s", source.name, version, exc)
                found = None
            self.won_deals[version] = found
        return self.won_deals[version]

    async def _scoring_now(self) -> Scoring:
        """``_scoring`` for the routes run on the event loop: a new run is read in a thread
        (seconds at scale: health checks go on), the run read before is taken at once."""
        if self.scoring.stale():
            return await run_in_threadpool(self._scoring)
        return self._scoring()

    def _scoring(self) -> Scoring:
        scoring = self.scoring.get()
        if scoring is None and self.scoring.error:
            raise HTTPException(
                503,
                f"the batch scoring {self.scoring.error}: run `inmarket score` again",
            )
        if scoring is None:
            # the file's name only: a client has no business knowing the server's folders
            name = self.settings.ranked.name
            raise HTTPException(
                404,
                f"no batch scoring yet ({name}): run `inmarket score DATA --out {name}` where "
                "the service reads it (INMARKET_RANKED)",
            )
        return scoring

    # the page's rows are JSON text made here (serving.review.JSON_TEXT); documented as the
    # object it is
    @app.get(f"{api.V1}/accounts", response_model=dict[str, Any])
    async def ranked_accounts(self, query: ListQuery = _LIST_QUERY) -> Response:
        """Ranked accounts from the latest batch scoring (``inmarket score``): filtered by
        stage, industry, region, minimum score and a search of name or domain, sorted, paged."""
        scoring = await self._scoring_now()
        places = ordered(scoring.ranked, query)  # only the page's rows are taken
        page = scoring.ranked.iloc[places[query.offset : query.offset + query.limit]]
        answer = {
            "as_of": str(scoring.ranked["as_of"].max()),
            "total": len(places),
            "offset": query.offset,
            "limit": query.limit,
            "accounts": records(page),
        }
        return Response(JSON_TEXT.encode(answer), media_type="application/json")

    @app.get(f"{api.V1}/accounts.csv")
    def ranked_accounts_csv(
        self,
        query: ListQuery = _LIST_QUERY,
        crm: Crm | None = _CRM,
    ) -> Response:
        """Every account matching the filters (all pages), as CSV, in the list's order, with
        owner, status and the contacts to reach, or as a CRM's import file; the file is named
        after the filters."""
        scoring = self._scoring()
        rows = select(scoring.ranked, query)
        contacts = contacts_to_reach(rows, scoring.people, scoring.activity)
        name = export_name(query, str(scoring.ranked["as_of"].max()), crm)
        return Response(
            crm_csv(rows, contacts, crm) if crm else csv_text(rows, contacts),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{name}"'},
        )

    @app.get(f"{api.V1}/summary")
    async def scoring_summary(self, query: ListQuery = _LIST_QUERY) -> dict[str, Any]:
        """Stage counts of the accounts matching the other filters, filter choices and how
        many accounts worth working now have nobody at the MQL threshold (what the MQL rule
        would have missed)."""
        scoring = await self._scoring_now()
        return summary(scoring.ranked, query, scoring.choices)

    # the view is JSON text made from the run's account views (serving.account); documented as
    # the object it is
    @app.get(api.V1 + "/accounts/{account_id}", response_model=dict[str, Any])
    async def account(self, account_id: str = Path_(max_length=200)) -> Response:
        """One account: score history, weekly engagement by person and department (anonymous
        visits as such), reasons, buying roles engaged and missing, opportunities."""
        view = (await self._scoring_now()).views().answer(account_id)
        if view is None:
            raise HTTPException(404, f"account_id '{account_id}' is not in the ranked list")
        return Response(view, media_type="application/json")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(self) -> HTMLResponse:
        """The review page (everything it needs is served from /static)."""
        return HTMLResponse(PAGE_HTML)

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(self) -> HTMLResponse:
        return HTMLResponse(login_page())

    @app.post("/login", include_in_schema=False)
    async def login(self, request: Request) -> Response:
        """Trade the token for a signed, expiring sign-in cookie, so a browser can open the
        page; wrong tokens are throttled per client (the body is at most 4 KB: BodyLimit)."""
        token = self.settings.token
        if token is None or self.sessions is None:
            return RedirectResponse("/", status_code=303)
        if request.headers.get("sec-fetch-site") == "cross-site":  # a browser on another site
            return HTMLResponse(login_page("Sign in from this server's page."), status_code=403)
        # the body first: from the brake's check to counting a failure nothing awaits, so
        # guesses sent together are braked as if sent one after another
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        client = request.client.host if request.client else "unknown"
        wait = self.throttle.wait(client)
        if wait > 0:
            return HTMLResponse(
                login_page(f"Too many wrong tokens: try again in {int(wait) + 1} s."),
                status_code=429,
                headers={"retry-after": str(int(wait) + 1)},
            )
        given = (form.get("token") or [""])[0]
        if not hmac.compare_digest(given.encode(), token.encode()):
            self.throttle.failed(client)
            return HTMLResponse(login_page("That token is not the service's."), status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            self.sessions.issue(),
            max_age=self.sessions.seconds,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(self) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response


# the first added is the outermost: the headers go on every refusal too, and a body too large
# is refused before anyone reads it, token or not; every refusal inside has the error shape;
# a body that is not JSON is refused once the token is checked; old paths become /v1 paths
# after the token check has seen them as sent
InMarketService.add_asgi_middleware(SecurityHeaders)  # type: ignore[attr-defined]
InMarketService.add_asgi_middleware(ErrorShape)  # type: ignore[attr-defined]
InMarketService.add_asgi_middleware(BodyLimit)  # type: ignore[attr-defined]
InMarketService.add_asgi_middleware(BearerAuth)  # type: ignore[attr-defined]
InMarketService.add_asgi_middleware(JsonBodies)  # type: ignore[attr-defined]
InMarketService.add_asgi_middleware(api.Aliases)  # type: ignore[attr-defined]
bentoml_fixes.apply(InMarketService)
bentoml_fixes.answer_batches_as(InMarketService, "score", score_envelope)
