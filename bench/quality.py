"""The product claim over several generated worlds: the model against the MQL rule.

    python -m bench.quality --accounts 5000 --seeds 7 8 9 10 11

A test sees one world, built by our generator for the model to find what it planted: one draw.
Whether the model finds more of the later wins than the MQL rule is a claim about many draws.
For each seed this generates a world (or reuses ``data/quality-<accounts>-seed<seed>``), trains
with the default settings and reads, on each world's test rows: recall in the top 10% of the
model, of the model without third-party intent and of the rule, each method's ratio to the rule
with the interval of the paired ratio (the same accounts drawn for both), and ROC AUC. Writes
``bench/results/quality-<accounts>.json`` and ``.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from bench.measure import RESULTS, ensure_world, stamp
from training.job import TrainJob
from training.settings import TrackingSettings, TrainSettings

METHODS = ("model", "no_intent")  # each compared with the rule


def world_result(world: Path, store: Path, settings: TrainSettings) -> dict[str, Any]:
    """One world: its test rows' positives and later-won deals; the rule's recall; each of
    ``METHODS``' recall, ratio to the rule with its paired interval, and ROC AUC."""
    result = TrainJob(train=settings, tracking=TrackingSettings(store=store)).run(world)
    evaluation = result.evaluation
    metrics = evaluation.metrics
    return {
        "world": str(world),
        "evaluation": result.split["evaluation"],
        "test_positives": result.split["test_positives"],
        "deals": evaluation.deals,
        "mql_recall_at_10": metrics["mql_rule"]["recall_at_10"],
        "mql_roc_auc": metrics["mql_rule"]["roc_auc"],
        **{
            method: {
                "recall_at_10": metrics[method]["recall_at_10"],
                "x_mql": metrics[method]["recall_at_10"] / metrics["mql_rule"]["recall_at_10"],
                "x_mql_interval": list(evaluation.ratios[method]),
                "roc_auc": metrics[method]["roc_auc"],
                "roc_auc_interval": list(evaluation.intervals[method]["roc_auc"]),
            }
            for method in METHODS
        },
    }


def verdicts(worlds: dict[int, dict[str, Any]], confidence: float) -> list[str]:
    """Per method, across the worlds: on how many its ratio to the rule is above 1 by more than
    noise (the paired interval's lower end above 1), and the mean and range of the ratio."""
    lines = []
    for method in METHODS:
        ratios = [w[method]["x_mql"] for w in worlds.values()]
        beyond = sum(w[method]["x_mql_interval"][0] > 1 for w in worlds.values())
        lines.append(
            f"{method}: above the MQL rule beyond noise (lower end of the paired "
            f"{confidence:.0%} interval over 1) on {beyond} of {len(worlds)} worlds; ratio "
            f"{sum(ratios) / len(ratios):.2f}x on average [{min(ratios):.2f}-{max(ratios):.2f}]"
        )
    return lines


def table(result: dict[str, Any]) -> str:
    """The worlds as a Markdown table, then the verdicts."""
    worlds = {int(k): v for k, v in result["worlds"].items()}
    lines = [
        f"{result['accounts']:,} accounts per world, seeds {', '.join(map(str, worlds))}; "
        f"{result['machine']}; {result['date']}",
        "",
        "| seed | positive test snapshots | deals | MQL rule recall@10% | model recall@10%, x rule "
        "[interval] | without intent, x rule [interval] | model ROC AUC [interval] | "
        "MQL rule ROC AUC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for seed, w in worlds.items():
        cells = [
            f"{w[m]['recall_at_10']:.3f}, {w[m]['x_mql']:.2f}x "
            f"[{w[m]['x_mql_interval'][0]:.2f}-{w[m]['x_mql_interval'][1]:.2f}]"
            for m in METHODS
        ]
        lo, hi = w["model"]["roc_auc_interval"]
        mode = "" if w["evaluation"] == "time_split" else " (short history: grouped CV)"
        lines.append(
            f"| {seed}{mode} | {w['test_positives']} | {w['deals']} | "
            f"{w['mql_recall_at_10']:.3f} | "
            + " | ".join(cells)
            + f" | {w['model']['roc_auc']:.3f} [{lo:.3f}-{hi:.3f}] | {w['mql_roc_auc']:.3f} |"
        )
    return "\n".join([*lines, "", *verdicts(worlds, result["confidence"])]) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=5000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9, 10, 11])
    parser.add_argument("--data", type=Path, default=Path("data"), help="where worlds are kept")
    args = parser.parse_args(argv)
    settings = TrainSettings()
    worlds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            world = args.data / f"quality-{args.accounts}-seed{seed}"
            ensure_world(world, args.accounts, seed)
            worlds[seed] = world_result(world, Path(tmp) / f"mlruns-{seed}", settings)
    result = {
        **stamp(),
        "accounts": args.accounts,
        "confidence": settings.confidence,
        "worlds": worlds,
    }
    RESULTS.mkdir(exist_ok=True)
    name = f"quality-{args.accounts}"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = table(result)
    (RESULTS / f"{name}.md").write_text(text)
    print(text)
    return result


if __name__ == "__main__":
    main()
