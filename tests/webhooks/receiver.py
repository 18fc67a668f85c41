"""A webhook receiver for the tests: a real HTTP server on loopback, in a thread.

It verifies every delivery as a user's receiver would, with the standardwebhooks package, and
answers from a script (e.g. 500, 500, then 200s). Deliveries that fail verification are kept
apart, so a test can assert there were none.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Received:
    path: str
    message_id: str
    timestamp: str
    body: bytes
    headers: dict[str, str]
    payload: dict[str, Any]  # as Webhook.verify returned it
    answered: int


class Receiver:
    def __init__(self, *, secret: str | None = None, answers: tuple[int, ...] = ()) -> None:
        """`secret`: the one to verify with (settable later, e.g. once a webhook is created);
        `answers`: the status of each request in turn, 200 after them."""
        self.secret = secret
        self.answers = list(answers)
        self.received: list[Received] = []  # verified deliveries, in order of arrival
        self.unverified: list[str] = []  # why a request failed verification
        self.requests = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self, port: int = 0) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = receiver._take(self.path, body, dict(self.headers.items()))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _take(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        with self._lock:
            self.requests += 1
            status = self.answers.pop(0) if self.answers else 200
            if self.secret is None:
                self.unverified.append("no secret to verify with")
                return 400
            try:
                payload = Webhook(self.secret).verify(body, headers)
            except WebhookVerificationError as refused:
                self.unverified.append(str(refused))
                return 400
            lowered = {name.lower(): value for name, value in headers.items()}
            self.received.append(
                Received(
                    path=path,
                    message_id=lowered["webhook-id"],
                    timestamp=lowered["webhook-timestamp"],
                    body=body,
                    headers=lowered,
                    payload=payload,
                    answered=status,
                )
            )
            return status

    def wait_for(self, count: int, *, timeout_s: float = 20.0) -> list[Received]:
        """The first `count` verified deliveries, once that many arrived."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.05)
        raise AssertionError(
            f"{len(self.received)} of {count} deliveries after {timeout_s} s "
            f"(unverified: {self.unverified})"
        )

    def body_of(self, index: int) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.received[index].body)
        return parsed


@contextmanager
def running_receiver(
    *, secret: str | None = None, answers: tuple[int, ...] = (), port: int = 0
) -> Iterator[Receiver]:
    receiver = Receiver(secret=secret, answers=answers).start(port)
    try:
        yield receiver
    finally:
        receiver.stop()
