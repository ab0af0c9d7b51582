"""``inmarket report``: the ranked list as one self-contained HTML file, for people who cannot
reach the service. Same list, summary and model card as the page; no script or style fetched
from anywhere, and every text escaped by the template engine (autoescape on)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from features.io import write_text_atomic
from serving.page import HERE
from serving.review import Scoring, records, summary

METRICS = (
    ("ROC AUC", "roc_auc", 3),
    ("PR AUC", "pr_auc", 3),
    ("Recall in top 10%", "recall_at_10", 3),
    ("Lift in top 10%", "lift_at_10", 2),
)


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
        metrics=METRICS,
        css=(HERE / "static" / "style.css").read_text(encoding="utf-8"),
    )


def write_report(ranked: Path, out: Path, model: dict[str, Any] | None, limit: int | None) -> int:
    """Write the report atomically; the number of accounts listed."""
    text = render_report(ranked, model, limit)
    write_text_atomic(text, out)
    return text.count('<tr class="account"')
