"""The HTTP API's request and response models: what ``/score``, ``/explain`` and
``/score_events`` accept and answer, each field described for the OpenAPI document."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)

from features.catalogue import Feature, catalogue
from features.contract import EARLIEST_DATE, NORMALISED_ACCOUNT_COLUMNS, column
from features.encode import normalise_label
from serving.errors import shortened
from training.model import InMarketModel

MAX_RECORDS = 1000
BATCH = Field(min_length=1, max_length=MAX_RECORDS, description="account feature records")
# A record that gives fewer than this share of the served model's features is flagged
# `low_information`: its score rests mostly on values the model fills in as missing.
LOW_INFORMATION_SHARE = 0.5
MAX_ID_LENGTH = 200
# how far past the server's clock an as_of may be (clocks differ); later, no row exists yet
CLOCK_SKEW = timedelta(days=1)
Stage = Literal["cold", "aware", "engaged", "in-market", "ready", "in-pipeline", "customer"]
Status = Literal["prospect", "in-pipeline", "customer"]


def _id_text(value: object) -> object:
    """An id as text: a whole number (HubSpot's ids) becomes its decimal string; a number with
    a fraction or a true/false is refused, never rounded or read as 1/0."""
    if isinstance(value, bool):
        raise ValueError(f"an id is text or a whole number, got {str(value).lower()}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        raise ValueError(f"an id is text or a whole number, got {value!r}")
    return value


_ID_SCHEMA = {
    "oneOf": [
        {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
        {"type": "integer"},
    ],
    "description": "text, or a whole number (taken as its decimal string)",
}
# an id in a request: text or a whole number
Id = Annotated[
    str,
    BeforeValidator(_id_text),
    Field(min_length=1, max_length=MAX_ID_LENGTH, strict=True),
    WithJsonSchema(_ID_SCHEMA),
]


class _Strict(BaseModel):
    """A request model: unknown fields, NaN/inf and text or true/false for numbers are errors.
    Dates stay lax: "2025-06-01" and epoch seconds are dates as batch reads them."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


# a date or time as the tables' readers take it (ISO text, a date alone, epoch seconds)
When = Annotated[datetime, Field(strict=False)]


def _feature_field(feature: Feature, categorical: bool) -> tuple[Any, Any]:
    """A feature's field, from its catalogue row: strict (no "5" or true taken as a number),
    text for a category, else a number within the row's bounds (a whole one if it says so)."""
    if categorical:
        return str | None, Field(None, strict=True, max_length=200, description=feature.description)
    low, high, integer, _ = feature.bounds
    return float | None, Field(
        None,
        strict=True,
        ge=low if math.isfinite(low) else None,
        le=high if math.isfinite(high) else None,
        multiple_of=1 if integer else None,
        description=feature.description,
    )


def record_model(model: InMarketModel) -> type[BaseModel]:
    """The feature record ``model`` takes: the account id and the model's own features, each
    as its catalogue row bounds it (a model trained with other windows or declared columns
    has other features). A declared column is text when the model learned it as a category."""
    rows = {f.name: f for f in catalogue(model.spec)}
    strange = [name for name in model.features if name not in rows]
    if strange:
        raise ValueError(
            f"the model's feature(s) {strange[:5]} have no row in this version's feature "
            "catalogue: serve it with the version that trained it, or retrain"
        )
    fields = {
        name: _feature_field(rows[name], rows[name].bounds.categorical or name in model.categories)
        for name in model.features
    }
    record: type[BaseModel] = create_model(  # type: ignore[call-overload]
        "FeatureRecord",
        __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
        __doc__="Feature values of one account: the served model's features, each in its "
        "bounds; a feature not given is missing",
        account_id=(Id, Field(description="the account's id")),
        **fields,
    )
    return record


def beyond_bounds(frame: pd.DataFrame, model: InMarketModel) -> str | None:
    """What is wrong when a feature built from a request's raw rows is outside its catalogue
    row's bounds (as ``/v1/score`` would refuse it as a record); None when none is."""
    rows = {f.name: f for f in catalogue(model.spec)}
    for name in model.features:
        if name in model.categories or rows[name].bounds.categorical:
            continue
        low, high, integer, _ = rows[name].bounds
        values = frame[name].to_numpy(dtype="float64")
        given = ~np.isnan(values)  # a missing value is no value: nothing to bound
        bad = given & ((values < low) | (values > high) | (integer & (values % 1 != 0)))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            return (
                f"{name}: the rows sent make it {values[i]:g} for account "
                f"'{shortened(str(frame['account_id'].iloc[i]))}', outside {low:g} to {high:g} "
                f"({'whole numbers' if integer else 'numbers'}); check the rows' numbers"
            )
    return None


class ServedFeatures:
    """The served model's feature record (``record_model``): ``/score`` and ``/explain``
    records are checked against the model that scores them, and the OpenAPI document lists
    its features."""

    def __init__(self) -> None:
        # swapped in one assignment: requests are validated while a reload may be swapping it
        self.record: type[BaseModel] | None = None

    def use(self, record: type[BaseModel]) -> None:
        """Validate against ``record`` (``record_model`` of the model about to be served)."""
        self.record = record

    def validate(self, data: Any) -> Any:
        """``data`` checked against the served record: each field the served model does not
        take is named, each value checked against its row's bounds."""
        record = self.record
        if record is None or not isinstance(data, dict):  # no model yet: the route answers 503
            return data
        unknown = sorted(data.keys() - record.model_fields.keys())
        if unknown:
            raise ValueError(
                f"{', '.join(map(shortened, unknown[:5]))}: not a feature of the served model; "
                "GET /model lists its features"
            )
        return record.model_validate(data).model_dump(exclude_unset=True)


SERVED_FEATURES = ServedFeatures()


class FeatureRecord(BaseModel):
    """Feature values of one account, validated as the served model's record (its features and
    their bounds); the OpenAPI document shows that record."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    account_id: Id = Field(description="the account's id")

    @model_validator(mode="before")
    @classmethod
    def _of_the_served_model(cls, data: Any) -> Any:
        return SERVED_FEATURES.validate(data)


class ModelInfo(BaseModel):
    """The model that answered: each /v1/score, /v1/explain and /v1/score_events answer names it."""

    name: str = Field(description="the registered model's name")
    version: str = Field(description="the registered version that scored these results")
    trained_at: str | None = Field(None, description="when it was trained (UTC, ISO 8601)")
    fitted_until: str | None = Field(
        None, description="the newest snapshot it was fitted on (trained, stopped, calibrated)"
    )
    label: str | None = Field(None, description="what it predicts: won or opportunity")
    horizon_days: int | None = Field(None, description="within how many days of a snapshot")


class Notice(BaseModel):
    """Something the client should know about a result or about its request."""

    code: Literal["low_information", "unknown_category", "rows_rejected"] = Field(
        description="low_information: the record gave too few of the model's features for a "
        "confident score; unknown_category: a category value the model never saw, scored as "
        "missing; rows_rejected: input rows the data contract left out (/v1/score_events)"
    )
    message: str
    account_id: str | None = Field(None, description="the account it is about, if one")
    field: str | None = Field(None, description="the feature, or the table of rejected rows")
    reason: str | None = Field(None, description="rows_rejected: the contract's reason")
    count: int | None = Field(None, description="rows_rejected: how many rows")


class ScoredAccount(BaseModel):
    account_id: str
    probability: float = Field(description="calibrated probability of the label")
    score: int = Field(
        ge=0, le=100, description="0-100: percentile among the model's test-window accounts"
    )
    stage: Stage = Field(
        description="cold, aware, engaged, in-market or ready by score; /v1/score_events gives "
        "customers and accounts in pipeline their status as stage"
    )
    missing_features: list[str] = Field(
        description="features absent from the request, treated as missing"
    )
    unknown_categories: dict[str, str] = Field(
        default_factory=dict,
        description="category values the model never saw in training (as normalised), "
        "treated as missing",
    )
    known_features: int = Field(description="how many of the model's features the record gave")
    low_information: bool = Field(
        description=f"fewer than {LOW_INFORMATION_SHARE:.0%} of the model's features given: "
        "the score rests mostly on missing values and is not a confident ranking"
    )


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


class EventsResult(Explanation):
    status: Status = Field(
        description="prospect, in-pipeline or customer. The model learned prospects; for the "
        "others the stage is the status and the score is not a ranking"
    )
    as_of: str = Field(description="the time the features were computed at")


class _Envelope(BaseModel):
    model: ModelInfo
    warnings: list[Notice] = Field(
        description="per-record and per-request notices (low information, unknown categories, "
        "rejected input rows); empty when there is nothing to say"
    )


class ScoreResponse(_Envelope):
    """/v1/score: one result per record, in the request's order."""

    results: list[ScoredAccount]


class ExplainResponse(_Envelope):
    """/v1/explain: one result per record, in the request's order."""

    results: list[Explanation]


class EventsResponse(_Envelope):
    """/v1/score_events: one result per account of the request."""

    results: list[EventsResult]


class ScoredItem(BaseModel):
    """One record's part of a /v1/score answer, as the batched scorer hands it back: BentoML
    splits a batch's outputs by request, and the request's envelope is built from them."""

    result: ScoredAccount
    model: ModelInfo
    warnings: list[Notice]


def score_envelope(items: list[ScoredItem]) -> ScoreResponse:
    """One request's batched items -> its envelope (one request is scored in one batch, by one
    model)."""
    return ScoreResponse(
        model=items[0].model,
        results=[i.result for i in items],
        warnings=[w for i in items for w in i.warnings],
    )


def record_notices(
    account_id: str, missing: list[str], unknown: dict[str, str], features: int
) -> tuple[int, bool, list[Notice]]:
    """How many features a record gave, whether that is too few, and the notices to send."""
    known = features - len(missing)
    low = known < LOW_INFORMATION_SHARE * features
    notices = [
        Notice(
            code="unknown_category",
            account_id=account_id,
            field=name,
            message=f"{name}: '{value}' is a value the model never saw; scored as missing",
        )
        for name, value in unknown.items()
    ]
    if low:
        notices.insert(
            0,
            Notice(
                code="low_information",
                account_id=account_id,
                message=f"{known} of the model's {features} features given (fewer than "
                f"{LOW_INFORMATION_SHARE:.0%}): the score rests mostly on missing values; send "
                "more features (GET /v1/model lists them) or the raw tables to /v1/score_events",
            ),
        )
    return known, low, notices


def _number(table: str, name: str, default: Any = None) -> Any:
    """A raw table's number field, within the bounds of its column in the data contract."""
    of = column(table, name)
    return Field(default, ge=of.low, le=of.high, description=of.description or None)


class AccountIn(_Strict):
    account_id: Id
    name: str | None = None
    domain: str | None = None
    industry: str | None = None
    employee_count: float | None = _number("accounts", "employee_count")
    employee_band: str | None = None
    region: str | None = None
    created_at: When | None = None
    columns: dict[str, str | float | None] = Field(
        default_factory=dict,
        max_length=100,
        description="the account columns the served model declares (features.columns), by name",
    )


class AccountHistoryIn(_Strict):
    account_id: Id
    field: str = Field(min_length=1, max_length=100)
    value: str | None = Field(None, max_length=1000)
    valid_from: When


class PersonIn(_Strict):
    person_id: Id
    account_id: Id
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
    account_id: Id | None = None
    person_id: Id | None = None
    event_id: Id | None = None
    channel: str | None = None
    topic: str | None = None
    weight: float | None = _number("events", "weight")


class IntentIn(_Strict):
    account_id: Id
    date: When
    topic: str
    score: float = _number("intent", "score", ...)


class OpportunityIn(_Strict):
    opportunity_id: Id
    account_id: Id
    created_at: When
    status: str
    closed_at: When | None = None
    amount: float | None = None
    type: str | None = None


class EventsRequest(_Strict):
    """Raw tables of one or more accounts; features are computed at ``as_of`` with the very
    same code as the batch pipeline."""

    as_of: When = Field(
        description=f"features see rows strictly before this time: from {EARLIEST_DATE.year} to now"
    )
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

    @field_validator("as_of")
    @classmethod
    def _not_before_the_data_or_after_now(cls, value: datetime) -> datetime:
        when = value if value.tzinfo else value.replace(tzinfo=UTC)
        if not EARLIEST_DATE.to_pydatetime() <= when <= datetime.now(UTC) + CLOCK_SKEW:
            raise ValueError(
                f"must be from {EARLIEST_DATE:%Y-%m-%d} to now (no row is dated later), "
                f"got {when.date().isoformat()}"
            )
        return value


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
