"""What a score means: probability, score 0-100, stage, reasons in words, and the
buying group's engaged and missing roles. Pure functions over feature rows, shared by batch
scoring and the HTTP service.

The score is the probability's percentile among the accounts of the model's test window (kept
with the model), so 90 means "more likely than 90% of accounts"; stages cut the score:

| stage | score | meaning |
|---|---|---|
| cold | 0-39 | no sign of a buying cycle |
| aware | 40-69 | some engagement, below the usual |
| engaged | 70-89 | more engaged than most accounts |
| in-market | 90-96 | the top 10%: work it this period |
| ready | 97-100 | the top 3%: a buying group is active now |
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from features.catalogue import TRACKED_ROLES, catalogue
from training.model import InMarketModel

STAGES = (("cold", 0), ("aware", 40), ("engaged", 70), ("in-market", 90), ("ready", 97))
# Accounts outside the population the model learned (labels leave them out) are shown with
# their status instead of a score: they are not ranked, staged or counted among prospects.
# "new": in the CRM since the newest snapshot, so without features yet (listed, not scored).
STATUSES = ("prospect", "in-pipeline", "customer", "new")
KEY_ROLES = ("decision_maker", "champion", "technical_evaluator", "finance")


def _n(value: float) -> str:
    return f"{value:,.0f}"


# Feature -> sentence about its value. Features not listed fall back to their catalogue line.
REASON_TEXT: dict[str, Callable[[float], str]] = {
    "departments_engaged_30d": lambda v: (
        f"people from {_n(v)} departments engaged in the last 30 days"
    ),
    "departments_engaged_90d": lambda v: (
        f"people from {_n(v)} departments engaged in the last 90 days"
    ),
    "senior_people_engaged_90d": lambda v: (
        f"{_n(v)} directors, VPs or C-level people engaged in the last 90 days"
    ),
    "buying_roles_engaged_90d": lambda v: (
        f"{_n(v)} of {len(TRACKED_ROLES)} buying roles engaged in the last 90 days"
    ),
    "high_intent_people_30d": lambda v: (
        f"{_n(v)} people visited pricing, demo, comparison or trial pages in the last 30 days"
    ),
    "high_intent_departments_30d": lambda v: (
        f"high-intent visits from {_n(v)} departments in the last 30 days"
    ),
    "engagement_score_30d": lambda v: f"weighted engagement of {_n(v)} in the last 30 days",
    "engagement_score_90d": lambda v: f"weighted engagement of {_n(v)} in the last 90 days",
    "anonymous_events_30d": lambda v: (
        f"{_n(v)} anonymous visits from the account in the last 30 days"
    ),
    "anonymous_events_90d": lambda v: (
        f"{_n(v)} anonymous visits from the account in the last 90 days"
    ),
    "top_person_share_90d": lambda v: f"{v:.0%} of known engagement comes from one person",
    "days_since_last_event": lambda v: f"last interaction {_n(v)} days ago",
    "days_since_last_high_intent_event": lambda v: f"last high-intent visit {_n(v)} days ago",
    "momentum_7d_vs_prior_28d": lambda v: (
        f"last week's activity is {v:.1f}x the weekly rate of the 4 weeks before"
    ),
    "momentum_30d_vs_prior_60d": lambda v: (
        f"last month's activity is {v:.1f}x the monthly rate of the 2 months before"
    ),
    "intent_max_score_28d": lambda v: (
        f"third-party research intent peaked at {_n(v)} in the last 4 weeks"
    ),
    "intent_max_score_90d": lambda v: (
        f"third-party research intent peaked at {_n(v)} in the last 90 days"
    ),
    "intent_topics_surging_28d": lambda v: (
        f"{_n(v)} research topics surging off-site in the last 4 weeks"
    ),
    "intent_weeks_surging_90d": lambda v: (
        f"off-site research surged in {_n(v)} of the last 13 weeks"
    ),
    "mql_points_max_90d": lambda v: f"the most active person has {_n(v)} lead points",
    "mql_people_90d": lambda v: f"{_n(v)} marketing-qualified leads in the last 90 days",
    "employee_count": lambda v: f"{_n(v)} employees",
    "account_age_days": lambda v: (
        f"in the CRM for {_n(v)} days" if v < 365 else "in the CRM for a year or more"
    ),
    "opportunities_lost_before": lambda v: f"{_n(v)} past opportunities lost",
    "new_business_lost_before": lambda v: f"{_n(v)} past new-business deals lost",
    "is_former_customer": lambda v: "a former customer" if v else "never a customer",
}


# Windowed counts (features.settings.FeatureSpec.windows): sentence templates by stem.
WINDOWED_TEXT = {
    "people_engaged": "{v} people engaged in the last {d} days",
    "high_intent_events": "{v} pricing, demo, comparison or trial visits in the last {d} days",
    "events": "{v} interactions in the last {d} days",
}
_WINDOWED = re.compile(rf"^({'|'.join(WINDOWED_TEXT)})_(\d+)d$")


def _reason_text(feature: str) -> Callable[[float], str] | None:
    """The sentence of a feature's value: from the table above, or its windowed template."""
    windowed = _WINDOWED.match(feature)
    if windowed:
        stem, days = windowed.group(1), windowed.group(2)
        return lambda v: WINDOWED_TEXT[stem].format(v=_n(v), d=days)
    return REASON_TEXT.get(feature)


def score_and_stage(model: InMarketModel, probability: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Score 0-100 (percentile among the test window's accounts) and stage of probabilities."""
    quantiles = np.asarray(model.info.get("score_quantiles") or np.linspace(0, 1, 101))
    score = np.clip(np.searchsorted(quantiles, probability, side="right") - 1, 0, 100)
    bounds = np.array([b for _, b in STAGES])
    names = np.array([s for s, _ in STAGES], dtype=object)
    stage: np.ndarray = names[np.searchsorted(bounds, score, side="right") - 1]
    return score.astype(int), stage


def account_status(model: InMarketModel, features: pd.DataFrame) -> np.ndarray:
    """prospect, in-pipeline (an open opportunity at as_of) or customer, per feature row; a
    model trained with customers among its labels scores them as prospects."""
    customer = features["is_customer"].to_numpy() > 0
    if model.info.get("include_customers"):
        customer = np.zeros(len(features), dtype=bool)
    pipeline = features["in_pipeline"].to_numpy() > 0
    return np.where(customer, "customer", np.where(pipeline, "in-pipeline", "prospect"))


def score_rows(model: InMarketModel, frame: pd.DataFrame) -> pd.DataFrame:
    """probability, score and stage for each feature row."""
    probability = model.predict(frame)
    score, stage = score_and_stage(model, probability)
    return pd.DataFrame(
        {"probability": probability, "score": score, "stage": stage}, index=frame.index
    )


def _sentence(feature: str, value: object, descriptions: dict[str, str]) -> str:
    if isinstance(value, float) and np.isnan(value):
        return f"no data yet: {descriptions.get(feature, feature)}"
    if feature.startswith("role_") and feature.endswith("_engaged_90d"):
        role = feature.removeprefix("role_").removesuffix("_engaged_90d").replace("_", " ")
        engaged = bool(value) if isinstance(value, int | float | np.number) else False
        article = ("an" if role[0] in "aeiou" else "a") if engaged else "no"
        return f"{article} {role} engaged in the last 90 days"
    text = _reason_text(feature)
    if text is not None and isinstance(value, int | float | np.number):
        return text(float(value))
    if feature in ("industry", "region", "employee_band"):
        return f"{feature.replace('_', ' ')}: {str(value).replace('_', ' ')}"
    if isinstance(value, float | np.floating) and not float(value).is_integer():
        value = f"{float(value):,.2f}"  # a share or a rate, in words a person reads
    elif isinstance(value, int | float | np.number):
        value = _n(float(value))
    return f"{descriptions.get(feature, feature)}: {value}"


def explain_rows(
    model: InMarketModel, frame: pd.DataFrame, top: int = 3
) -> list[dict[str, list[dict[str, object]]]]:
    """Top positive and negative contributions of each row, in words."""
    contributions = model.contributions(frame)
    values = contributions.to_numpy()
    order = np.argsort(-values, axis=1)
    descriptions = {f.name: f.description for f in catalogue(model.spec)}
    features = np.array(model.features, dtype=object)
    columns: dict[str, np.ndarray] = {}  # the columns some reason quotes, as arrays

    def cell(feature: str, row: int) -> object:
        if feature not in columns:
            columns[feature] = frame[feature].to_numpy()
        return columns[feature][row]

    explained = []
    for row, ranking in enumerate(order):  # formatting words, per requested row
        positive = [i for i in ranking[:top] if values[row, i] > 0]
        negative = [i for i in ranking[::-1][:top] if values[row, i] < 0]

        def reason(i: int, row: int = row) -> dict[str, object]:
            feature = str(features[i])
            value = cell(feature, row)
            return {
                "feature": feature,
                "value": None
                if pd.isna(value)
                else (value.item() if hasattr(value, "item") else value),
                "contribution": float(values[row, i]),
                "text": _sentence(feature, value, descriptions),
            }

        explained.append(
            {"positive": [reason(i) for i in positive], "negative": [reason(i) for i in negative]}
        )
    return explained


def buying_group(frame: pd.DataFrame) -> pd.DataFrame:
    """Roles engaged and missing in the last 90 days, and a sentence about the gap."""
    flags = pd.DataFrame(
        {
            role: frame.get(f"role_{role}_engaged_90d", pd.Series(0, index=frame.index))
            .fillna(0)
            .to_numpy()
            > 0
            for role in TRACKED_ROLES
        },
        index=frame.index,
    )
    matrix = flags.to_numpy()
    engaged = pd.Series(
        [[r for r, on in zip(TRACKED_ROLES, row, strict=True) if on] for row in matrix],
        index=frame.index,
        dtype=object,
    )
    missing = pd.Series(
        [[r for r, on in zip(TRACKED_ROLES, row, strict=True) if not on] for row in matrix],
        index=frame.index,
        dtype=object,
    )

    def gap(roles: list[str]) -> str:
        key = [r for r in KEY_ROLES if r in roles]
        if not key:
            return "decision maker, champion, technical evaluator and finance all engaged"
        names = [r.replace("_", " ") for r in key]
        return (
            "no "
            + (" or ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " or " + names[-1])
            + " engaged yet"
        )

    return pd.DataFrame(
        {"roles_engaged": engaged, "roles_missing": missing, "buying_group_gap": missing.map(gap)},
        index=frame.index,
    )
