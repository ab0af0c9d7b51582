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
from typing import cast

import numpy as np
import pandas as pd

from features.catalogue import COUNT, SENIORITY_WORDS, TRACKED_ROLES, Feature, catalogue
from features.contract import KEY_ROLES
from training.model import InMarketModel

STAGES = (("cold", 0), ("aware", 40), ("engaged", 70), ("in-market", 90), ("ready", 97))
# Accounts outside the population the model learned (labels leave them out) are shown with
# their status instead of a score: they are not ranked, staged or counted among prospects.
# "new": in the CRM since the newest snapshot, so without features yet (listed, not scored).
STATUSES = ("prospect", "in-pipeline", "customer", "new")


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


# the two directions of a contribution, as the page and the export say them
RAISING, HOLDING_BACK = "raising the score", "holding it back"
# per row and direction: reasons of timing (why now), and of fit and history, kept apart
TOP_NOW, TOP_FIT, TOP_UNUSUAL = 3, 2, 2
# the noun after a 1, singular: "1 page view", "1 senior person", "1 deal lost"
_ONE = re.compile(r"(?<![\d.,])(1 (?:[a-z-]+ ){0,2}?[a-z-]*?)(?<!ou)(?<!s)s\b")
_ONE_PERSON = re.compile(r"(?<![\d.,])1 ((?:senior )?)people\b")


def _sentence(feature: Feature, value: object, contribution: float) -> tuple[str, bool]:
    """The reason's sentence in plain words (the row's ``words``), and whether it reads the right
    way round: "no champion engaged" holding the score back does, "a champion engaged" holding
    it back (or "no champion engaged" raising it) does not: the model weighs the flag with other
    signals, and it is not told as a reason. A count holding the score back reads "only 5
    people ..."; an absence raising it ("no content downloads") is said as it is.
    """
    words = feature.words
    raising = contribution > 0
    missing = value is None or (isinstance(value, float | np.floating) and np.isnan(value))
    if missing and not (words.missing_is_none and words.none):
        return f"not known yet: {feature.description}", True
    if not missing and not isinstance(value, int | float | np.number):  # a category
        return words.some.format(text=str(value).replace("_", " ")), True
    number = 0.0 if missing else float(cast(float, value))
    none = missing if words.buying is False else number == 0 and bool(words.none)
    if none:
        return words.none, not (words.flag and raising)
    template, usual = words.some, True
    if words.buying and not raising:
        usual = not words.flag
        template = template.replace(COUNT, f"only {COUNT}", 1)  # a count: "only 5 people ..."
    level = SENIORITY_WORDS[int(number)] if 0 <= number < len(SENIORITY_WORDS) else "unknown"
    # a declared account column's words ("seats: {text}") say a number as it is
    said = f"{number:,.0f}" if number.is_integer() else f"{number:,.4g}"
    text = template.format(v=number, level=level, text=said)
    if number == 1:  # "1 department", "1 person"
        text = _ONE.sub(r"\1", _ONE_PERSON.sub(r"1 \1person", text))
    return text, usual


def explain_rows(
    model: InMarketModel, frame: pd.DataFrame
) -> list[dict[str, list[dict[str, object]]]]:
    """The reasons of each row, in words: ``positive`` (raising the score) and ``negative``
    (holding it back), each with up to ``TOP_NOW`` reasons of timing (kind ``now``: why now)
    then up to ``TOP_FIT`` of fit and history (kind ``fit``), largest first; and ``unusual``:
    up to ``TOP_UNUSUAL`` contributions against the usual direction of their value that would
    have been among those told (the words would read backwards: set aside, not hidden)."""
    contributions = model.contributions(frame)
    values = contributions.to_numpy()
    order = np.argsort(-np.abs(values), axis=1)
    features = {f.name: f for f in catalogue(model.spec)}
    names = list(model.features)
    # a reason's kind as the page and the files say it: "now" (timing) or "fit"
    kinds = np.array(
        ["now" if features[n].kind == "timing" else "fit" for n in names], dtype=object
    )
    columns: dict[str, np.ndarray] = {}  # the columns some reason quotes, as arrays

    def cell(feature: str, row: int) -> object:
        if feature not in columns:
            columns[feature] = frame[feature].to_numpy()
        return columns[feature][row]

    room = {
        ("positive", "now"): TOP_NOW,
        ("positive", "fit"): TOP_FIT,
        ("negative", "now"): TOP_NOW,
        ("negative", "fit"): TOP_FIT,
        ("unusual", "now"): TOP_UNUSUAL,
    }
    sides = {key: n for key, n in room.items() if key[0] != "unusual"}
    explained = []
    for row, ranking in enumerate(order):  # formatting words, per requested row
        found: dict[tuple[str, str], list[dict[str, object]]] = {key: [] for key in room}
        for i in ranking:  # largest first, until every side's lists are full
            contribution = float(values[row, i])
            if contribution == 0 or all(len(found[k]) == n for k, n in sides.items()):
                break
            side = "positive" if contribution > 0 else "negative"
            if len(found[side, kinds[i]]) == room[side, kinds[i]]:
                continue  # an unusual one is set aside only where it would have been told
            value = cell(names[i], row)
            text, usual = _sentence(features[names[i]], value, contribution)
            key = (side, kinds[i]) if usual else ("unusual", "now")
            if len(found[key]) < room[key]:
                found[key].append(
                    {
                        "feature": names[i],
                        "value": None
                        if pd.isna(value)
                        else (value.item() if hasattr(value, "item") else value),
                        "contribution": contribution,
                        "kind": str(kinds[i]),
                        "direction": RAISING if contribution > 0 else HOLDING_BACK,
                        "text": text,
                    }
                )
        explained.append(
            {
                "positive": found["positive", "now"] + found["positive", "fit"],
                "negative": found["negative", "now"] + found["negative", "fit"],
                "unusual": found["unusual", "now"],
            }
        )
    return explained


def why_now(reasons: dict[str, list[dict[str, object]]]) -> str:
    """The list's "why now": the reasons of timing raising the score, never fit or history."""
    return "; ".join(str(r["text"]) for r in reasons["positive"] if r["kind"] == "now")


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
