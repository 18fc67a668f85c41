"""The SDK's webhooks resource against a real gateway, and `verify_webhook` on what that gateway
really sends: a loopback receiver checks every delivery with the SDK, as a user's would."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from support import GatewayProcess
from test_sdk import FAST
from vidgate.client import (
    AsyncVidgateClient,
    BadRequestError,
    NotFoundError,
    VidgateClient,
    WebhookVerificationError,
    verify_webhook,
)

pytestmark = pytest.mark.e2e


@dataclass
class Receiver:
    url: str = ""
    secret: str = ""
    verified: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout_s: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.verified) >= count:
                    return list(self.verified)
            time.sleep(0.05)
        pytest.fail(f"{len(self.verified)} of {count} deliveries arrived ({self.refused})")


@contextmanager
def receiver() -> Iterator[Receiver]:
    """Answers 204 to a delivery that verify_webhook accepts, 400 to any other."""
    found = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                payload = verify_webhook(body, dict(self.headers.items()), found.secret)
            except WebhookVerificationError as error:
                with found.lock:
                    found.refused.append(str(error))
                self.send_response(400)
            else:
                with found.lock:
                    found.verified.append(payload)
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    found.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()


def test_webhooks_resource_and_verified_deliveries(live_gateway: GatewayProcess) -> None:
    with (
        receiver() as hooks,
        VidgateClient(base_url=live_gateway.base_url, api_key=live_gateway.api_key) as client,
    ):
        created = client.webhooks.create(hooks.url, events=["job.completed", "job.cancelled"])
        assert created.secret_key.startswith("whsec_")
        assert (created.url, created.status, created.api_key_id) == (hooks.url, "active", None)
        assert created.events == ["job.completed", "job.cancelled"]
        hooks.secret = created.secret_key

        done = client.videos.wait(client.videos.generate(prompt="a hooked fish", **FAST))
        pending = client.videos.generate(prompt="a slow one [slow:3]", **FAST)
        client.videos.cancel(pending)
        deliveries = hooks.wait_for(2)
        assert hooks.refused == []
        by_type = {delivery["type"]: delivery["data"] for delivery in deliveries}
        assert by_type["job.completed"]["task_id"] == done.task_id
        assert by_type["job.cancelled"]["task_id"] == pending.task_id
        assert by_type["job.cancelled"]["error_code"] == "cancelled"

        listed = {webhook.id: webhook for webhook in client.webhooks.list()}
        assert listed[created.id].total_sent == 2
        assert listed[created.id].last_sent_at is not None
        page = client.webhooks.deliveries(created.id, limit=10)
        assert page.total == 2
        assert {item.event for item in page.items} == {"job.completed", "job.cancelled"}
        assert all(item.status == "delivered" for item in page.items)

        again = client.webhooks.redeliver(created.id, page.items[0].id)
        assert (again.id, again.message_id) == (page.items[0].id, page.items[0].message_id)
        assert hooks.wait_for(3)[-1] == next(
            d for d in deliveries if d["data"]["task_id"] == page.items[0].task_id
        )

        assert client.webhooks.delete(created.id).id == created.id
        assert created.id not in {webhook.id for webhook in client.webhooks.list()}
        with pytest.raises(NotFoundError):
            client.webhooks.deliveries(created.id)
        with pytest.raises(BadRequestError):
            client.webhooks.create("ftp://example.com/hooks")


async def test_async_webhooks_resource(live_gateway: GatewayProcess) -> None:
    async with AsyncVidgateClient(
        base_url=live_gateway.base_url, api_key=live_gateway.api_key
    ) as client:
        created = await client.webhooks.create("https://hooks.example.com/vidgate")
        assert created.events == ["job.completed", "job.failed"]
        assert [w.id for w in await client.webhooks.list()] == [created.id]
        assert (await client.webhooks.deliveries(created.id)).items == []
        assert (await client.webhooks.delete(created.id)).id == created.id
        assert await client.webhooks.list() == []
