"""An approximate ceiling for engagement models on generated worlds: rankings that read the
hidden truth (``_truth/``), measured on the training job's own test rows and later-won deals,
against the MQL rule, with paired account-bootstrap intervals.

A model sees buying cycles only through what they leave in the tables. An *oracle* that knows,
at every snapshot, which accounts are researching in a buying cycle (the cycle has started and
its opportunity is not yet open) ranks all of them first; it cannot know which of them will
win. It orders the other accounts by the model without intent, by the hidden fit, or both.
This is a ceiling under the world's own assumptions (how research is timed, how many wins come
from cycles), not a strict bound: a model could beat it by ranking the wins outside visible
cycles better than the model without intent does.

    python -m inmarket.synthetic.ceiling DATA [DATA ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from features.settings import FeatureSpec
from features.sources import open_source
from inmarket.synthetic import TRUTH_DIR
from training.baselines import fit_baselines
from training.bootstrap import bootstrap, mean_intervals
from training.evaluation import ablation_columns
from training.job import TrainJob
from training.metrics import deal_warnings, evaluate_scores, lead_times
from training.model import LABEL, META_COLUMNS, fit_model
from training.settings import TrainSettings
from training.split import Folds, Split, SplitError

MQL = "mql_rule"
RANKINGS = {
    MQL: "the MQL rule (mql_points_max_90d)",
    "no_intent": "the model without third-party intent",
    "visible_then_model": "oracle: accounts in a visible (not dark) cycle first, then the model",
    "visible_then_fit": "oracle: visible cycles first, then the hidden fit alone",
    "visible_then_fit_model": "oracle: visible cycles first, then hidden fit + the model",
    "every_then_fit_model": "oracle: every cycle (dark ones too) first, then fit + the model",
}


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


def ceiling_table(
    data: Path, job: TrainJob | None = None, features_path: Path | None = None
) -> pd.DataFrame:
    """Per ranking (``RANKINGS``), on the test rows and later-won deals of ``job`` (default
    settings if None): recall in the top 10% with its interval and its ratio to the MQL rule's
    with the interval of the paired ratio; the deals it flagged (``deal_warnings``) with the
    interval of that share, its ratio to the rule's, and the mean days of warning. Intervals
    are over the same account replicates. The columns ``rows``, ``wins``,
    ``wins_in_visible_cycles`` and ``deals`` are the world's, the same on every row."""
    truth = data / TRUTH_DIR
    if not (truth / "episodes.parquet").exists():
        raise FileNotFoundError(
            f"{truth}/episodes.parquet: not found; the ceiling reads a generated world's hidden "
            "truth: give a folder written by inmarket generate"
        )
    job = job or TrainJob()
    labelled = job.labelled(open_source(data, job.data), features_path)
    split = labelled.split
    if isinstance(split, Folds):
        raise SplitError(
            f"{data}: short-history mode ({split.reason}); the ceiling is measured on a time "
            "split's test window: generate a longer history (inmarket generate --days)"
        )
    scores, visible = _rankings(split, labelled.spec, job.train, truth)
    return _measure(scores, visible, split.test, labelled.dataset.opportunities, job.train)


def _rankings(
    split: Split, spec: FeatureSpec, tc: TrainSettings, truth: Path
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every ranking's scores of the test rows (``RANKINGS``), and which rows are in a visible
    buying cycle: the oracles read the hidden truth in ``truth``."""
    test = split.test
    features = [c for c in test.columns if c not in (*META_COLUMNS, LABEL)]
    keep = [*META_COLUMNS, *ablation_columns("no_intent", spec, features), LABEL]
    no_intent = fit_model(
        split.train[keep], split.valid[keep], seed=tc.seed, params=tc.lightgbm, spec=spec
    )
    mql = next(b for b in fit_baselines(split.train, split.valid, tc.seed) if b.name == MQL)
    episodes = pd.read_parquet(truth / "episodes.parquet")
    fit = pd.read_parquet(truth / "accounts.parquet").set_index("account_id")["fit"]
    fit_rank = fit.reindex(test["account_id"]).rank(pct=True).to_numpy()
    model_rank = pd.Series(no_intent.predict(test[keep], raw_score=True)).rank(pct=True)
    model_rank = model_rank.to_numpy()
    visible = researching(test, episodes, dark=False)
    every = researching(test, episodes, dark=True)
    # a flag outranks any order of the rest: the ranks below it are at most 2
    scores = {
        MQL: np.asarray(mql.score(test), dtype=float),
        "no_intent": model_rank,
        "visible_then_model": 10 * visible + model_rank,
        "visible_then_fit": 10 * visible + fit_rank,
        "visible_then_fit_model": 10 * visible + fit_rank + model_rank,
        "every_then_fit_model": 10 * every + fit_rank + model_rank,
    }
    return scores, visible


def _measure(
    scores: dict[str, np.ndarray],
    visible: np.ndarray,
    test: pd.DataFrame,
    opportunities: pd.DataFrame,
    tc: TrainSettings,
) -> pd.DataFrame:
    """The table ``ceiling_table`` returns, from the rankings' scores of the test rows."""
    labels, as_of = test[LABEL].to_numpy(), test["as_of"].to_numpy()
    accounts = test["account_id"].to_numpy()
    unused = {name: np.full(len(test), 0.5) for name in scores}  # no probabilities: no Brier
    recall = {
        name: evaluate_scores(score, unused[name], labels, as_of)["recall_at_10"]
        for name, score in scores.items()
    }
    replicates = bootstrap(
        scores,
        unused,
        labels,
        as_of,
        accounts,
        rounds=tc.bootstrap_rounds,
        seed=tc.seed,
        metrics=("recall_at_10",),
    )
    deals, warnings = deal_warnings(test, scores, opportunities, tc.horizon_days)
    flagged = {name: (days > 0).astype(float) for name, days in warnings.items()}
    deal_intervals = mean_intervals(
        flagged,
        deals["account_id"].to_numpy(),
        accounts,
        rounds=tc.bootstrap_rounds,
        seed=tc.seed,
        confidence=tc.confidence,
    )
    leads = lead_times(warnings)
    rows = {}
    for name in scores:
        recall_lo, recall_hi = replicates.interval(name, "recall_at_10", tc.confidence)
        ratio_lo, ratio_hi = replicates.ratio_interval(name, MQL, "recall_at_10", tc.confidence)
        rows[name] = {
            "recall_at_10": recall[name],
            "recall_lo": recall_lo,
            "recall_hi": recall_hi,
            "x_mql_rule": recall[name] / recall[MQL],
            "x_mql_lo": ratio_lo,
            "x_mql_hi": ratio_hi,
            "deals_flagged": leads[name][1],
            "deal_recall": leads[name][1] / len(deals) if len(deals) else np.nan,
            "deal_recall_lo": deal_intervals[name][0],
            "deal_recall_hi": deal_intervals[name][1],
            "deals_x_mql_rule": leads[name][1] / leads[MQL][1] if leads[MQL][1] else np.nan,
            "lead_days": leads[name][0],
        }
    return pd.DataFrame.from_dict(rows, orient="index").assign(
        rows=len(test),
        wins=int(labels.sum()),
        wins_in_visible_cycles=int(labels[visible].sum()),
        deals=len(deals),
    )


def world_lines(data: Path, table: pd.DataFrame) -> list[str]:
    """One world's table in words and numbers."""
    rows, wins, visible, deals = (
        int(table[c].iloc[0]) for c in ("rows", "wins", "wins_in_visible_cycles", "deals")
    )
    lines = [
        f"{data}: {rows:,} test rows, {wins} positive (snapshots before a later win), "
        f"{visible} of them in a visible cycle; {deals} later-won deals",
        f"{'':<24}{'recall in top 10%':>26}{'x the MQL rule':>22}{'deals flagged':>26}"
        f"{'lead days':>11}",
    ]
    for name, r in table.iterrows():
        lines.append(
            f"{name:<24}"
            f"{r['recall_at_10']:>9.3f} [{r['recall_lo']:.3f}-{r['recall_hi']:.3f}]"
            f"{r['x_mql_rule']:>9.2f} [{r['x_mql_lo']:.2f}-{r['x_mql_hi']:.2f}]"
            f"{int(r['deals_flagged']):>6}/{deals} = {r['deal_recall']:.2f}"
            f" [{r['deal_recall_lo']:.2f}-{r['deal_recall_hi']:.2f}]"
            f"{r['lead_days']:>11.1f}"
        )
    return lines


def summary_lines(tables: dict[Path, pd.DataFrame]) -> list[str]:
    """Across worlds, per ranking: the mean and range of its ratio to the MQL rule, on
    positive snapshots and on deals."""
    every = pd.concat(tables.values(), keys=[str(p) for p in tables], names=["world", "ranking"])
    lines = [
        f"across {len(tables)} world(s): ratio to the MQL rule, mean [min-max]",
        f"{'':<24}{'positive snapshots':>24}{'deals flagged':>24}",
    ]
    for name in RANKINGS:
        rows = every.xs(name, level="ranking")
        cells = [
            f"{rows[c].mean():.2f} [{rows[c].min():.2f}-{rows[c].max():.2f}]"
            for c in ("x_mql_rule", "deals_x_mql_rule")
        ]
        lines.append(f"{name:<24}" + "".join(f"{c:>24}" for c in cells))
    return lines


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(
            "usage: python -m inmarket.synthetic.ceiling DATA [DATA ...] (generated worlds)"
        )
    settings = TrainSettings()
    tables = {}
    for data in map(Path, argv):
        tables[data] = ceiling_table(data, TrainJob(train=settings))
        print("\n".join(world_lines(data, tables[data])), "", sep="\n", flush=True)
    print("\n".join(summary_lines(tables)))
    print("", *(f"{name}: {what}" for name, what in RANKINGS.items()), sep="\n")
    print(
        f"[a-b]: {settings.confidence:.0%} interval, accounts resampled (the same replicates "
        "for every ranking); deals flagged: later-won deals whose account was in the top 10% "
        f"at a snapshot in the {settings.horizon_days} days before the deal; lead days: mean "
        "days between a deal's creation and its account's first snapshot in the top 10% (0 if "
        "never)"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
