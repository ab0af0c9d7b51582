"""The HTTP API's request and response models: what ``/score``, ``/explain`` and
``/score_events`` accept and answer, each field described for the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model

from features.catalogue import FIT_CATEGORIES, catalogue

MAX_RECORDS = 1000
BATCH = Field(min_length=1, max_length=MAX_RECORDS, description="account feature records")
FEATURES = [f.name for f in catalogue()]
_NUMERIC = [f for f in FEATURES if f not in FIT_CATEGORIES]


class _Strict(BaseModel):
    """A request model: unknown fields and NaN/inf are errors."""

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


def records_frame(records: list[Any]) -> tuple[pd.DataFrame, list[list[str]]]:
    """Records -> feature frame; the features each record left out (treated as missing)."""
    rows = [r.model_dump(exclude_unset=True) for r in records]
    missing = [[f for f in FEATURES if row.get(f) is None] for row in rows]
    numbers = np.array([[row.get(f) for f in _NUMERIC] for row in rows], dtype="float64")
    columns: dict[str, Any] = {"account_id": [row["account_id"] for row in rows]}
    columns.update(zip(_NUMERIC, numbers.T, strict=True))
    columns.update({f: [row.get(f) for row in rows] for f in FIT_CATEGORIES})
    return pd.DataFrame(columns)[["account_id", *FEATURES]], missing
