"""A real webhook receiver on 127.0.0.1 for the alert tests: an ``http.server`` in a thread that
answers every POST one way (200, an error status, or never), and keeps what it was sent."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """``with Receiver(200) as receiver:`` POSTs to ``receiver.url`` are answered 200 (or the
    status given; ``"hang"``: read, then never answered until the receiver stops) and kept in
    ``receiver.received`` (the JSON bodies) and ``receiver.headers``. ``failures`` first answers
    that many requests 500, then the status."""

    def __init__(self, status: int | str = 200, failures: int = 0) -> None:
        self.status, self.failures = status, failures
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.stopping = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append(json.loads(body))
                receiver.headers.append(dict(self.headers))
                if receiver.status == "hang":
                    receiver.stopping.wait()
                    return
                failing = len(receiver.received) <= receiver.failures
                status = 500 if failing else int(receiver.status)
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"no")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000/B000/secret"
        # a short poll: stopping waits for it (the default half second, in every test)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def refusing_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: a connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks/T000/B000/secret"
