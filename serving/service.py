"""The BentoML service: scores, reasons and buying-group gaps over HTTP (DESIGN §7).

Start it with ``inmarket serve`` or ``bentoml serve serving.service:InMarketService``. Settings
come from the environment when the service starts (not at import):

| variable | meaning | default |
|---|---|---|
| INMARKET_STORE | MLflow store folder | mlruns |
| INMARKET_TRACKING_URI | tracking URI (overrides the store) | sqlite under the store |
| INMARKET_MODEL_NAME | registered model served as ``@champion`` | inmarket |
| INMARKET_RANKED | ranked accounts written by ``inmarket score`` | data/ranked.parquet |
| INMARKET_TOKEN | bearer token guarding every route but health and metrics | none |
| INMARKET_RELOAD_SECONDS | how often the champion alias is checked | 30 |
"""

from __future__ import annotations

import gc
import hmac
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import bentoml
import numpy as np
import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as Path_
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, create_model

from features.families import FIT_CATEGORIES, FeatureConfig, build_features, catalogue
from features.tables import ContractError, Dataset, RawSource, empty_table, validate
from serving import bentoml_fixes
from serving.page import COOKIE, PAGE_HTML, STATIC, login_page
from serving.review import (
    SORTABLE,
    ListQuery,
    Scoring,
    ScoringCache,
    account_view,
    csv_text,
    records,
    select,
    summary,
)
from serving.scoring import buying_group, explain_rows, score_and_stage, score_rows
from training.model import InMarketModel

log = logging.getLogger("inmarket.service")
MAX_RECORDS = 1000
_BATCH = Field(min_length=1, max_length=MAX_RECORDS, description="account feature records")
FEATURES = [f.name for f in catalogue()]
_NUMERIC = [f for f in FEATURES if f not in FIT_CATEGORIES]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


FeatureRecord = create_model(  # type: ignore[call-overload]
    "FeatureRecord",
    __base__=_Strict,
    account_id=(str, Field(min_length=1, max_length=200, description="the account's id")),
    **{
        name: (
            (str | None) if name in FIT_CATEGORIES else (float | None),
            Field(None, description=f.description),
        )
        for f in catalogue()
        for name in [f.name]
    },
)


class ScoredAccount(BaseModel):
    account_id: str
    probability: float
    score: int = Field(description="0-100: percentile among the model's test-window accounts")
    stage: str = Field(description="cold, aware, engaged, in-market or ready")
    missing_features: list[str] = Field(
        description="features absent from the request, treated as missing"
    )


class ScoredRecord(ScoredAccount):
    model_name: str
    model_version: str


class Reason(BaseModel):
    feature: str
    value: float | str | None
    contribution: float
    text: str


class Explanation(ScoredAccount):
    positive: list[Reason]
    negative: list[Reason]
    roles_engaged: list[str]
    roles_missing: list[str]
    buying_group_gap: str


class ExplainResponse(BaseModel):
    model_name: str
    model_version: str
    accounts: list[Explanation]


class AccountIn(_Strict):
    account_id: str = Field(min_length=1, max_length=200)
    name: str | None = None
    domain: str | None = None
    industry: str | None = None
    employee_count: float | None = None
    employee_band: str | None = None
    region: str | None = None
    created_at: datetime | None = None


class PersonIn(_Strict):
    person_id: str = Field(min_length=1, max_length=200)
    account_id: str = Field(min_length=1, max_length=200)
    title: str | None = None
    department: str | None = None
    seniority: str | None = None
    buying_role: str | None = None


class EventIn(_Strict):
    timestamp: datetime
    event_type: str = Field(min_length=1, max_length=100)
    account_id: str | None = None
    person_id: str | None = None
    event_id: str | None = None
    channel: str | None = None
    topic: str | None = None
    weight: float | None = Field(None, ge=0)


class IntentIn(_Strict):
    account_id: str
    date: datetime
    topic: str
    score: float = Field(ge=0, le=100)


class OpportunityIn(_Strict):
    opportunity_id: str
    account_id: str
    created_at: datetime
    status: str
    closed_at: datetime | None = None
    amount: float | None = None
    type: str | None = None


class EventsRequest(_Strict):
    """Raw tables of one or more accounts; features are computed at ``as_of`` with the very
    same code as the batch pipeline."""

    as_of: datetime = Field(description="features see rows strictly before this time")
    accounts: list[AccountIn] = Field(min_length=1, max_length=100)
    people: list[PersonIn] = Field(default_factory=list, max_length=20_000)
    events: list[EventIn] = Field(default_factory=list, max_length=200_000)
    intent: list[IntentIn] = Field(default_factory=list, max_length=50_000)
    opportunities: list[OpportunityIn] = Field(default_factory=list, max_length=5_000)


class EventsResponse(ExplainResponse):
    as_of: str
    rows_rejected: dict[str, dict[str, int]] = Field(
        description="input rows left out, per table and reason (never dropped silently)"
    )


@dataclass
class Settings:
    store: Path
    tracking_uri: str | None
    model_name: str
    ranked: Path
    token: str | None
    reload_seconds: float

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            Path(env.get("INMARKET_STORE", "mlruns")),
            env.get("INMARKET_TRACKING_URI"),
            env.get("INMARKET_MODEL_NAME", "inmarket"),
            Path(env.get("INMARKET_RANKED", "data/ranked.parquet")),
            env.get("INMARKET_TOKEN") or None,
            float(env.get("INMARKET_RELOAD_SECONDS", "30")),
        )


class ChampionHolder:
    """The served model; swapped whole when the champion alias moves, so a request that
    started on the old model finishes on it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model: InMarketModel | None = None
        self.version: str | None = None
        self.loaded_at: datetime | None = None
        self.error: str | None = None
        self._lock = threading.Lock()

    def refresh(self) -> bool:
        """Load the champion if its version changed; True when a new model was loaded."""
        from training.registry import CHAMPION, connect, load_model, version_by_alias

        with self._lock:
            try:
                client = connect(self.settings.store, self.settings.tracking_uri)
                current = version_by_alias(client, self.settings.model_name, CHAMPION)
                if current is None:
                    raise LookupError(
                        f"model '{self.settings.model_name}' has no '{CHAMPION}' "
                        "alias; run `inmarket train` and `inmarket promote`"
                    )
                if str(current.version) == self.version:
                    return False
                model = load_model(f"models:/{self.settings.model_name}/{current.version}")
            except Exception as exc:  # keep serving the old model; readiness tells the rest
                self.error = str(exc)
                log.error("inmarket: cannot load the champion model: %s", exc)
                return False
            self.model, self.version = model, str(current.version)
            self.loaded_at, self.error = datetime.now().astimezone(), None
            log.info("inmarket: serving %s version %s", self.settings.model_name, self.version)
            return True


def _frame(records: list[Any]) -> tuple[pd.DataFrame, list[list[str]]]:
    """Records -> feature frame; the features each record left out (treated as missing)."""
    rows = [r.model_dump(exclude_unset=True) for r in records]
    missing = [[f for f in FEATURES if row.get(f) is None] for row in rows]
    numbers = np.array([[row.get(f) for f in _NUMERIC] for row in rows], dtype="float64")
    columns: dict[str, Any] = {"account_id": [row["account_id"] for row in rows]}
    columns.update(zip(_NUMERIC, numbers.T, strict=True))
    columns.update({f: [row.get(f) for row in rows] for f in FIT_CATEGORIES})
    return pd.DataFrame(columns)[["account_id", *FEATURES]], missing


def _list_query(
    stage: str | None = Query(None, max_length=20, description="cold, aware, engaged, ..."),
    industry: str | None = Query(None, max_length=100),
    region: str | None = Query(None, max_length=100),
    min_score: int = Query(0, ge=0, le=100),
    q: str | None = Query(None, max_length=200, description="part of a name or domain"),
    sort: str = Query("rank", max_length=40, description=f"one of {', '.join(SORTABLE)}"),
    order: str = Query("asc", pattern="^(asc|desc)$"),
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=1000),
) -> ListQuery:
    if sort not in SORTABLE:
        raise HTTPException(
            422, f"sort: '{sort}' is not sortable; use one of {', '.join(SORTABLE)}"
        )
    return ListQuery(stage, industry, region, min_score, q, sort, order == "desc", offset, limit)


_LIST_QUERY = Depends(_list_query)


def _select(scoring: Scoring, query: ListQuery) -> pd.DataFrame:
    return select(scoring.ranked, query)


app = FastAPI(title="In-market: the review page and read-only routes")
app.mount("/static", StaticFiles(directory=STATIC), name="static")


@bentoml.service(name="inmarket", traffic={"timeout": 60})
@bentoml.asgi_app(app, path="/")
class InMarketService:
    """Scores B2B accounts from the engagement of their buying groups."""

    def __init__(self) -> None:
        self.settings = Settings.from_env()
        self.holder = ChampionHolder(self.settings)
        self.holder.refresh()
        self.scoring = ScoringCache(self.settings.ranked)
        # Everything loaded so far (MLflow, pandas, the model) lives as long as the server:
        # moved out of the collector's sight, full collections stop pausing every request
        # in flight for ~200 ms every couple of seconds under load (bench/serve.py).
        gc.collect()
        gc.freeze()
        if self.settings.reload_seconds > 0:
            threading.Thread(target=self._watch, daemon=True, name="champion-watch").start()

    def _watch(self) -> None:
        while True:
            time.sleep(self.settings.reload_seconds)
            self.holder.refresh()

    def __is_ready__(self) -> bool:
        return self.holder.model is not None

    def _model(self) -> tuple[InMarketModel, str]:
        model, version = self.holder.model, self.holder.version
        if model is None or version is None:
            raise bentoml.exceptions.ServiceUnavailable(
                f"no model loaded: {self.holder.error or 'starting'}"
            )
        return model, version

    # max_latency_ms is where BentoML starts shedding load (503); batches form well below it
    @bentoml.api(route="/score", batchable=True, max_batch_size=MAX_RECORDS, max_latency_ms=5000)
    def score(
        self,
        records: list[FeatureRecord] = _BATCH,  # type: ignore[valid-type]
    ) -> list[ScoredRecord]:
        """Probability, score 0-100 and stage for a batch of account feature records.

        Adaptive batching: concurrent requests are scored together and answered apart."""
        model, version = self._model()
        rows = [r.__dict__ for r in records]  # the validated fields; unset ones are None
        probability = model.probability_of(model.matrix_from_rows(rows))
        score, stage = score_and_stage(model, probability)
        return [
            ScoredRecord(
                account_id=row["account_id"],
                probability=float(p),
                score=int(s),
                stage=str(g),
                missing_features=[f for f in FEATURES if row[f] is None],
                model_name=self.settings.model_name,
                model_version=version,
            )
            for row, p, s, g in zip(rows, probability, score, stage, strict=True)
        ]

    @bentoml.api(route="/explain")
    def explain(
        self,
        records: list[FeatureRecord] = _BATCH,  # type: ignore[valid-type]
    ) -> ExplainResponse:
        """Scores plus the top positive and negative reasons in words and the buying group."""
        model, version = self._model()
        frame, missing = _frame(records)
        return ExplainResponse(
            model_name=self.settings.model_name,
            model_version=version,
            accounts=_explanations(model, frame, missing),
        )

    @bentoml.api(route="/score_events")
    def score_events(self, request: EventsRequest) -> EventsResponse:
        """Scores and reasons computed from raw people and events, at ``as_of``."""
        model, version = self._model()
        as_of = pd.Timestamp(request.as_of)
        as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
        dataset = _validate_request(request, as_of)
        snapshots = pd.DataFrame(
            {"account_id": dataset.accounts["account_id"], "as_of": as_of.floor("s")}
        )
        config = FeatureConfig(categories={k: tuple(v) for k, v in model.categories.items()})
        frame = build_features(
            snapshots,
            dataset.accounts,
            dataset.people,
            dataset.events,
            dataset.intent,
            dataset.opportunities,
            config,
        )
        missing: list[list[str]] = [[] for _ in range(len(frame))]
        rejected = {t: r.rejects for t, r in dataset.report.tables.items() if r.rejects}
        return EventsResponse(
            model_name=self.settings.model_name,
            model_version=version,
            as_of=str(as_of),
            rows_rejected=rejected,
            accounts=_explanations(model, frame, missing),
        )

    @bentoml.api(route="/admin/reload")
    def reload(self) -> dict[str, Any]:
        """Check the champion alias now (guarded by the token when one is set)."""
        changed = self.holder.refresh()
        return {
            "reloaded": changed,
            "model_version": self.holder.version,
            "error": self.holder.error,
        }

    @app.get("/model")
    def model_card(self) -> dict[str, Any]:
        """The served model: name, version, training metrics next to the MQL rule, features,
        and the drift figures of the latest batch scoring."""
        model, version = self._model()
        scoring = self.scoring.get()
        loaded = self.holder.loaded_at
        return {
            "name": self.settings.model_name,
            "version": version,
            "alias": "champion",
            "loaded_at": loaded.isoformat() if loaded else None,
            "trained_at": model.info.get("trained_at"),
            "label": model.info.get("label"),
            "horizon_days": model.info.get("horizon_days"),
            "test_metrics": model.info.get("test_metrics"),
            "mql_test_metrics": model.info.get("mql_test_metrics"),
            "features": model.features,
            "drift": scoring.drift if scoring else None,
        }

    def _scoring(self) -> Scoring:
        scoring = self.scoring.get()
        if scoring is None:
            path = self.settings.ranked
            raise HTTPException(
                404,
                f"no batch scoring at {path}; run `inmarket score DATA --out {path}` "
                "(or set INMARKET_RANKED to where it wrote)",
            )
        return scoring

    @app.get("/accounts")
    def ranked_accounts(self, query: ListQuery = _LIST_QUERY) -> dict[str, Any]:
        """Ranked accounts from the latest batch scoring (``inmarket score``): filtered by
        stage, industry, region, minimum score and a search of name or domain, sorted, paged."""
        scoring = self._scoring()
        rows = _select(scoring, query)
        page = rows.iloc[query.offset : query.offset + query.limit]
        return {
            "as_of": str(scoring.ranked["as_of"].max()),
            "total": len(rows),
            "offset": query.offset,
            "limit": query.limit,
            "accounts": records(page),
        }

    @app.get("/accounts.csv")
    def ranked_accounts_csv(self, query: ListQuery = _LIST_QUERY) -> Response:
        """Every account matching the filters (all pages), as CSV, in the list's order."""
        rows = _select(self._scoring(), query)
        return Response(
            csv_text(rows),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="in-market-accounts.csv"'},
        )

    @app.get("/summary")
    def scoring_summary(self) -> dict[str, Any]:
        """Stage counts, filter choices and how many accounts worth working now have nobody
        at the MQL threshold (what the MQL rule would have missed)."""
        return summary(self._scoring().ranked)

    @app.get("/accounts/{account_id}")
    def account(self, account_id: str = Path_(max_length=200)) -> dict[str, Any]:
        """One account: score history, weekly engagement by person and department (anonymous
        visits as such), reasons, buying roles engaged and missing, opportunities."""
        view = account_view(self._scoring(), account_id)
        if view is None:
            raise HTTPException(404, f"account_id '{account_id}' is not in the ranked list")
        return view

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(self) -> HTMLResponse:
        """The review page (everything it needs is served from /static)."""
        return HTMLResponse(PAGE_HTML)

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(self) -> HTMLResponse:
        return HTMLResponse(login_page())

    @app.post("/login", include_in_schema=False)
    async def login(self, request: Request) -> Response:
        """Trade the token for a cookie, so a browser can open the page."""
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        given = (form.get("token") or [""])[0]
        token = self.settings.token
        if token is None:
            return RedirectResponse("/", status_code=303)
        if not hmac.compare_digest(given.encode(), token.encode()):
            return HTMLResponse(login_page("That token is not the service's."), status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            token,
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


def _validate_request(request: EventsRequest, as_of: pd.Timestamp) -> Dataset:
    """The request's tables through the data contract, like files would go."""

    def table(name: str, rows: list[BaseModel]) -> list[RawSource]:
        frame = pd.DataFrame([r.model_dump() for r in rows])
        return [RawSource(name, f"request.{name}", frame)] if len(frame) else []

    raw = {
        "accounts": table("accounts", list(request.accounts)),
        "people": table("people", list(request.people)),
        "events": table("events", list(request.events)),
        "intent": table("intent", list(request.intent)),
        "opportunities": table("opportunities", list(request.opportunities)),
    }
    known = {name: empty_table(name) for name, sources in raw.items() if not sources}
    raw = {name: sources for name, sources in raw.items() if sources}
    # rows after as_of are not late here, they are just not seen: the extract is "now"
    stamp = max(as_of, pd.Timestamp.now("UTC")).to_pydatetime()
    try:
        return validate(raw, extracted_at=stamp, max_bad_share=1.0, known=known)
    except ContractError as exc:
        raise bentoml.exceptions.InvalidArgument(str(exc)) from exc


class BearerAuth:
    """ASGI middleware: with INMARKET_TOKEN set, every route but health, metrics and the login
    form needs ``Authorization: Bearer <token>`` or the cookie the login form sets; without
    them, the API answers 401 and the page sends the browser to the login form."""

    OPEN = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/login"})
    PAGES = frozenset({"/", "/index.html"})

    def __init__(self, app: Any) -> None:
        self.app = app
        token = os.environ.get("INMARKET_TOKEN") or None  # read when the server starts
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


InMarketService.add_asgi_middleware(BearerAuth)  # type: ignore[attr-defined]

bentoml_fixes.apply(InMarketService)


def _explanations(
    model: InMarketModel, frame: pd.DataFrame, missing: list[list[str]]
) -> list[Explanation]:
    scored = score_rows(model, frame)
    reasons = explain_rows(model, frame)
    group = buying_group(frame)
    return [
        Explanation(
            account_id=str(frame["account_id"].iloc[i]),
            probability=float(scored["probability"].iloc[i]),
            score=int(scored["score"].iloc[i]),
            stage=str(scored["stage"].iloc[i]),
            missing_features=missing[i],
            positive=reasons[i]["positive"],
            negative=reasons[i]["negative"],
            roles_engaged=group["roles_engaged"].iloc[i],
            roles_missing=group["roles_missing"].iloc[i],
            buying_group_gap=group["buying_group_gap"].iloc[i],
        )
        for i in range(len(frame))
    ]
