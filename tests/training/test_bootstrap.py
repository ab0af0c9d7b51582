"""The accounts bootstrap: its point estimate is the evaluation's, accounts move together, and a
paired difference separates a real gain from noise."""

from __future__ import annotations

import numpy as np
import pytest

from training.bootstrap import account_weights, bootstrap, mean_intervals, point_metrics
from training.metrics import evaluate_scores


def _rows(seed: int = 0, n: int = 6000) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    accounts = rng.integers(0, n // 6, n).astype(str)
    as_of = rng.integers(0, 6, n)
    labels = (rng.random(n) < 0.05).astype(float)
    return accounts, as_of, labels, rng.random(n)


@pytest.mark.parametrize("ties", [False, True])
def test_weights_of_one_give_the_evaluation_numbers(ties: bool) -> None:
    # given scores with and without many ties (lead points are mostly 0)
    _, as_of, labels, noise = _rows()
    scores = np.floor(noise * 4) + labels if ties else noise + 0.5 * labels
    probabilities = 1 / (1 + np.exp(-scores))
    # when both implementations measure them
    fast = point_metrics(scores, probabilities, labels, as_of)
    plain = evaluate_scores(scores, probabilities, labels, as_of)
    # then every metric agrees, top-10% ties shared alike
    for key, value in fast.items():
        assert value == pytest.approx(plain[key], rel=1e-9), key


def test_an_account_is_drawn_with_all_its_rows() -> None:
    accounts = np.array(["a", "b", "a", "c", "b", "a"])
    weights = account_weights(accounts, rounds=50, seed=1)
    assert weights.shape == (50, 6)
    assert (weights[:, 0] == weights[:, 2]).all() and (weights[:, 0] == weights[:, 5]).all()
    assert (weights[:, 1] == weights[:, 4]).all()
    # three accounts drawn three times in each replicate
    assert (weights[:, [0, 1, 3]].sum(axis=1) == 3).all()


def test_paired_differences_tell_a_real_gain_from_none() -> None:
    # given a method, the same method again, and a clearly better one, on the same rows
    accounts, as_of, labels, noise = _rows(seed=3)
    weak = noise + 0.3 * labels
    strong = noise + 1.5 * labels
    probabilities = {m: np.clip(s, 0, 1) for m, s in (("a", weak), ("b", weak), ("c", strong))}
    # when they are bootstrapped together
    replicates = bootstrap(
        {"a": weak, "b": weak.copy(), "c": strong},
        probabilities,
        labels,
        as_of,
        accounts,
        rounds=200,
        seed=7,
    )
    # then the identical pair differs by exactly nothing in every replicate, the better one
    # wins in all but a few, and each interval holds its point estimate
    assert (replicates.difference("b", "a", "pr_auc") == 0).all()
    assert np.quantile(replicates.difference("c", "a", "pr_auc"), 0.05) > 0
    lo, hi = replicates.interval("a", "recall_at_10", 0.95)
    point = evaluate_scores(weak, probabilities["a"], labels, as_of)["recall_at_10"]
    assert lo < point < hi and hi - lo > 0.02


def test_a_mean_over_units_is_the_percentile_bootstrap_of_their_accounts_draws() -> None:
    # given rows of 300 accounts, several each and shuffled, and one unit (a later-won deal)
    # per account, listed in another order than the rows
    rng = np.random.default_rng(5)
    rows = rng.permutation(np.repeat([f"a{i:03d}" for i in range(300)], rng.integers(1, 8, 300)))
    units = np.unique(rows)[::-1]
    values = rng.exponential(30.0, len(units))
    # when the mean's interval is bootstrapped
    got = mean_intervals({"m": values}, units, rows, rounds=400, seed=3, confidence=0.9)["m"]
    # then it is the percentile interval of each replicate's mean, each unit counted as many
    # times as account_weights draws its account
    first_row = np.array([np.flatnonzero(rows == u)[0] for u in units])
    drawn = account_weights(rows, rounds=400, seed=3)[:, first_row]
    means = drawn @ values / drawn.sum(axis=1)
    assert got == pytest.approx(tuple(np.quantile(means, [0.05, 0.95])), rel=1e-12)
    assert got[0] < values.mean() < got[1]


def test_a_mean_over_units_uses_the_replicates_of_bootstrap() -> None:
    # given rows with no positive, so that each replicate's Brier score is the weighted mean
    # of the squared probabilities: a mean over the rows in bootstrap's own replicates
    accounts, as_of, _, noise = _rows(seed=4, n=1200)
    replicates = bootstrap(
        {"m": noise},
        {"m": noise},
        np.zeros(len(noise)),
        as_of,
        accounts,
        rounds=300,
        seed=9,
        metrics=("brier",),
    )
    # when the same mean is bootstrapped with each row as a unit, with the same seed and another
    same = mean_intervals({"m": noise**2}, accounts, accounts, rounds=300, seed=9, confidence=0.95)[
        "m"
    ]
    other = mean_intervals(
        {"m": noise**2}, accounts, accounts, rounds=300, seed=10, confidence=0.95
    )["m"]
    # then the same seed gives bootstrap's interval exactly, and another seed does not
    assert same == pytest.approx(replicates.interval("m", "brier", 0.95), rel=1e-12)
    assert other != pytest.approx(same, rel=1e-6)


@pytest.mark.parametrize("account", ["b", "z"], ids=["between-two-accounts", "after-every-one"])
def test_a_unit_whose_account_has_no_row_is_refused(account: str) -> None:
    # given rows of accounts a and c, and a unit of an account with no row
    rows = np.array(["a", "c", "a"])
    # then its mean is refused, naming the account, rather than drawn with another's rows
    with pytest.raises(
        ValueError, match=rf"1 units belong to accounts without a row .*'{account}'"
    ):
        mean_intervals(
            {"m": np.array([1.0, 2.0])},
            np.array(["a", account]),
            rows,
            rounds=100,
            seed=0,
            confidence=0.95,
        )
