"""The product claim's benchmark: a world counts for the model only when the paired interval of
its ratio to the MQL rule is above 1, not when the point ratio is."""

from __future__ import annotations

from typing import Any

from bench.quality import table, verdicts


def _world(model: tuple[float, float, float], no_intent: tuple[float, float, float]) -> Any:
    """A world's result: each method's ratio to the rule and its paired interval (lo, x, hi)."""
    return {
        "evaluation": "time_split",
        "test_positives": 165,
        "deals": 41,
        "mql_recall_at_10": 0.5,
        "mql_roc_auc": 0.7,
        **{
            name: {
                "recall_at_10": 0.5 * x,
                "x_mql": x,
                "x_mql_interval": [lo, hi],
                "roc_auc": 0.85,
                "roc_auc_interval": [0.8, 0.9],
            }
            for name, (lo, x, hi) in (("model", model), ("no_intent", no_intent))
        },
    }


def test_a_world_counts_only_when_the_paired_interval_is_above_the_rule() -> None:
    # given two worlds where the model's point ratio is above 1 on both, but the interval of
    # the paired ratio holds 1 on the second; and the model without intent below 1 on one
    worlds = {
        7: _world((1.2, 1.5, 1.9), (1.05, 1.2, 1.4)),
        8: _world((0.95, 1.3, 1.7), (0.7, 0.9, 1.1)),
    }
    # when the verdicts are put in words
    model, no_intent = verdicts(worlds, 0.95)
    # then each method counts the worlds it beats the rule on beyond noise, with its ratios
    assert model == (
        "model: above the MQL rule beyond noise (lower end of the paired 95% interval over 1) "
        "on 1 of 2 worlds; ratio 1.40x on average [1.30-1.50]"
    )
    assert "on 1 of 2 worlds; ratio 1.05x on average [0.90-1.20]" in no_intent
    # and the table has a row per world, then the verdicts
    text = table(
        {"worlds": worlds, "accounts": 5000, "machine": "m", "date": "d", "confidence": 0.95}
    )
    assert "| 8 | 165 | 41 | 0.500 | 0.650, 1.30x [0.95-1.70] |" in text
    assert text.rstrip().endswith("[0.90-1.20]")
