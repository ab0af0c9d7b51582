"""The model card and the ranked accounts of a real server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.serving.server import Server

pytestmark = pytest.mark.slow


def test_model_card_and_ranked_accounts(served: tuple[Server, Path]) -> None:
    # given a server with a champion and a batch scoring
    server, ranked = served
    # when the model card and pages of ranked accounts are asked for
    card = httpx.get(server.url + "/model", timeout=30).json()
    page = httpx.get(server.url + "/accounts", params={"limit": 5, "offset": 5}, timeout=30).json()
    ready = httpx.get(
        server.url + "/accounts", params={"stage": "ready", "limit": 1000}, timeout=30
    ).json()
    empty = httpx.get(server.url + "/accounts", params={"limit": 0}, timeout=30)
    # then the card shows the champion's and the MQL rule's test metrics (which wins is the
    # paired interval's question, asked in training and in bench/quality.py, not of one world
    # here), the pages follow the ranking and the filter, and a limit of 0 is refused
    assert card["alias"] == "champion" and card["features"]
    assert set(card["test_metrics"]) == set(card["mql_test_metrics"]) >= {"roc_auc", "pr_auc"}
    # each with its bootstrap interval, and how it was evaluated
    lo, hi = card["test_intervals"]["recall_at_10"]
    assert lo <= card["test_metrics"]["recall_at_10"] <= hi and lo < hi
    assert card["mql_test_intervals"]["pr_auc"] and card["evaluation"] == "time_split"
    # and the card's table has every method of the comparison, each value with its interval
    table = card["comparison_table"]
    assert table["columns"] == [
        "model",
        "without intent",
        "buying group only",
        "MQL rule",
        "logistic",
        "engagement",
    ]
    rows = {row["name"].split(" (")[0]: row["cells"] for row in table["rows"]}
    assert rows["Recall in top 10%, x the MQL rule's"][3] == "1.00 [1.00–1.00]"
    assert all("[" in cell for cell in rows["Lead days"]), rows["Lead days"]
    assert card["drift"]["psi"]
    # the list was scored by the version that serves /score (a promotion since would differ)
    assert card["scored_list"]["model_version"] == card["version"]
    assert all(a["model_version"] == card["version"] for a in page["accounts"])
    assert page["total"] == len(pd.read_parquet(ranked))
    assert [a["rank"] for a in page["accounts"]] == [6, 7, 8, 9, 10]
    assert all(a["stage"] == "ready" for a in ready["accounts"])
    assert empty.status_code == 422
