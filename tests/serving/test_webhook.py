"""Alerts to a webhook (serving/webhook.py), against a real receiver on 127.0.0.1: one message
per owner, retries, a time limit, what failed kept for the next run and never the URL shown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from serving.settings import AlertSettings
from serving.webhook import owner_messages, send_alerts
from tests.receiver import Receiver, refusing_url

MAY, JUNE, JULY = (f"2026-{m}-01 00:00:00+00:00" for m in ("05", "06", "07"))
QUICK = {"attempts": 3, "backoff_seconds": 0.01, "request_seconds": 2, "time_limit_seconds": 20}


def _item(account: str, owner: str | None, stage: str = "ready", **more: Any) -> dict[str, Any]:
    return {
        "account_id": account,
        "name": f"Account {account}",
        "domain": f"{account.lower()}.com",
        "owner": owner,
        "stage_before": "engaged",
        "stage": stage,
        "score_before": 80,
        "score": 98,
        "top_reasons": "5 people visited pricing pages",
        "roles_missing": ["decision_maker"],
        **more,
    }


def _changes(as_of: str = JUNE, rose: list[Any] | None = None) -> dict[str, Any]:
    """June compared with May: A and C (Jane's) and B (Omar's) rose, D (no owner) fell out."""
    default = [_item("A", "Jane Park"), _item("B", "Omar Haddad"), _item("C", "Jane Park")]
    fell = [_item("D", None, "engaged", stage_before="in-market")]
    return {
        "as_of": as_of,
        "compared_with": {"as_of": MAY, "run": "ranked.runs/x"},
        "note": None,
        "rose": default if rose is None else rose,
        "fell": fell,
    }


def _settings(url: str, **more: Any) -> AlertSettings:
    return AlertSettings(webhook_url=url, **{**QUICK, **more})


def _kept(out: Path) -> list[dict[str, Any]]:
    state = json.loads(out.with_name("ranked.alerts.json").read_text(encoding="utf-8"))
    pending: list[dict[str, Any]] = state["pending"]
    return pending


def _accounts(messages: list[dict[str, Any]]) -> dict[str, list[str]]:
    return {m["owner"]: [i["account_id"] for i in [*m["rose"], *m["fell"]]] for m in messages}


def test_each_owner_gets_one_message_with_slack_text_and_the_structured_list(
    tmp_path: Path,
) -> None:
    out = tmp_path / "ranked.parquet"
    with Receiver(200) as receiver:
        delivery = send_alerts(out, _changes(), _settings(receiver.url))
    # then one POST per owner (the accounts without one last), JSON with a text Slack shows
    assert delivery is not None and (delivery.sent, delivery.kept, delivery.failure) == (3, 0, None)
    assert _accounts(receiver.received) == {
        "Jane Park": ["A", "C"],
        "Omar Haddad": ["B"],
        "(no owner)": ["D"],
    }
    assert [h["Content-Type"] for h in receiver.headers] == ["application/json"] * 3
    jane = receiver.received[0]
    assert jane["as_of"] == JUNE and jane["compared_with"] == MAY and len(jane["id"]) == 24
    assert jane["text"].splitlines() == [
        "In-market changes for Jane Park: scored as of 2026-06-01, since 2026-05-01",
        "*Moved up into in-market or ready (2)*",
        "• Account A (a.com): engaged 80 → ready 98. Why now: 5 people visited pricing pages. "
        "Not reached: decision maker",
        "• Account C (c.com): engaged 80 → ready 98. Why now: 5 people visited pricing pages. "
        "Not reached: decision maker",
    ]
    assert "*Fell out (1)*" in receiver.received[2]["text"]
    assert delivery.in_words() == "alerts: 3 message(s) sent to the webhook, one per owner"
    assert _kept(out) == []


def test_account_text_cannot_mention_the_channel() -> None:
    hostile = _item("A", "Jane <@U123>", name="<!channel> & <https://x|click>")
    [message] = owner_messages(_changes(rose=[hostile]) | {"fell": []})
    assert "<!channel>" not in message["text"] and "<https" not in message["text"]
    assert "&lt;!channel&gt; &amp; &lt;https://x|click&gt;" in message["text"]
    assert "Jane &lt;@U123&gt;" in message["text"] and message["owner"] == "Jane <@U123>"


def test_a_first_run_alerts_nothing(tmp_path: Path) -> None:
    first = {"as_of": JUNE, "compared_with": None, "note": "first run", "rose": [], "fell": []}
    with Receiver(200) as receiver:
        delivery = send_alerts(tmp_path / "ranked.parquet", first, _settings(receiver.url))
    assert delivery is not None and delivery.in_words() == "alerts: nothing new to send"
    assert receiver.received == []


@pytest.mark.parametrize(
    ("status", "failure", "requests"),
    [
        (500, "HTTP 500 after 3 attempt(s)", 3),
        (429, "HTTP 429 after 3 attempt(s)", 3),
        (404, "HTTP 404 after 1 attempt(s)", 1),  # the same answer would come again
        ("hang", "no answer within 0.3s after 3 attempt(s)", 3),
        ("refused", "no connection: Connection refused after 3 attempt(s)", 0),
    ],
)
def test_a_failed_webhook_is_reported_and_its_messages_kept_for_the_next_run(
    tmp_path: Path, status: int | str, failure: str, requests: int
) -> None:
    # given a receiver that answers an error, hangs, or is not there
    out = tmp_path / "ranked.parquet"
    with Receiver(500 if status == "refused" else status) as receiver:
        url = refusing_url() if status == "refused" else receiver.url
        delivery = send_alerts(out, _changes(), _settings(url, request_seconds=0.3))
    # then nothing raises: the failure is said, in words without the URL, every message kept
    assert delivery is not None and delivery.failure == failure
    assert len(receiver.received) == requests
    said = delivery.in_words()
    assert said == (
        f"alerts: the webhook failed ({failure}); 0 message(s) sent, 3 kept in "
        "ranked.alerts.json for the next run"
    )
    assert "secret" not in said and "127.0.0.1" not in said
    assert _accounts(_kept(out)) == {
        "Jane Park": ["A", "C"],
        "Omar Haddad": ["B"],
        "(no owner)": ["D"],
    }
    # and the next run (July) sends them first, then its own
    july = _changes(JULY, rose=[_item("E", "Jane Park")])
    with Receiver(200) as later:
        again = send_alerts(out, july, _settings(later.url))
    assert again is not None and (again.sent, again.kept, again.failure) == (5, 0, None)
    assert [m["as_of"] for m in later.received] == [JUNE] * 3 + [JULY] * 2
    assert _accounts(later.received[3:]) == {"Jane Park": ["E"], "(no owner)": ["D"]}


def test_a_receiver_failing_once_gets_the_message_on_the_next_attempt(tmp_path: Path) -> None:
    with Receiver(200, failures=1) as receiver:
        delivery = send_alerts(tmp_path / "ranked.parquet", _changes(), _settings(receiver.url))
    assert delivery is not None and (delivery.sent, delivery.failure) == (3, None)
    assert len(receiver.received) == 4 and receiver.received[0] == receiver.received[1]


def test_the_time_limit_bounds_all_messages_and_keeps_the_rest(tmp_path: Path) -> None:
    # given a receiver that never answers, ten tries a message, half a second for all
    out = tmp_path / "ranked.parquet"
    with Receiver("hang") as receiver:
        settings = _settings(receiver.url, attempts=10, request_seconds=0.2, time_limit_seconds=0.5)
        delivery = send_alerts(out, _changes(), settings)
    # then the delivery stops at the limit, fewer than ten tries made, every message kept
    assert delivery is not None and delivery.failure is not None
    assert delivery.failure.startswith(("time limit of 0.5s reached", "no answer within"))
    assert 1 <= len(receiver.received) < 10 and delivery.kept == 3


def test_the_same_period_scored_again_alerts_only_what_is_new(tmp_path: Path) -> None:
    out = tmp_path / "ranked.parquet"
    with Receiver(200) as receiver:
        send_alerts(out, _changes(), _settings(receiver.url))
        # the same June list again (a promoted model scored it), with one more account risen
        again = _changes(rose=[*_changes()["rose"], _item("F", "Omar Haddad")])
        delivery = send_alerts(out, again, _settings(receiver.url))
    assert delivery is not None and delivery.sent == 1
    assert _accounts(receiver.received[3:]) == {"Omar Haddad": ["F"]}


def test_the_url_may_come_from_the_environment_and_is_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "ranked.parquet"
    settings = _settings("${SLACK_WEBHOOK}")
    monkeypatch.delenv("SLACK_WEBHOOK", raising=False)
    missing = send_alerts(out, _changes(), settings)
    assert missing is not None and missing.failure == (
        "the environment variable SLACK_WEBHOOK ([alerts] webhook_url) is not set"
    )
    with Receiver(200) as receiver:
        monkeypatch.setenv("SLACK_WEBHOOK", receiver.url)
        delivery = send_alerts(out, _changes(), settings)
    assert delivery is not None and delivery.sent == 3  # the three kept, nothing new again
    assert len(receiver.received) == 3


def test_no_webhook_no_alerts(tmp_path: Path) -> None:
    assert send_alerts(tmp_path / "ranked.parquet", _changes(), AlertSettings()) is None
    assert not (tmp_path / "ranked.alerts.json").exists()


@pytest.mark.parametrize("url", ["hooks.slack.com/services/T/B/x", "ftp://x", "$SLACK"])
def test_a_webhook_url_that_is_none_is_refused_without_repeating_it(url: str) -> None:
    with pytest.raises(ValueError, match=r"give an http\(s\):// URL, or \$\{NAME\}") as caught:
        AlertSettings(webhook_url=url)
    assert url not in str(caught.value).split("input_value")[0]


def test_messages_the_receiver_refuses_as_sent_are_dropped_not_kept_forever(
    tmp_path: Path,
) -> None:
    # given a receiver that refuses every message as malformed (400)
    out = tmp_path / "ranked.parquet"
    with Receiver(400) as receiver:
        delivery = send_alerts(out, _changes(), _settings(receiver.url))
    # then each message was tried once, the refusal is said, and none is kept to block the next
    assert len(receiver.received) == 3
    assert delivery is not None and (delivery.sent, delivery.kept) == (0, 0)
    assert delivery.failure == "3 message(s) refused (HTTP 400 after 1 attempt(s)), not kept"
    assert _kept(out) == []


def test_an_environment_value_that_is_no_url_is_a_failure_said_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK", "hooks.slack.com/services/T0/B0/x")
    delivery = send_alerts(tmp_path / "ranked.parquet", _changes(), _settings("${SLACK_WEBHOOK}"))
    assert delivery is not None and delivery.failure == (
        "the environment variable SLACK_WEBHOOK ([alerts] webhook_url) does not hold an "
        "http(s):// URL"
    )
    assert delivery.kept == 3 and "hooks.slack.com" not in delivery.in_words()
