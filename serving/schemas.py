"""The HTTP API's request and response models: what ``/score``, ``/explain`` and
``/score_events`` accept and answer, each field described for the OpenAPI document."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from features.catalogue import FIT_CATEGORIES, catalogue
from features.contract import NORMALISED_ACCOUNT_COLUMNS
from features.encode import normalise_label
from training.model import InMarketModel

MAX_RECORDS = 1000
BATCH = Field(min_length=1, max_length=MAX_RECORDS, description="account feature records")


class _Strict(BaseModel):
    """A request model: unknown fields, NaN/inf and text or true/false for numbers are errors.
    Dates stay lax: "2025-06-01" and epoch seconds are dates as batch reads them."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


# a date or time as the tables' readers take it (ISO text, a date alone, epoch seconds)
When = Annotated[datetime, Field(strict=False)]


class ServedFeatures:
    """The served model's features: ``/score`` and ``/explain`` records are checked against the
    model that scores them, not the default catalogue (a model trained with other windows or
    declared columns has other features)."""

    def __init__(self) -> None:
        # (names, categorical, declared), swapped in one assignment: requests are validated
        # while a reload may be swapping the model
        self._served: tuple[frozenset[str], frozenset[str], frozenset[str]] | None = None

    def use(self, model: InMarketModel) -> None:
        self._served = (
            frozenset(model.features),
            frozenset(model.categories),
            frozenset(model.spec.columns),
        )

    def check(self, given: set[str], extra: dict[str, Any]) -> None:
        """Raise naming each field the served model does not take, or of the wrong type."""
        served = self._served
        if served is None:  # no model yet: the route answers 503
            return
        names, categorical, declared = served
        unknown = sorted(given - names)
        if unknown:
            raise ValueError(
                f"{', '.join(unknown[:5])}: not a feature of the served model; "
                "GET /model lists its features"
            )
        for name, value in extra.items():
            if value is None:
                continue
            if name in categorical and not isinstance(value, str):
                raise ValueError(f"{name}: a category is text, got {value!r}")
            if name in categorical:
                continue
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (number and math.isfinite(value)):
                raise ValueError(f"{name}: a finite number is expected, got {value!r}")
            # a declared account column may be any number; a computed feature has a range
            low, bound = feature_lower_bound(name), feature_upper_bound(name)
            if name not in declared and not low <= value <= bound:
                raise ValueError(
                    f"{name}: expected a number from {low:g} to {bound:g}, got {value!r}"
                )


SERVED_FEATURES = ServedFeatures()


class _FeatureRecordBase(BaseModel):
    """Feature values of one account; the served model's features beyond the default catalogue
    (other windows, declared account columns) are accepted by name and checked."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    @model_validator(mode="after")
    def _features_of_the_served_model(self) -> _FeatureRecordBase:
        extra = self.model_extra or {}
        SERVED_FEATURES.check({*self.model_fields_set, *extra} - {"account_id"}, extra)
        return self


# Every catalogue feature is a count, a share, a flag, a score or a number of days: never
# negative (but a climb between two windows), and a value past a billion is an input error,
# not an account on fire (a probe's `events_30d: 1e308` scored 91). Generous on purpose: batch
# has no such bound, and a row it built must never be refused here.
MAX_FEATURE_VALUE = 1e9


def feature_upper_bound(name: str) -> float:
    """The largest value a catalogue feature can take."""
    if "share" in name or name.startswith(("role_", "is_")):
        return 1.0
    if name.startswith("intent_") and "score" in name:
        return 100.0
    return MAX_FEATURE_VALUE


def feature_lower_bound(name: str) -> float:
    """The smallest value a catalogue feature can take: 0, but a change between two windows
    (``seniority_climb_30d``: a seniority level then minus now) can fall."""
    return -100.0 if "_climb_" in name else 0.0


def _catalogue_field(name: str, description: str) -> tuple[Any, Any]:
    """A feature's field: strict (no "5" or true taken as a number) and within its range."""
    if name in FIT_CATEGORIES:
        return str | None, Field(None, strict=True, max_length=200, description=description)
    bound = feature_upper_bound(name)
    return float | None, Field(
        None, strict=True, ge=feature_lower_bound(name), le=bound, description=description
    )


FeatureRecord = create_model(  # type: ignore[call-overload]
    "FeatureRecord",
    __base__=_FeatureRecordBase,
    account_id=(
        str,
        Field(min_length=1, max_length=200, strict=True, description="the account's id"),
    ),
    **{f.name: _catalogue_field(f.name, f.description) for f in catalogue()},
)


class ScoredAccount(BaseModel):
    account_id: str
    probability: float
    score: int = Field(description="0-100: percentile among the model's test-window accounts")
    stage: str = Field(description="cold, aware, engaged, in-market or ready")
    missing_features: list[str] = Field(
        description="features absent from the request, treated as missing"
    )
    unknown_categories: dict[str, str] = Field(
        default_factory=dict,
        description="category values the model never saw in training (as normalised), "
        "treated as missing",
    )
    status: str | None = Field(
        None,
        description="/score_events only: prospect, in-pipeline or customer. The model learned "
        "prospects; for the others the stage is the status and the score is not a ranking",
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
    created_at: When | None = None
    columns: dict[str, str | float | None] = Field(
        default_factory=dict,
        max_length=100,
        description="the account columns the served model declares (features.columns), by name",
    )


class AccountHistoryIn(_Strict):
    account_id: str = Field(min_length=1, max_length=200)
    field: str = Field(min_length=1, max_length=100)
    value: str | None = Field(None, max_length=1000)
    valid_from: When


class PersonIn(_Strict):
    person_id: str = Field(min_length=1, max_length=200)
    account_id: str = Field(min_length=1, max_length=200)
    title: str | None = None
    department: str | None = None
    seniority: str | None = None
    buying_role: str | None = None
    created_at: When | None = Field(
        None, description="when the person entered the CRM (missing: known at every snapshot)"
    )


class EventIn(_Strict):
    timestamp: When
    event_type: str = Field(min_length=1, max_length=100)
    account_id: str | None = None
    person_id: str | None = None
    event_id: str | None = None
    channel: str | None = None
    topic: str | None = None
    weight: float | None = Field(None, ge=0)


class IntentIn(_Strict):
    account_id: str
    date: When
    topic: str
    score: float = Field(ge=0, le=100)


class OpportunityIn(_Strict):
    opportunity_id: str
    account_id: str
    created_at: When
    status: str
    closed_at: When | None = None
    amount: float | None = None
    type: str | None = None


class EventsRequest(_Strict):
    """Raw tables of one or more accounts; features are computed at ``as_of`` with the very
    same code as the batch pipeline."""

    as_of: When = Field(description="features see rows strictly before this time")
    accounts: list[AccountIn] = Field(min_length=1, max_length=100)
    people: list[PersonIn] = Field(default_factory=list, max_length=20_000)
    events: list[EventIn] = Field(default_factory=list, max_length=200_000)
    intent: list[IntentIn] = Field(default_factory=list, max_length=50_000)
    opportunities: list[OpportunityIn] = Field(default_factory=list, max_length=5_000)
    account_history: list[AccountHistoryIn] = Field(
        default_factory=list,
        max_length=20_000,
        description="dated values of the account columns the model declares as dated",
    )


class EventsResponse(ExplainResponse):
    as_of: str
    rows_rejected: dict[str, dict[str, int]] = Field(
        description="input rows left out, per table and reason (never dropped silently)"
    )


def feature_rows(
    records: list[Any], model: InMarketModel
) -> tuple[list[dict[str, Any]], list[list[str]], list[dict[str, str]]]:
    """Validated records -> the model's feature values (categories spelled as batch scoring
    spells them), the features each record left out, and its categories the model does not
    know (both scored as missing, and said so)."""
    rows = [{**r.__dict__, **(r.__pydantic_extra__ or {})} for r in records]
    unknown: list[dict[str, str]] = [{} for _ in rows]
    for name, levels in model.categories.items():
        raw = pd.Series([row.get(name) for row in rows], dtype="str")
        spelled = normalise_label(raw) if name in NORMALISED_ACCOUNT_COLUMNS else raw.str.strip()
        known = set(levels)
        for row, note, value in zip(rows, unknown, spelled.tolist(), strict=True):
            present = isinstance(value, str)
            row[name] = value if present else None
            if present and value not in known:
                note[name] = value
    missing = [[f for f in model.features if row.get(f) is None] for row in rows]
    return rows, missing, unknown


def unknown_levels(model: InMarketModel, accounts: pd.DataFrame) -> list[dict[str, str]]:
    """Per account (validated, so spelled as batch spells them), its category values the model
    never saw: scored as missing, and said so."""
    unknown: list[dict[str, str]] = [{} for _ in range(len(accounts))]
    for name, levels in model.categories.items():
        if name not in accounts:
            continue
        values = accounts[name].astype("str")
        strange = values.notna() & ~values.isin(set(levels))
        for i in np.flatnonzero(strange.to_numpy()):
            unknown[i][name] = str(values.iloc[i])
    return unknown


def records_frame(rows: list[dict[str, Any]], model: InMarketModel) -> pd.DataFrame:
    """Feature rows -> the model's feature frame (numbers as floats, categories as text)."""
    numeric = [f for f in model.features if f not in model.categories]
    numbers = np.array([[row.get(f) for f in numeric] for row in rows], dtype="float64")
    columns: dict[str, Any] = {"account_id": [row["account_id"] for row in rows]}
    columns.update(zip(numeric, numbers.reshape(len(rows), len(numeric)).T, strict=True))
    columns.update({f: [row.get(f) for row in rows] for f in model.categories})
    return pd.DataFrame(columns)[["account_id", *model.features]]
