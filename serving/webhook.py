"""Alerts: what changed since the previous period (``serving.changes``), POSTed as JSON to a
webhook once a scoring run is published, one message per owner.

A Slack incoming webhook posts one message per request, so each owner gets one message (one
POST) holding all of their accounts that rose or fell; a receiver that routes by owner (a Slack
workflow, Teams, Zapier, a service of the team's) finds ``owner`` at the top. Each message is::

    {"text": "...", "id": "...", "as_of": "...", "compared_with": "...", "owner": "...",
     "rose": [{account_id, name, domain, owner, stage_before, stage, score_before, score,
               top_reasons, roles_missing}, ...],
     "fell": [...]}

``text`` is what Slack shows (account text escaped, so a name cannot mention ``@channel``); the
rest is the structured list; ``id`` is the same for the same message sent again (a receiver can
drop a repeat). A message is tried ``[alerts] attempts`` times, waiting ``backoff_seconds``,
doubled each time, after a 5xx, a 429, a timeout or a refused connection, all messages within
``time_limit_seconds``. A failure never fails the run: the command's summary says what failed,
and the messages not delivered are kept beside the manifest (``ranked.alerts.json``) and sent
first by the next run. What was sent for an ``as_of`` is recorded there too, so the same period
scored again (a refresh that promotes a model scores twice) alerts only what is new.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features.database import REFERENCE
from features.io import sidecar, write_json_atomic
from serving.changes import FELL, ROSE
from serving.settings import AlertSettings

STATE = "alerts.json"  # beside the manifest: ranked.alerts.json
MAX_KEPT = 1000  # messages kept for the next run at most; the oldest are dropped beyond
LISTED = 25  # accounts an owner's text lists; the structured list holds all
NO_OWNER = "(no owner)"


_REFUSED_AS_SENT = (400, 413, 422)  # this message is refused: drop it, send the others


class Undelivered(Exception):
    """A message the receiver did not take, in words that never hold the URL; ``again``:
    whether trying again may help (not after a 4xx other than 429: the same answer would come);
    ``status``: the receiver's HTTP status, if it answered."""

    def __init__(self, message: str, again: bool = True, status: int | None = None) -> None:
        super().__init__(message)
        self.again, self.status = again, status


def _escaped(text: object) -> str:
    """Account text as Slack text: ``&``, ``<`` and ``>`` escaped, as Slack asks."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _stage_score(stage: object, score: object) -> str:
    return f"{stage} {score}" if score is not None else str(stage)


def _line(item: dict[str, Any]) -> str:
    """One account in an owner's text: name, domain, stage and score before and after, why."""
    name = _escaped(item["name"] or item["account_id"])
    domain = f" ({_escaped(item['domain'])})" if item.get("domain") else ""
    before = _stage_score(item["stage_before"], item["score_before"])
    if not item["stage_before"]:
        before = "not listed"
    line = f"• {name}{domain}: {before} → {_stage_score(item['stage'], item['score'])}"
    if item.get("top_reasons"):
        line += f". Why now: {_escaped(item['top_reasons'])}"
    if item.get("roles_missing"):
        roles = ", ".join(role.replace("_", " ") for role in item["roles_missing"])
        line += f". Not reached: {_escaped(roles)}"
    return line


def _text(owner: str, as_of: str, since: str, rose: list[Any], fell: list[Any]) -> str:
    """What Slack shows of an owner's message."""
    lines = [
        f"In-market changes for {_escaped(owner)}: scored as of {as_of[:10]}, since {since[:10]}"
    ]
    for title, items in (
        (f"Moved up into in-market or ready ({len(rose)})", rose),
        (f"Fell out ({len(fell)})", fell),
    ):
        if items:
            lines += [f"*{title}*", *(_line(item) for item in items[:LISTED])]
            if len(items) > LISTED:
                lines.append(f"… and {len(items) - LISTED} more")
    return "\n".join(lines)


def owner_messages(changes: dict[str, Any], sent: Collection[str] = ()) -> list[dict[str, Any]]:
    """One message per owner of the accounts in ``changes`` that rose or fell, less those in
    ``sent`` (``_key``); owners in name order, accounts without one last."""
    compared = changes.get("compared_with")
    if not compared:
        return []
    owners: dict[str, dict[str, list[Any]]] = {}
    for change, items in ((ROSE, changes["rose"]), (FELL, changes["fell"])):
        for item in items:
            if _key(item, change) not in sent:
                owner = str(item["owner"]) if item.get("owner") else NO_OWNER
                owners.setdefault(owner, {ROSE: [], FELL: []})[change].append(item)
    messages = []
    for owner in sorted(owners, key=lambda o: (o == NO_OWNER, o)):
        rose, fell = owners[owner][ROSE], owners[owner][FELL]
        body = {
            "as_of": changes["as_of"],
            "compared_with": compared["as_of"],
            "owner": owner,
            "rose": rose,
            "fell": fell,
        }
        text = _text(owner, changes["as_of"], compared["as_of"], rose, fell)
        said = json.dumps(body, sort_keys=True, default=str).encode()
        messages.append({"text": text, "id": hashlib.sha256(said).hexdigest()[:24], **body})
    return messages


def _key(item: dict[str, Any], change: str) -> str:
    """What makes an alert the same one again: the account, which way, the stage it reached."""
    return f"{item['account_id']}|{change}|{item['stage']}"


@dataclass
class Delivery:
    """What a run's alerts came to: messages sent, kept for the next run (in ``kept_in``), and
    why the rest was not sent."""

    sent: int
    kept: int
    kept_in: str
    failure: str | None = None

    def in_words(self) -> str:
        if self.failure is not None:
            return (
                f"alerts: the webhook failed ({self.failure}); {self.sent} message(s) sent, "
                f"{self.kept} kept in {self.kept_in} for the next run"
            )
        if self.sent:
            return f"alerts: {self.sent} message(s) sent to the webhook, one per owner"
        return "alerts: nothing new to send"


def _resolved(url: str) -> str:
    """The URL to post to: a ``${NAME}`` reference read from the environment."""
    found = REFERENCE.fullmatch(url)
    if found is None:
        return url
    value = os.environ.get(found.group(1), "").strip()
    if not value:
        raise Undelivered(
            f"the environment variable {found.group(1)} ([alerts] webhook_url) is not set"
        )
    if not value.lower().startswith(("http://", "https://")):
        raise Undelivered(
            f"the environment variable {found.group(1)} ([alerts] webhook_url) does not hold an "
            "http(s):// URL"
        )
    return value


def _post(url: str, message: dict[str, Any], timeout: float) -> None:
    """POST one message; ``Undelivered`` in words (status or error type, never the URL)."""
    try:
        request = urllib.request.Request(
            url,
            data=json.dumps(message, default=str).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "inmarket-alerts"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            answer.read()
    except urllib.error.HTTPError as exc:
        again = exc.code >= 500 or exc.code == 429
        raise Undelivered(f"HTTP {exc.code}", again, exc.code) from None
    except (http.client.HTTPException, ValueError) as exc:  # a broken answer, a bad URL
        raise Undelivered(f"no usable answer: {type(exc).__name__}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, TimeoutError):
            raise Undelivered(f"no answer within {timeout:.3g}s") from None
        said = getattr(reason, "strerror", None) or type(reason).__name__
        raise Undelivered(f"no connection: {said}") from None


def _deliver(url: str, message: dict[str, Any], settings: AlertSettings, deadline: float) -> None:
    """Try one message until it is taken, the attempts run out, or the deadline passes."""
    wait = settings.backoff_seconds
    for attempt in range(1, settings.attempts + 1):
        left = deadline - time.monotonic()
        if left <= 0:
            raise Undelivered(f"time limit of {settings.time_limit_seconds:g}s reached")
        try:
            _post(url, message, min(settings.request_seconds, left))
            return
        except Undelivered as exc:
            if attempt == settings.attempts or not exc.again:
                raise Undelivered(f"{exc} after {attempt} attempt(s)", status=exc.status) from None
        time.sleep(max(0.0, min(wait, deadline - time.monotonic())))
        wait *= 2


def send_alerts(out: Path, changes: dict[str, Any], settings: AlertSettings) -> Delivery | None:
    """Send the messages kept by earlier runs, then this run's (``owner_messages``, less what
    was sent for the same ``as_of`` before); what is not delivered is kept for the next run.
    None when no webhook is set."""
    if settings.webhook_url is None:
        return None
    path = sidecar(out, STATE)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    if not isinstance(state, dict):  # not this file's shape: nothing known to be kept or sent
        state = {}
    same = state.get("as_of") == changes["as_of"]
    sent = set(state.get("sent", [])) if same else set()
    queue = [*state.get("pending", []), *owner_messages(changes, sent)]
    done, failure, refused = 0, None, []
    deadline = time.monotonic() + settings.time_limit_seconds
    try:
        url = _resolved(settings.webhook_url)
        for message in queue:
            try:
                _deliver(url, message, settings, deadline)
            except Undelivered as exc:
                if exc.status not in _REFUSED_AS_SENT:
                    raise
                refused.append(str(exc))  # it would be refused again: not kept
            done += 1
    except Undelivered as exc:
        failure = str(exc)
    if refused and failure is None:
        failure = f"{len(refused)} message(s) refused ({refused[0]}), not kept"
    for change in (ROSE, FELL):
        sent |= {_key(item, change) for item in changes[change]}
    pending = queue[done:][-MAX_KEPT:]
    state = {"as_of": changes["as_of"], "sent": sorted(sent), "pending": pending}
    try:
        write_json_atomic(state, path)
    except OSError as exc:
        failure = f"{failure or 'sent'}; cannot keep the alerts' state in {path.name}: {exc}"
    return Delivery(done - len(refused), len(pending), path.name, failure)
