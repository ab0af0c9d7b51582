"""The review page in a real headless Chromium against a real `bentoml serve` process."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from features.settings import DataSettings, FeatureSettings
from serving.batch import score_batch
from serving.runs import published
from tests.serving.server import Server
from tests.stores import client_of, copy_store
from training.job import TrainResult
from training.promotion import promote
from training.registry import load_model

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
HOSTILE_NAME = "<img src=x onerror=alert(1)>"
HOSTILE_TITLE = "<script>alert(2)</script> Head of IT"
HOSTILE_TOPIC = "<b onmouseover=alert(3)>pricing</b>"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


@pytest.fixture(scope="module")
def hostile_world(world_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The test world with markup in one busy prospect's name, a person's title and topics (a
    prospect: customers and accounts in pipeline are listed without reasons)."""
    world = tmp_path_factory.mktemp("hostile") / "world"
    shutil.copytree(world_dir, world)
    events = pd.read_parquet(world / "events.parquet")
    recent = events[events["timestamp"] >= events["timestamp"].max() - pd.Timedelta(days=60)]
    deals = pd.read_parquet(world / "opportunities.parquet")
    recent = recent[~recent["account_id"].isin(deals["account_id"])]
    account = str(recent.dropna(subset=["person_id"])["account_id"].value_counts().idxmax())
    person = str(recent[recent["account_id"] == account]["person_id"].dropna().iloc[0])
    accounts = pd.read_parquet(world / "accounts.parquet")
    accounts.loc[accounts["account_id"] == account, "name"] = HOSTILE_NAME
    accounts.to_parquet(world / "accounts.parquet")
    people = pd.read_parquet(world / "people.parquet")
    people.loc[people["person_id"] == person, "title"] = HOSTILE_TITLE
    people.to_parquet(world / "people.parquet")
    events.loc[events["person_id"] == person, "topic"] = HOSTILE_TOPIC
    events.to_parquet(world / "events.parquet")
    return {"world": world, "account": account, "person": person}


@pytest.fixture(scope="module")
def scored(
    trained: tuple[Path, TrainResult],
    hostile_world: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("page")
    store = copy_store(trained[0], root / "mlruns")
    promote(client_of(store), "inmarket")
    ranked = root / "ranked.parquet"
    score_batch(
        load_model("models:/inmarket@champion"),
        hostile_world["world"],
        ranked,
        DataSettings(),
        FeatureSettings(),
    )
    return {**hostile_world, "store": store, "ranked": ranked, "root": root}


def _published(scored: dict[str, Any], kind: str) -> pd.DataFrame:
    """A side table of the published scoring run, read through its manifest."""
    run = published(scored["ranked"])
    assert run is not None
    return pd.read_parquet(io.BytesIO(run.read(f"ranked.{kind}.parquet")))


@contextmanager
def _serving(scored: dict[str, Any], **env: str) -> Iterator[Server]:
    """A ready server on the scored store and ranking, with ``env`` added; stopped after."""
    with Server(
        {
            "INMARKET_STORE": str(scored["store"]),
            "INMARKET_RANKED": str(scored["ranked"]),
            "INMARKET_RELOAD_SECONDS": "0",
            **env,
        },
        scored["root"],
    ) as server:
        assert server.wait("/readyz").status_code == 200
        yield server


@pytest.fixture(scope="module")
def server(scored: dict[str, Any]) -> Iterator[Server]:
    with _serving(scored) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Watched:
    """What a page did besides rendering: dialogs opened, script errors, URLs requested."""

    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)


@pytest.fixture
def watched() -> Watched:
    return Watched()


@pytest.fixture
def page(browser: Browser, server: Server, watched: Watched) -> Iterator[Page]:
    """The review page, fresh, with its dialogs, script errors and requests recorded."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    opened = context.new_page()
    opened.on("dialog", _recording_into(watched.dialogs))
    opened.on("pageerror", lambda e: watched.errors.append(str(e)))
    opened.on("request", lambda r: watched.urls.append(r.url))
    opened.goto(server.url + "/")
    expect(opened.locator("#accounts tbody tr").first).to_be_visible()
    yield opened
    assert watched.errors == []
    context.close()


def _recording_into(messages: list[str]) -> Callable[[Dialog], None]:
    """A dialog handler that records the dialog's message and dismisses it."""

    def record(dialog: Dialog) -> None:
        messages.append(dialog.message)
        dialog.dismiss()

    return record


def _scores(page: Page) -> list[int]:
    return [int(t) for t in page.locator("#accounts tbody td.score").all_inner_texts()]


def _wait_for_count(page: Page, total: int) -> None:
    expect(page.locator("#count")).to_contain_text(f"{total:,} accounts match")


def test_the_list_loads_sorted_by_score(
    page: Page, server: Server, scored: dict[str, Any], watched: Watched
) -> None:
    # given the review page open on the ranking
    ranked = pd.read_parquet(scored["ranked"])
    _wait_for_count(page, len(ranked))
    # when it is read, paged, sorted by score both ways and back by rank
    # then, step by step: 50 rows a page in score order, highest and lowest score first as
    # sorted, and nothing fetched from elsewhere
    scores = _scores(page)
    assert len(scores) == 50
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == ranked["score"].max()
    names = page.locator("#accounts tbody .account-link .name").all_inner_texts()
    assert names[:3] == ranked["name"].head(3).tolist()
    page.locator("#next").click()
    expect(page.locator("#page-info")).to_contain_text("page 2 of 50")
    assert _scores(page)[0] <= scores[-1]
    page.locator("th[data-sort=score]").click()  # score, lowest first now
    expect(page.locator("th[data-sort=score]")).to_have_attribute("aria-sort", "descending")
    page.locator("th[data-sort=score]").click()
    expect(page.locator("th[data-sort=score]")).to_have_attribute("aria-sort", "ascending")
    assert _scores(page)[0] == ranked["score"].min()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("th[data-sort=rank]").click()
    expect(page.locator("th[data-sort=rank]")).to_have_attribute("aria-sort", "ascending")
    expect(page.locator("#accounts tbody td.rank").first).to_have_text("1")
    expect(page.locator("#page-info")).to_contain_text("page 1 of 50")
    page.screenshot(path=str(SCREENSHOTS / "list.png"))
    # the model card says in words how many later wins were in the top 10% (the training run's
    # figures), beside the metrics
    expect(page.locator("#model-card .in-words").first).to_contain_text(
        "deals won in the test window"
    )
    expect(page.locator("#model-card table")).to_contain_text("buying group only")
    expect(page.locator("#model-card")).to_contain_text(
        "label: a new-business deal created within 90 days, won (whenever it closed)."
    )
    expect(page.locator("#model-card table")).to_contain_text("Recall in top 10%, x the MQL")
    external = [u for u in watched.urls if not u.startswith((server.url, "data:"))]
    assert external == [], "the page fetched something from elsewhere"


def test_filters_narrow_the_list(page: Page, scored: dict[str, Any]) -> None:
    # given the review page open on the ranking
    ranked = pd.read_parquet(scored["ranked"])
    # when a stage, a region and a minimum score are chosen one after the other
    # then, step by step: the count follows each filter and the rows are the ranking's
    page.locator("#f-stage input[value=in-market]").check()
    expected = ranked[ranked["stage"] == "in-market"]
    _wait_for_count(page, len(expected))
    assert set(page.locator("#accounts tbody .stage").all_inner_texts()) == {"in-market"}
    region = str(expected["region"].mode().iloc[0])
    page.locator("#f-region").select_option(region)
    both = expected[expected["region"].astype("str") == region]
    _wait_for_count(page, len(both))
    page.locator("#f-min-score").fill("95")
    narrowed = both[both["score"] >= 95]
    _wait_for_count(page, len(narrowed))
    assert sorted(page.locator("#accounts tbody td.rank").all_inner_texts(), key=int) == [
        str(r) for r in narrowed["rank"].head(50)
    ]


def test_search_finds_an_account_by_domain(page: Page, scored: dict[str, Any]) -> None:
    # given the review page and an account from the middle of the ranking
    ranked = pd.read_parquet(scored["ranked"])
    target = ranked.iloc[len(ranked) // 2]
    # when its domain is searched for, in capitals
    page.locator("#f-q").fill(str(target["domain"]).upper())
    # then it is the one account listed
    _wait_for_count(page, 1)
    expect(page.locator("#accounts tbody .account-link .name")).to_have_text(str(target["name"]))


def test_the_account_view_shows_timeline_reasons_and_missing_roles(
    page: Page, scored: dict[str, Any]
) -> None:
    # given the review page and the busy account with markup in its name
    ranked = pd.read_parquet(scored["ranked"])
    account = ranked[ranked["account_id"] == scored["account"]].iloc[0]
    # when it is searched for and opened
    page.locator("#f-q").fill(str(account["domain"]))
    _wait_for_count(page, 1)
    page.locator("#accounts tbody .account-link").click()
    # then its view shows the score history, weekly timeline, people, reasons, missing roles
    # and opportunities of the batch scoring, and goes back to the list
    expect(page.locator("#account-name")).to_have_text(HOSTILE_NAME)
    assert page.locator("#list-view").is_hidden()
    history = _published(scored, "history")
    # one point per snapshot at which it was a prospect (scored)
    points = history.loc[history["account_id"] == scored["account"], "score"].notna().sum()
    assert 0 < points <= 6 and page.locator("#history circle").count() == points
    assert page.locator("#timeline rect.known").count() == 13  # one bar per week
    activity = _published(scored, "activity")
    mine = activity[activity["account_id"] == scored["account"]]
    people = page.locator("#people tbody tr")
    assert people.count() == mine["person_id"].nunique(dropna=False)
    if mine["person_id"].isna().any():
        expect(page.locator("#people")).to_contain_text("Anonymous visitors")
    reasons = json.loads(account["reasons"])
    now = [r["text"] for r in reasons["positive"] if r["kind"] == "now"]
    expect(page.locator("#why ul.positive li")).to_have_count(len(now))
    expect(page.locator("#why ul.positive li").first).to_have_text(now[0])
    missing = page.locator("#buying-group .chip.missing").all_inner_texts()
    assert missing == [r.replace("_", " ") for r in account["roles_missing"]]
    expect(page.locator("#buying-group .gap")).to_have_text(str(account["buying_group_gap"]))
    opportunities = _published(scored, "opportunities")
    count = int((opportunities["account_id"] == scored["account"]).sum())
    assert page.locator("#opportunities tbody tr").count() == count
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "account.png"), full_page=True)
    page.locator("#back").click()
    expect(page.locator("#list-view")).to_be_visible()


def test_the_csv_download_matches_the_filtered_rows(
    page: Page, scored: dict[str, Any], tmp_path: Path
) -> None:
    # given the list filtered to more than one page of engaged accounts
    ranked = pd.read_parquet(scored["ranked"])
    page.locator("#f-stage input[value=engaged]").check()
    page.locator("#f-min-score").fill("80")
    expected = ranked[(ranked["stage"] == "engaged") & (ranked["score"] >= 80)]
    assert len(expected) > 50  # more than one page: the export is every page
    _wait_for_count(page, len(expected))
    # when it is exported
    with page.expect_download() as download:
        page.locator("#export").click()
    path = tmp_path / "export.csv"
    download.value.save_as(path)
    # then the CSV has every filtered row, in order, with its score and stage
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert [r["account_id"] for r in rows] == expected["account_id"].tolist()
    assert [int(r["score"]) for r in rows] == expected["score"].tolist()
    assert {r["stage"] for r in rows} == {"engaged"}


def _work_now_of(ranked: pd.DataFrame, owner: str) -> pd.DataFrame:
    return ranked[ranked["stage"].isin(["in-market", "ready"]) & (ranked["owner"] == owner)]


def _busiest_owner(ranked: pd.DataFrame) -> str:
    """The owner with the most accounts to work now."""
    worked = ranked[ranked["stage"].isin(["in-market", "ready"])]
    return str(worked["owner"].value_counts().idxmax())


def test_filters_and_sort_survive_a_reload_and_a_shared_link(
    page: Page, browser: Browser, server: Server, scored: dict[str, Any]
) -> None:
    # given the review page and the owner with the most accounts to work now
    ranked = pd.read_parquet(scored["ranked"])
    owner = _busiest_owner(ranked)
    expected = _work_now_of(ranked, owner)
    # when "work now" (in-market and ready) and the owner are picked, and the list sorted by
    # score, lowest first
    page.locator("#work-now").click()
    page.locator("#f-owner").select_option(owner)
    _wait_for_count(page, len(expected))
    page.locator("th[data-sort=score]").click()
    page.locator("th[data-sort=score]").click()
    expect(page.locator("th[data-sort=score]")).to_have_attribute("aria-sort", "ascending")
    lowest = expected.sort_values(["score", "rank"])["account_id"].head(50).tolist()
    expect(page.locator("#accounts tbody tr").first).to_have_attribute("data-account-id", lowest[0])
    # then the stage counts are the owner's, both stages ticked
    for stage in ("in-market", "ready", "engaged"):
        mine = int(((ranked["owner"] == owner) & (ranked["stage"] == stage)).sum())
        expect(page.locator(f".stage-count[data-stage={stage}]")).to_have_text(f"{stage} {mine:,}")
    expect(page.locator(".stage-count[data-stage=ready]")).to_have_attribute("aria-pressed", "true")
    # and a stage the list does not know is refused by name, with the stages to use
    refused = page.request.get(server.url + "/accounts?stage=hot")
    assert refused.status == 422 and "stage: 'hot' is not a stage" in refused.text()
    # and after a reload, and in another browser given the link, the same list, filters shown
    shared = page.url
    assert "stage=in-market" in shared and "stage=ready" in shared and "sort=score" in shared
    page.reload()
    other = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        elsewhere = other.new_page()
        elsewhere.goto(shared)
        for view in (page, elsewhere):
            _wait_for_count(view, len(expected))
            ids = view.locator("#accounts tbody tr").evaluate_all(
                "rows => rows.map(r => r.dataset.accountId)"
            )
            assert ids == lowest
            expect(view.locator("#f-stage input[value=ready]")).to_be_checked()
            expect(view.locator("#f-stage input[value=in-market]")).to_be_checked()
            expect(view.locator("#f-stage input[value=engaged]")).not_to_be_checked()
            expect(view.locator("#f-owner")).to_have_value(owner)
            expect(view.locator("th[data-sort=score]")).to_have_attribute("aria-sort", "ascending")
    finally:
        other.close()


def test_my_accounts_is_remembered_in_the_browser(
    page: Page, server: Server, scored: dict[str, Any]
) -> None:
    # given the review page and an owner
    ranked = pd.read_parquet(scored["ranked"])
    owner = _busiest_owner(ranked)
    # when the user says who they are once and asks for their accounts
    page.locator("#f-me").select_option(owner)
    page.locator("#my-accounts").click()
    _wait_for_count(page, int((ranked["owner"] == owner).sum()))
    # then the page opened again without filters in its address shows their accounts
    page.goto(server.url + "/")
    _wait_for_count(page, int((ranked["owner"] == owner).sum()))
    expect(page.locator("#f-owner")).to_have_value(owner)
    assert set(page.locator("#accounts tbody td.owner").all_inner_texts()) == {owner}
    # and every owner asked for stays asked for after a reload
    page.locator("#f-owner").select_option("")
    _wait_for_count(page, len(ranked))
    page.reload()
    _wait_for_count(page, len(ranked))


def _not_engaged_holders(scored: dict[str, Any], account: pd.Series) -> set[str]:
    """Emails of the people at the account holding a role it misses, who have not engaged in
    the activity's weeks (anything but an email open)."""
    people = _published(scored, "people")
    activity = _published(scored, "activity")
    engaged = activity.loc[activity["events"] > activity["opens"], "person_id"]
    holders = people[
        (people["account_id"] == account["account_id"])
        & people["buying_role"].isin(list(account["roles_missing"]))
        & ~people["person_id"].isin(engaged)
    ]
    return set(holders["email"])


def test_the_export_of_a_filtered_view_holds_its_rows_with_contacts_to_reach(
    page: Page, scored: dict[str, Any], tmp_path: Path
) -> None:
    # given the list filtered to one owner's accounts to work now
    ranked = pd.read_parquet(scored["ranked"])
    owner = _busiest_owner(ranked)
    expected = _work_now_of(ranked, owner)
    page.locator("#work-now").click()
    page.locator("#f-owner").select_option(owner)
    _wait_for_count(page, len(expected))
    # when it is exported
    with page.expect_download() as download:
        page.locator("#export").click()
    path = tmp_path / "export.csv"
    download.value.save_as(path)
    # then the file is named after the filters and holds exactly those rows, in order, with
    # owner, status, roles in one cell and, per account, the people to reach: those holding a
    # missing role who have not engaged
    slug = owner.lower().replace(" ", "-")
    day = str(ranked["as_of"].max())[:10]
    assert download.value.suggested_filename == f"in-market_stage-work-now_owner-{slug}_{day}.csv"
    rows = pd.read_csv(path, keep_default_na=False)
    assert rows["account_id"].tolist() == expected["account_id"].tolist()
    assert set(rows["owner"]) == {owner} and set(rows["status"]) == {"prospect"}
    assert rows["roles_missing"].tolist() == ["; ".join(r) for r in expected["roles_missing"]]
    emails = rows["contacts_to_reach"].str.findall(r"<([^>]+)>").map(set).tolist()
    wanted = [_not_engaged_holders(scored, account) for _, account in expected.iterrows()]
    assert emails == wanted and any(wanted)


def test_the_account_view_lists_who_to_reach_and_keeps_fit_out_of_why_now(
    page: Page, scored: dict[str, Any]
) -> None:
    # given the list's accounts to work now, whose reasons include fit
    ranked = pd.read_parquet(scored["ranked"])
    worked = ranked[ranked["stage"].isin(["in-market", "ready"])]
    reasons = worked["reasons"].map(json.loads)
    fit_texts = {r["text"] for e in reasons for r in e["positive"] if r["kind"] == "fit"}
    assert fit_texts, "the world's model gives no fit reason: nothing to keep apart"
    # then no "why now" of the list holds a fit reason
    page.locator("#work-now").click()
    _wait_for_count(page, len(worked))
    for cell in page.locator("#accounts tbody td.reasons").all_inner_texts():
        assert not any(text in cell.split("; ") for text in fit_texts)
    # when an account with fit reasons and missing roles someone holds is opened
    has_fit = reasons.map(lambda e: any(r["kind"] == "fit" for r in e["positive"] + e["negative"]))
    reachable = worked.apply(lambda a: bool(_not_engaged_holders(scored, a)), axis=1)
    account = worked[has_fit & reachable].iloc[0]
    page.locator("#f-q").fill(str(account["account_id"]))
    _wait_for_count(page, 1)
    page.locator("#accounts tbody .account-link").click()
    # then why now lists timing only, fit is apart with each direction said, and who to reach
    # are the holders of a missing role who have not engaged, by email
    explained = json.loads(account["reasons"])
    now = [r["text"] for r in explained["positive"] if r["kind"] == "now"]
    expect(page.locator("#why ul.positive li")).to_have_text(now)
    fit = [r for r in explained["positive"] + explained["negative"] if r["kind"] == "fit"]
    expect(page.locator("#why ul.fit li")).to_have_text(
        [f"{r['text']} — {r['direction']}" for r in fit]
    )
    assert {r["direction"] for r in fit} <= {"raising the score", "holding it back"}
    for r in fit:
        assert r["direction"] == (
            "raising the score" if r["contribution"] > 0 else "holding it back"
        )
    shown = set(page.locator("#buying-group dl.contacts a").all_inner_texts())
    assert shown == _not_engaged_holders(scored, account)


def test_markup_in_names_titles_and_topics_is_shown_as_text(page: Page, watched: Watched) -> None:
    # given the review page, on a world with markup in a name, a title and a topic
    # when the account is searched for, opened and its people hovered over
    # then, step by step: the markup shows as text, no element or script is made from it and
    # no dialog opens
    page.locator("#f-q").fill("onerror")
    _wait_for_count(page, 1)
    expect(page.locator("#accounts tbody .account-link .name")).to_have_text(HOSTILE_NAME)
    page.locator("#accounts tbody .account-link").click()
    expect(page.locator("#account-name")).to_have_text(HOSTILE_NAME)
    expect(page.locator("#people")).to_contain_text(HOSTILE_TITLE)
    # the data contract turns topics into labels before anything shows them
    expect(page.locator("#people")).to_contain_text("b_onmouseover_alert_3_pricing_b")
    page.locator("#people").hover()
    page.wait_for_timeout(500)
    assert page.locator("img").count() == 0
    assert page.locator("#account script, #accounts script, #account b").count() == 0
    assert watched.dialogs == []


def test_the_page_needs_the_token_when_one_is_set(browser: Browser, scored: dict[str, Any]) -> None:
    # given a server with a token set, and a fresh browser
    with _serving(scored, INMARKET_TOKEN="s3cret-token-for-the-page") as guarded:
        context = browser.new_context()
        try:
            # when the page is opened, a wrong then the right token given, and the user logs out
            # then, step by step: only the right token opens the list and the routes behind it,
            # and logging out locks them again
            page = context.new_page()
            page.goto(guarded.url + "/")
            assert page.url.endswith("/login")
            assert page.request.get(guarded.url + "/accounts").status == 401
            assert page.request.get(guarded.url + "/static/app.js").status == 401
            page.locator("#token").fill("wrong")
            page.locator("button[type=submit]").click()
            expect(page.locator(".error")).to_contain_text("not the service's")
            page.locator("#token").fill("s3cret-token-for-the-page")
            page.locator("button[type=submit]").click()
            expect(page.locator("#accounts tbody tr").first).to_be_visible()
            assert page.request.get(guarded.url + "/accounts").status == 200
            page.locator(".logout button").click()
            expect(page.locator("#token")).to_be_visible()
            assert httpx.get(guarded.url + "/", follow_redirects=False).status_code == 303
        finally:
            context.close()


def test_the_static_report_lists_the_accounts_as_text(
    browser: Browser, scored: dict[str, Any], tmp_path: Path
) -> None:
    # given the ranking of the world with markup in it
    out = tmp_path / "report.html"
    # when `inmarket report` writes the static report
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "inmarket.cli",
            "report",
            "--ranked",
            str(scored["ranked"]),
            "--out",
            str(out),
            "--limit",
            "0",
            "--store",
            str(scored["store"]),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    # then it says how many accounts it wrote, and in a browser the report lists them all, with
    # the markup as text, no dialog, and the MQL rule's misses counted
    assert done.returncode == 0, done.stderr
    ranked = pd.read_parquet(scored["ranked"])
    assert f"{len(ranked):,} accounts" in done.stdout
    context = browser.new_context()
    try:
        page = context.new_page()
        dialogs: list[str] = []
        page.on("dialog", _recording_into(dialogs))
        page.goto(out.as_uri())
        assert page.locator("tr.account").count() == len(ranked)
        expect(page.locator("#accounts")).to_contain_text(HOSTILE_NAME)
        assert page.locator("img").count() == 0 and dialogs == []
        worked = ranked[ranked["stage"].isin(["in-market", "ready"])]
        missed = int((worked["mql_points_max_90d"].fillna(0) < 100).sum())
        expect(page.locator("#mql-missed")).to_have_text(f"{missed:,}")
        expect(page.locator("#model-card")).to_contain_text("MQL rule")
        expect(page.locator("#model-card .in-words").first).to_contain_text(
            "deals won in the test window"
        )
        expect(page.locator("#model-card")).to_contain_text("95% interval, test accounts")
        # with every method of the training run's comparison, lead days with their interval
        expect(page.locator("#model-card table")).to_contain_text("without intent")
        expect(page.locator("#model-card table")).to_contain_text("Lead days (mean over")
        expect(page.locator("#model-card")).to_contain_text(
            "label: a new-business deal created within 90 days, won (whenever it closed)."
        )
        # the model card says what each feature reads (people known by then, for breadth)
        expect(page.locator("#feature-sources")).to_contain_text("people known by then")
    finally:
        context.close()
