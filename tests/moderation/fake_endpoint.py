"""A real OpenAI-compatible moderation endpoint on loopback (`POST /v1/moderations`), for the
moderation tests and the end-to-end test.

Its verdict is read from the input: each `flag:CATEGORY` token flags that category, anything
else passes. `mode` makes it misbehave: "status" answers `status` with an error body, "slow"
holds the answer back until the test ends, "garbage" answers 200 with no results.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OPENAI_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
_FLAG = re.compile(r"flag:([a-z/-]+)")


@dataclass(frozen=True)
class Seen:
    authorization: str | None
    body: dict[str, Any]


@dataclass
class FakeModerationEndpoint:
    base_url: str = ""  # e.g. http://127.0.0.1:PORT/v1, as the openai SDK takes it
    mode: str = "ok"
    status: int = 500
    requests: list[Seen] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def verdict(self, body: dict[str, Any]) -> dict[str, Any]:
        text = body.get("input", "")
        flagged = set(_FLAG.findall(text if isinstance(text, str) else json.dumps(text)))
        categories = {name: name in flagged for name in (*OPENAI_CATEGORIES, *flagged)}
        return {
            "id": f"modr-{len(self.requests)}",
            "model": body.get("model", ""),
            "results": [
                {
                    "flagged": bool(flagged),
                    "categories": categories,
                    "category_scores": {name: float(hit) for name, hit in categories.items()},
                    "category_applied_input_types": {name: ["text"] for name in categories},
                }
            ],
        }


@contextmanager
def moderation_endpoint() -> Iterator[FakeModerationEndpoint]:
    endpoint = FakeModerationEndpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            endpoint.requests.append(Seen(self.headers.get("Authorization"), body))
            if self.path != "/v1/moderations":
                self.answer(404, {"error": {"message": "no such route", "type": "not_found"}})
            elif endpoint.mode == "status":
                # Like OpenAI's 401, the error quotes part of the key back: it must not be logged.
                quoted = (self.headers.get("Authorization") or "")[-6:]
                error = {"message": f"refused (key ...{quoted})", "type": "server_error"}
                self.answer(endpoint.status, {"error": error})
            elif endpoint.mode == "slow":
                endpoint.release.wait(timeout=30)
                self.answer(200, endpoint.verdict(body))
            elif endpoint.mode == "garbage":
                self.answer(200, {"object": "nothing to see"})
            else:
                self.answer(200, endpoint.verdict(body))

        def answer(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.block_on_close = False  # a held-back answer must not hold the test's teardown
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    endpoint.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield endpoint
    finally:
        endpoint.release.set()
        server.shutdown()
        server.server_close()
