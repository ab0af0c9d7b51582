"""What the scoring routes answer: ``/score``'s scored records, ``/explain``'s reasons, and
``/score_events``' features built from raw tables, each result with the notices about it.
Routes are declared in ``serving.service``; this module only computes their answers.
"""

from __future__ import annotations

from typing import Any

import bentoml
import pandas as pd
from pydantic import BaseModel

from features.contract import empty_table
from features.errors import ContractError
from features.families import build_features
from features.io import RawSource
from features.validation import Dataset, validate
from serving.errors import shortened
from serving.schemas import (
    EventsRequest,
    EventsResponse,
    EventsResult,
    Explanation,
    ModelInfo,
    Notice,
    ScoredAccount,
    ScoredItem,
    beyond_bounds,
    feature_rows,
    record_notices,
    unknown_levels,
)
from serving.scoring import account_status, buying_group, explain_rows, score_and_stage, score_rows
from training.model import InMarketModel


def scored_items(model: InMarketModel, info: ModelInfo, records: list[Any]) -> list[ScoredItem]:
    """Probability, score 0-100 and stage of each validated record, with its notices."""
    rows, missing, unknown = feature_rows(records, model)
    probability = model.predict(model.matrix_from_records(rows))
    score, stage = score_and_stage(model, probability)
    items = []
    for row, p, s, g, gaps, strange in zip(
        rows, probability, score, stage, missing, unknown, strict=True
    ):
        known, low, notices = record_notices(row["account_id"], gaps, strange, len(model.features))
        result = ScoredAccount(
            account_id=row["account_id"],
            probability=float(p),
            score=int(s),
            stage=str(g),
            missing_features=gaps,
            unknown_categories=strange,
            known_features=known,
            low_information=low,
        )
        items.append(ScoredItem(result=result, model=info, warnings=notices))
    return items


def explanations(
    model: InMarketModel,
    frame: pd.DataFrame,
    missing: list[list[str]],
    unknown: list[dict[str, str]],
) -> tuple[list[Explanation], list[Notice]]:
    """Each row's score, reasons and buying group, and the notices about the rows."""
    scored = score_rows(model, frame)
    reasons = explain_rows(model, frame)
    group = buying_group(frame)
    results, notices = [], []
    for i in range(len(frame)):
        account_id = str(frame["account_id"].iloc[i])
        known, low, said = record_notices(account_id, missing[i], unknown[i], len(model.features))
        notices.extend(said)
        results.append(
            Explanation(
                account_id=account_id,
                probability=float(scored["probability"].iloc[i]),
                score=int(scored["score"].iloc[i]),
                stage=str(scored["stage"].iloc[i]),
                missing_features=missing[i],
                unknown_categories=unknown[i],
                known_features=known,
                low_information=low,
                positive=reasons[i]["positive"],
                negative=reasons[i]["negative"],
                roles_engaged=group["roles_engaged"].iloc[i],
                roles_missing=group["roles_missing"].iloc[i],
                buying_group_gap=group["buying_group_gap"].iloc[i],
            )
        )
    return results, notices


def events_answer(model: InMarketModel, info: ModelInfo, request: EventsRequest) -> EventsResponse:
    """Scores and reasons of the request's accounts, their features built at ``as_of`` from its
    raw tables with the model's spec, as batch scoring builds them."""
    as_of = pd.Timestamp(request.as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    dataset = _validate_request(request, as_of)
    snapshots = pd.DataFrame(
        {"account_id": dataset.accounts["account_id"], "as_of": as_of.floor("s")}
    )
    frame = build_features(
        snapshots,
        dataset.accounts,
        dataset.people,
        dataset.events,
        dataset.intent,
        dataset.opportunities,
        model.spec,
        model.category_levels,
        dataset.account_history,
    )
    problem = beyond_bounds(frame, model)
    if problem is not None:  # the same bounds as /score's records: one contract
        raise bentoml.exceptions.InvalidArgument(problem)
    nothing: list[list[str]] = [[] for _ in range(len(frame))]
    explained, notices = explanations(
        model, frame, nothing, unknown_levels(model, dataset.accounts)
    )
    # as in the batch list: customers and accounts in pipeline are outside the population
    results = [
        EventsResult(
            **account.model_dump(exclude={"stage"}),
            stage=account.stage if status == "prospect" else str(status),
            status=str(status),
            as_of=str(as_of),
        )
        for account, status in zip(explained, account_status(model, frame), strict=True)
    ]
    rejected = [
        Notice(
            code="rows_rejected",
            field=table,
            reason=reason,
            count=count,
            message=f"{table}: {count:,} row(s) left out ({reason})",
        )
        for table, report in dataset.report.tables.items()
        for reason, count in report.rejects.items()
    ]
    return EventsResponse(model=info, results=results, warnings=[*notices, *rejected])


def _validate_request(request: EventsRequest, as_of: pd.Timestamp) -> Dataset:
    """The request's tables through the data contract, like files would go."""

    def table(name: str, rows: list[dict[str, Any]]) -> list[RawSource]:
        frame = pd.DataFrame(rows)
        return [RawSource(name, f"request.{name}", frame)] if len(frame) else []

    accounts = [{**a.model_dump(exclude={"columns"}), **a.columns} for a in request.accounts]
    raw = {"accounts": table("accounts", accounts)}
    for name in ("people", "events", "intent", "opportunities", "account_history"):
        rows: list[BaseModel] = getattr(request, name)
        raw[name] = table(name, [r.model_dump() for r in rows])
    known = {name: empty_table(name) for name, sources in raw.items() if not sources}
    raw = {name: sources for name, sources in raw.items() if sources}
    # rows after as_of are not late here, they are just not seen: the extract is "now"
    stamp = max(as_of, pd.Timestamp.now("UTC")).to_pydatetime()
    try:
        return validate(raw, extracted_at=stamp, max_bad_share=1.0, known=known)
    except ContractError as exc:
        raise bentoml.exceptions.InvalidArgument(shortened(str(exc), 500)) from exc
