"""Two periods of the same world scored by ``inmarket score`` as a user runs it (issue 26, "tell
someone"): the accounts whose stage rose, told by the command, the run's files, a real webhook
receiver, the API, both CRM exports and the review page in Chromium; a receiver answering 500
fails nothing; an account named as a formula comes out inert in every CSV."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from playwright.sync_api import expect, sync_playwright

from features.io import read_extracted_at
from tests.commands import run_cli
from tests.receiver import Receiver
from tests.serving.server import Server
from tests.stores import client_of, copy_store
from training.job import TrainResult
from training.promotion import promote

pytestmark = pytest.mark.slow
HYPERLINK = '=HYPERLINK("http://x","y")'
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
QUICK_ALERTS = (
    "attempts = 3\nbackoff_seconds = 0.05\nrequest_seconds = 5\ntime_limit_seconds = 30\n"
)


def _level(stage: pd.Series) -> pd.Series:
    """How far up the worked stages, written out here apart from the code: 0 below them."""
    return stage.map({"in-market": 1, "ready": 2}).fillna(0)


def _config(root: Path, name: str, url: str | None) -> Path:
    path = root / f"{name}.toml"
    path.write_text(f'[alerts]\nwebhook_url = "{url}"\n{QUICK_ALERTS}' if url else "")
    return path


@pytest.fixture(scope="module")
def periods(
    trained: tuple[Path, TrainResult], world_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The world (one account renamed as a formula) scored for May, then for June with a
    receiver answering 500, then June again with a receiver answering 200."""
    root = tmp_path_factory.mktemp("periods")
    store = copy_store(trained[0], root / "mlruns")
    assert promote(client_of(store), "inmarket").promoted
    world = root / "world"
    shutil.copytree(world_dir, world)
    accounts = pd.read_parquet(world / "accounts.parquet")
    formula = str(accounts["account_id"].iloc[0])
    accounts.loc[accounts["account_id"] == formula, "name"] = HYPERLINK
    accounts.to_parquet(world / "accounts.parquet", index=False)
    june = read_extracted_at(world)
    assert june is not None
    may = june - timedelta(days=30)  # one scoring period (the features' every_days) before
    out = root / "ranked.parquet"

    def score(when: Any, config: Path) -> Any:
        return run_cli(
            "--config", config, "score", world, "--out", out, "--store", store,
            "--extracted-at", when.strftime("%Y-%m-%dT%H:%M:%S"),
        )  # fmt: skip

    first = score(may, _config(root, "none", None))
    assert first.returncode == 0, first.stderr[-3000:]
    may_ranked = pd.read_parquet(out)
    with Receiver(500) as failing:
        second = score(june, _config(root, "failing", failing.url))
    kept = json.loads(out.with_name("ranked.alerts.json").read_text(encoding="utf-8"))
    with Receiver(200) as answering:
        third = score(june, _config(root, "answering", answering.url))
    yield {
        "root": root,
        "store": store,
        "world": world,
        "may_at": may,
        "out": out,
        "formula": formula,
        "may": may_ranked,
        "june": pd.read_parquet(out),
        "runs": (first, second, third),
        "failing": failing,
        "kept": kept,
        "answering": answering,
    }


def _expected(periods: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The accounts that rose and fell, worked out from the two ranked files alone."""
    before = periods["may"].set_index("account_id")["stage"]
    june = periods["june"]
    then = _level(june["account_id"].map(before))
    now = _level(june["stage"])
    rose = june.loc[(now > then).to_numpy(), "account_id"].tolist()
    converted = june["status"].isin(["in-pipeline", "customer"])  # went on: not fallen
    fell = june.loc[((then > 0) & (now == 0) & ~converted).to_numpy(), "account_id"].tolist()
    return rose, fell


def test_two_periods_list_exactly_the_accounts_whose_stage_rose(periods: dict[str, Any]) -> None:
    first, second, _ = periods["runs"]
    rose, fell = _expected(periods)
    assert rose and fell  # a month of this world moves accounts both ways
    # the first run had nothing to compare with, and said so
    assert "changes: first run at ranked.parquet: nothing to compare with; nothing alerted" in (
        first.stdout
    )
    # June's run lists exactly the accounts whose stage rose, and those that fell out
    june = periods["june"]
    assert june.loc[june["change"] == "rose", "account_id"].tolist() == rose
    assert june.loc[june["change"] == "fell", "account_id"].tolist() == fell
    manifest = json.loads(periods["out"].with_name("ranked.manifest.json").read_text())
    folder = periods["out"].parent / manifest["run"]
    record = json.loads((folder / "ranked.changes.json").read_text())
    assert "ranked.changes.json" in manifest["files"]
    assert [i["account_id"] for i in record["rose"]] == rose
    assert [i["account_id"] for i in record["fell"]] == fell
    assert record["compared_with"]["as_of"] == str(periods["may"]["as_of"].iloc[0])
    day = str(periods["may"]["as_of"].iloc[0])[:10]
    assert f"changes since {day}: {len(rose):,} moved up into in-market or ready (" in second.stdout


def test_a_receiver_answering_500_does_not_fail_the_run(periods: dict[str, Any]) -> None:
    _, second, _ = periods["runs"]
    assert second.returncode == 0, second.stderr[-3000:]
    assert "warning: alerts: the webhook failed (HTTP 500 after 3 attempt(s)); 0 message(s) " in (
        second.stderr
    )
    assert "/hooks/" not in second.stdout + second.stderr  # the URL is a secret
    assert len(periods["failing"].received) == 3  # the first message, tried three times
    owners = {str(o) if o else "(no owner)" for o in periods["june"]["owner"]}
    assert {m["owner"] for m in periods["kept"]["pending"]} <= owners


def test_the_next_run_sends_what_was_kept_one_message_per_owner(periods: dict[str, Any]) -> None:
    _, _, third = periods["runs"]
    assert third.returncode == 0, third.stderr[-3000:]
    received = periods["answering"].received
    rose, fell = _expected(periods)
    # every account that rose or fell, once, in its owner's one message; nothing sent twice
    # although June was scored again
    assert received == periods["kept"]["pending"]
    owners = [m["owner"] for m in received]
    assert len(owners) == len(set(owners))
    assert sorted(i["account_id"] for m in received for i in m["rose"]) == sorted(rose)
    assert sorted(i["account_id"] for m in received for i in m["fell"]) == sorted(fell)
    by_id = periods["june"].set_index("account_id")
    for message in received:
        for item in [*message["rose"], *message["fell"]]:
            assert (item["owner"] or "(no owner)") == message["owner"]
            assert item["stage"] == by_id.loc[item["account_id"], "stage"]
    assert f"alerts: {len(received)} message(s) sent to the webhook, one per owner" in third.stdout


def test_refresh_says_what_changed_and_a_failed_webhook_is_only_a_warning(
    periods: dict[str, Any], tmp_path: Path
) -> None:
    # given May scored into a folder of its own, then a refresh of June's data (no retrain due:
    # the champion was trained on it) with a receiver answering 500
    out = tmp_path / "ranked.parquet"
    world, store = periods["world"], periods["store"]
    at = periods["may_at"].strftime("%Y-%m-%dT%H:%M:%S")
    may = run_cli("score", world, "--out", out, "--store", store, "--extracted-at", at)
    assert may.returncode == 0, may.stderr[-3000:]
    with Receiver(500) as failing:
        config = _config(tmp_path, "failing", failing.url)
        done = run_cli("--config", config, "refresh", world, "--out", out, "--store", store)
    # then the refresh succeeds, its summary says what rose, the failed webhook is a warning
    assert done.returncode == 0, done.stderr[-3000:]
    rose, _ = _expected(periods)
    day = str(periods["may"]["as_of"].iloc[0])[:10]
    assert f"changes since {day}: {len(rose):,} moved up into in-market or ready (" in done.stdout
    assert "warning: alerts: the webhook failed (HTTP 500 after 3 attempt(s))" in done.stderr
    assert len(failing.received) == 3 and "/hooks/" not in done.stdout + done.stderr


@pytest.fixture(scope="module")
def server(periods: dict[str, Any]) -> Iterator[Server]:
    env = {
        "INMARKET_STORE": str(periods["store"]),
        "INMARKET_RANKED": str(periods["out"]),
        "INMARKET_RELOAD_SECONDS": "0",
    }
    with Server(env, periods["root"]) as running:
        assert running.wait("/readyz").status_code == 200
        yield running


def _ids(text: str, key: str) -> list[str]:
    return [row[key] for row in csv.DictReader(io.StringIO(text, newline=""))]


@pytest.mark.parametrize(
    "filters",
    [{"new": "true"}, {"new": "true", "stage": "ready"}, {"stage": "in-market", "min_score": "95"}],
    ids=["new", "new-and-ready", "in-market-95-up"],
)
def test_the_exports_of_a_filtered_view_hold_exactly_the_lists_rows(
    periods: dict[str, Any], server: Server, filters: dict[str, str]
) -> None:
    # given the API's list for a filter, with the busiest owner of the accounts new this period
    june = periods["june"]
    owner = str(june.loc[june["change"] == "rose", "owner"].value_counts().idxmax())
    query = {**filters, "owner": owner}
    listed = httpx.get(f"{server.url}/v1/accounts", params={**query, "limit": 1000}).json()
    ids = [a["account_id"] for a in listed["accounts"]]
    assert ids and listed["total"] == len(ids)
    # when both CRM files of that view are asked for, of the page's route and of the command
    hubspot = httpx.get(f"{server.url}/v1/accounts.csv", params={**query, "format": "hubspot"})
    flags = [f"--{k.replace('_', '-')}" + ("" if k == "new" else f"={v}") for k, v in query.items()]
    salesforce = run_cli("export", "--format", "salesforce", "--ranked", periods["out"], *flags)
    # then each holds exactly those rows, in the list's order
    assert hubspot.status_code == 200 and salesforce.returncode == 0, salesforce.stderr
    assert "in-market_hubspot_" in hubspot.headers["content-disposition"]
    assert _ids(hubspot.text, "inmarket_account_id") == ids
    assert _ids(salesforce.stdout, "Id") == ids
    assert f"exported {len(ids):,} of {len(june):,} accounts for salesforce" in salesforce.stderr


def test_an_account_named_as_a_formula_is_inert_in_every_csv(
    periods: dict[str, Any], server: Server
) -> None:
    formula = periods["formula"]
    inert = "'" + HYPERLINK
    files = {
        "ranked.csv": (periods["out"].with_suffix(".csv").read_text(encoding="utf-8"), "name"),
        "list": (httpx.get(f"{server.url}/v1/accounts.csv").text, "name"),
        "hubspot": (
            httpx.get(f"{server.url}/v1/accounts.csv", params={"format": "hubspot"}).text,
            "name",
        ),
        "salesforce": (
            run_cli("export", "--format", "salesforce", "--ranked", periods["out"]).stdout,
            "InMarket_Account_Name__c",
        ),
    }
    for name, (text, column) in files.items():
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        names = [row[column] for row in rows if formula in row.values()]
        assert names == [inert], name
        assert not any(cell.startswith("=") for row in rows for cell in row.values()), name


def test_new_this_period_survives_a_reload_on_the_page(
    periods: dict[str, Any], server: Server
) -> None:
    june = periods["june"]
    new = int((june["change"] == "rose").sum())
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(server.url + "/")
            expect(page.locator("#accounts tbody tr").first).to_be_visible()
            # when "new this period" is ticked, the list is the accounts that rose, each marked
            page.locator("#f-new").check()
            expect(page.locator("#count")).to_contain_text(f"{new:,} accounts match")
            assert "new=true" in page.url
            marks = page.locator("#accounts tbody .change.rose")
            expect(marks).to_have_count(min(new, 50))
            # and after a reload the filter is still on, the same list shown
            page.reload()
            expect(page.locator("#f-new")).to_be_checked()
            expect(page.locator("#count")).to_contain_text(f"{new:,} accounts match")
            expect(page.locator("#new-count")).to_have_attribute("aria-pressed", "true")
            expect(page.locator("#export-salesforce")).to_have_attribute(
                "href", "/accounts.csv?new=true&format=salesforce"
            )
            # and unticked, every account again
            page.locator("#f-new").uncheck()
            expect(page.locator("#count")).to_contain_text(f"{len(june):,} accounts match")
            assert "new=true" not in page.url
        finally:
            browser.close()
