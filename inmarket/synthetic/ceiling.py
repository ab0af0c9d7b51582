"""How far any engagement model could get on a generated world: rankings that read the hidden
truth (`_truth/`), measured on the training job's own test rows against the MQL rule.

A model sees buying cycles only through what they leave in the tables. An *oracle* that knows,
at every snapshot, which accounts are researching in a buying cycle (the cycle has started and
its opportunity is not yet open) ranks all of them first; it cannot know which of them will
win. It orders the other accounts by the model without intent, by the hidden fit, or both.
Its recall in the top 10% bounds what better engagement features could add: when the oracle
is below a goal, no feature of first-party engagement reaches it without changing the world.

    python -m inmarket.synthetic.ceiling data/demo
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from training.job import TrainJob, ablation_columns
from training.metrics import evaluate_scores
from training.model import LABEL, META_COLUMNS, fit_model


def researching(rows: pd.DataFrame, episodes: pd.DataFrame, *, dark: bool) -> np.ndarray:
    """Per (account_id, as_of) row: whether a buying cycle of the account has started before
    as_of and not yet opened its opportunity; dark cycles count only when ``dark``."""
    cycles = episodes[episodes["kind"] == "episode"]
    if not dark:
        cycles = cycles[~cycles["dark"]]
    pairs = (
        rows[["account_id", "as_of"]]
        .reset_index(drop=True)
        .rename_axis("row")
        .reset_index()
        .merge(cycles[["account_id", "start", "opportunity_at"]], on="account_id")
    )
    inside = (pairs["start"] < pairs["as_of"]) & (pairs["as_of"] <= pairs["opportunity_at"])
    flags = np.zeros(len(rows), dtype=bool)
    flags[pairs.loc[inside, "row"].to_numpy()] = True
    return flags


def ceiling_table(data: Path) -> pd.DataFrame:
    """Recall in the top 10% and its ratio to the MQL rule's, on the default training job's
    test rows, for the rule, the model without intent and the oracles."""
    job = TrainJob()
    labelled = job.labelled(data, None)
    split, spec, tc = labelled.split, labelled.spec, job.train
    features = [c for c in split.test.columns if c not in (*META_COLUMNS, LABEL)]
    keep = [*META_COLUMNS, *ablation_columns("no_intent", spec, features), LABEL]
    no_intent = fit_model(
        split.train[keep], split.valid[keep], seed=tc.seed, params=tc.lightgbm, spec=spec
    )
    test = split.test
    truth = data / "_truth"
    episodes = pd.read_parquet(truth / "episodes.parquet")
    fit = (
        pd.read_parquet(truth / "accounts.parquet")
        .set_index("account_id")["fit"]
        .reindex(test["account_id"])
    )
    model_rank = pd.Series(no_intent.predict(test[keep], raw_score=True)).rank(pct=True)
    both = (pd.Series(fit.to_numpy()).rank(pct=True) + model_rank).to_numpy()
    model_rank = model_rank.to_numpy()
    visible = researching(test, episodes, dark=False)
    every = researching(test, episodes, dark=True)
    # an oracle's flag outranks any order of the rest (ranks are at most 2)
    rankings = {
        "MQL rule (mql_points_max_90d)": test["mql_points_max_90d"].to_numpy(float),
        "model without intent": model_rank,
        "oracle: visible cycles, then the model": 10 * visible + model_rank,
        "oracle: visible cycles, then fit + model": 10 * visible + both,
        "oracle: every cycle (dark too), then fit + model": 10 * every + both,
    }
    labels, as_of = test[LABEL].to_numpy(), test["as_of"].to_numpy()
    recall = {
        name: evaluate_scores(score, np.full(len(score), 0.5), labels, as_of)["recall_at_10"]
        for name, score in rankings.items()
    }
    mql = recall["MQL rule (mql_points_max_90d)"]
    return pd.DataFrame(
        {
            "recall_at_10": recall,
            "x_mql_rule": {name: value / mql for name, value in recall.items()},
        }
    ).assign(
        test_wins=int(labels.sum()),
        wins_in_visible_cycles=int(labels[visible].sum()),
        rows_in_visible_cycles=f"{visible.mean():.1%}",
    )


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m inmarket.synthetic.ceiling DATA (a generated world)")
    table = ceiling_table(Path(argv[0]))
    with pd.option_context("display.width", 200, "display.precision", 3):
        print(table.to_string())


if __name__ == "__main__":
    main(sys.argv[1:])
