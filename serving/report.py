"""``inmarket report``: the ranked list as one self-contained HTML file, for people who cannot
reach the service. Same list, summary and model card as the page; no script or style fetched
from anywhere, and every text escaped by the template engine (autoescape on)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from mlflow.tracking import MlflowClient

from features.io import write_text_atomic
from serving.page import HERE
from serving.review import Scoring, records, summary
from training.labels import label_words

METRICS = (
    ("ROC AUC", "roc_auc", 3),
    ("PR AUC", "pr_auc", 3),
    ("Recall in top 10%", "recall_at_10", 3),
    ("Lift in top 10%", "lift_at_10", 2),
)
# the training run's comparison (training.job.Evaluation.comparison), as the card names it
METHODS = {
    "model": "model",
    "no_intent": "without intent",
    "buying_group": "buying group only",
    "mql_rule": "MQL rule",
    "logistic": "logistic",
    "engagement": "engagement",
}


def _with_interval(value: Any, interval: Any, digits: int, unit: str = "") -> str:
    text = _number(value, digits) + unit
    if interval and None not in interval:
        text += f" [{_number(interval[0], digits)}–{_number(interval[1], digits)}]"
    return text


def comparison_table(info: dict[str, Any]) -> dict[str, Any]:
    """The model card's table: a column per method of the training run's comparison, a row per
    metric, each value with its interval, then the later wins found against the MQL rule's and
    the lead days. Models trained before the comparison was kept show model and MQL rule."""
    comparison = info.get("comparison") or {
        name: {"metrics": info.get(metrics) or {}, "intervals": info.get(intervals) or {}}
        for name, metrics, intervals in (
            ("model", "test_metrics", "test_intervals"),
            ("mql_rule", "mql_test_metrics", "mql_test_intervals"),
        )
    }
    methods = [m for m in METHODS if m in comparison]
    rows = [
        {
            "name": label,
            "cells": [
                _with_interval(
                    comparison[m]["metrics"].get(key),
                    comparison[m].get("intervals", {}).get(key),
                    digits,
                )
                for m in methods
            ],
        }
        for label, key, digits in METRICS
    ]
    if all("vs_mql" in comparison[m] for m in methods):
        rows.append(
            {
                "name": "Recall in top 10%, x the MQL rule's",
                "cells": [
                    _with_interval(comparison[m]["vs_mql"], comparison[m]["vs_mql_interval"], 2)
                    for m in methods
                ],
            }
        )
        if all("deals_found" in comparison[m] for m in methods):
            rows.append(
                {
                    "name": "Later-won deals on the list beforehand",
                    "cells": [
                        _with_interval(
                            comparison[m]["deals_found"], comparison[m]["deals_found_interval"], 3
                        )
                        for m in methods
                    ],
                }
            )
        rows.append(
            {
                "name": f"Lead days (mean over {info.get('lead_time_deals', 0):,} later wins)",
                "cells": [
                    _with_interval(
                        comparison[m]["lead_days"], comparison[m]["lead_days_interval"], 1
                    )
                    for m in methods
                ],
            }
        )
    return {"columns": [METHODS[m] for m in methods], "rows": rows}


# the training run's lead-time figures (training.job): the test window's later-won deals, how
# many each method had in its top 10% beforehand, and its mean days of warning per deal
_WON_DEALS = {
    "deals": "test_lead_time_deals_total",
    "model": "test_lead_time_deals",
    "mql_rule": "mql_rule_test_lead_time_deals",
    "model_days": "test_lead_time_days",
    "mql_rule_days": "mql_rule_test_lead_time_days",
}


def won_deals_found(client: MlflowClient, name: str, version: str) -> dict[str, float] | None:
    """How many of the test window's later-won deals the model and the MQL rule had in their
    top 10% beforehand, as the model's training run logged it; None when it did not."""
    run_id = client.get_model_version(name, version).run_id
    metrics = client.get_run(run_id).data.metrics if run_id else {}
    if _WON_DEALS["deals"] not in metrics:
        return None
    return {key: metrics[metric] for key, metric in _WON_DEALS.items() if metric in metrics}


def card_in_words(model: dict[str, Any]) -> list[str]:
    """The model card in a marketer's words: of the deals later won, how many were at accounts
    in the top 10% beforehand, against the MQL rule; how often the top 10% won."""
    said = []
    deals = model.get("won_deals") or {}
    ours, mql = model.get("test_metrics") or {}, model.get("mql_test_metrics") or {}
    if deals.get("deals"):
        found = {key: deals.get(key, 0) for key in _WON_DEALS}
        said.append(
            f"Of the {found['deals']:,.0f} deals won in the test window, {found['model']:,.0f} "
            "were at accounts in our top 10% beforehand (a warning of "
            f"{found['model_days']:,.0f} days a deal on average); the MQL rule had "
            f"{found['mql_rule']:,.0f} of them ({found['mql_rule_days']:,.0f} days)."
        )
    elif ours.get("recall_at_10") is not None and mql.get("recall_at_10") is not None:
        said.append(
            f"Of the snapshots before a later win, {ours['recall_at_10']:.0%} had "
            f"the account in our top 10%; {mql['recall_at_10']:.0%} in the MQL rule's."
        )
    if ours.get("lift_at_10") is not None:
        said.append(
            f"Accounts in our top 10% went on to win {ours['lift_at_10']:.1f} times as often as "
            "the average account."
        )
    return said


def _number(value: Any, digits: int = 0) -> str:
    if value is None or value != value:
        return "–"
    return f"{float(value):,.{digits}f}"


def render_report(ranked: Path, model: dict[str, Any] | None, limit: int | None = 1000) -> str:
    """The report's HTML: summary, model card (when known) and the top ``limit`` accounts."""
    scoring = Scoring.read(ranked)
    rows = scoring.ranked if not limit else scoring.ranked.head(limit)
    environment = Environment(
        loader=FileSystemLoader(HERE),
        autoescape=select_autoescape(["html", "j2"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["number"] = _number
    environment.filters["words"] = lambda text: str(text or "").replace("_", " ")
    template = environment.get_template("report.html.j2")
    return template.render(
        summary=summary(scoring.ranked),
        accounts=records(rows),
        shown=len(rows),
        model=model,
        in_words=card_in_words(model) if model else [],
        comparison=comparison_table(model) if model else None,
        label_text=(label_words(model["label"], model["horizon_days"]) if model else ""),
        css=(HERE / "static" / "style.css").read_text(encoding="utf-8"),
    )


def write_report(ranked: Path, out: Path, model: dict[str, Any] | None, limit: int | None) -> int:
    """Write the report atomically; the number of accounts listed."""
    text = render_report(ranked, model, limit)
    write_text_atomic(text, out)
    return text.count('<tr class="account"')
