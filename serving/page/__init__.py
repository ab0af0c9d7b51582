"""The marketers' review page: one HTML page, its script and style sheet, served by the
service itself (no CDN, nothing fetched from elsewhere). The script builds every element with
``textContent``, so account, person and topic text is never read as HTML."""

from __future__ import annotations

import html
from pathlib import Path

HERE = Path(__file__).parent
STATIC = HERE / "static"
PAGE_HTML = (HERE / "index.html").read_text(encoding="utf-8")
COOKIE = "inmarket_session"


def login_page(error: str | None = None) -> str:
    """The sign-in form for a service started with INMARKET_TOKEN."""
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return (HERE / "login.html").read_text(encoding="utf-8").replace("<!--error-->", message)
