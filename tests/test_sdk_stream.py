"""The SDK's cancel, event stream and stream-following wait (sync and async) against real
gateway processes, a scripted server for a connection that drops mid-stream, and the
receiver's `verify_webhook`."""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Iterator
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from support import GatewayProcess
from test_sdk import FAST, Reply, Seen, error_reply, proxy_to, scripted_server
from vidgate.client import (
    APIConnectionError,
    AsyncVidgateClient,
    ConflictError,
    NotFoundError,
    Task,
    TaskEvent,
    VidgateClient,
    WebhookVerificationError,
    verify_webhook,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def api_only(tmp_path: Path) -> Iterator[GatewayProcess]:
    """`serve --no-worker`: its tasks stay pending until cancelled."""
    server = GatewayProcess(tmp_path / "api", serve_args=("--no-worker",)).start()
    yield server
    server.stop()


def client_of(server: GatewayProcess | str, api_key: str | None = None) -> VidgateClient:
    if isinstance(server, GatewayProcess):
        return VidgateClient(base_url=server.base_url, api_key=server.api_key)
    return VidgateClient(base_url=server, api_key=api_key or "sk-x")


def status_polls(server: GatewayProcess, task_id: str) -> int:
    """GET /api/v1/videos/{task_id} requests in the gateway's access log."""
    return len(re.findall(rf'"GET /api/v1/videos/{task_id} HTTP', server.log()))


# -- cancel -------------------------------------------------------------------------------


def test_cancel(api_only: GatewayProcess) -> None:
    with client_of(api_only) as client:
        created = client.videos.generate(prompt="a kite", **FAST)
        task = client.videos.cancel(created)
        assert isinstance(task, Task)
        assert (task.status, task.error_code) == ("failed", "cancelled")
        assert task.is_terminal
        assert task.credits_refunded == created.credits_used
        assert client.account.balances().credits == created.remaining_credits + task.credits_used
        with pytest.raises(ConflictError) as ended:
            client.videos.cancel(created.task_id)
        assert (ended.value.status_code, ended.value.code) == (409, "task_ended")
        with pytest.raises(NotFoundError):
            client.videos.cancel("vid_00000000000000000000000000")


async def test_async_cancel_ends_the_stream(api_only: GatewayProcess) -> None:
    async with AsyncVidgateClient(base_url=api_only.base_url, api_key=api_only.api_key) as client:
        created = await client.videos.generate(prompt="a kite", **FAST)
        kinds: list[str] = []
        async with aclosing(client.videos.stream(created.task_id)) as events:
            async for event in events:
                kinds.append(event.kind)
                if event.kind == "created":
                    assert (await client.videos.cancel(created.task_id)).error_code == "cancelled"
                last = event
        assert kinds == ["created", "cancelled"]
        assert last.is_terminal
        assert last.data == {"refunded": True}
        assert last.task is not None
        assert (last.task.status, last.task.error_code) == ("failed", "cancelled")


# -- the stream ---------------------------------------------------------------------------


def test_stream_yields_typed_events_until_the_end(live_gateway: GatewayProcess) -> None:
    with client_of(live_gateway) as client:
        created = client.videos.generate(prompt="a lantern", **FAST)
        events = list(client.videos.stream(created))
        assert all(isinstance(event, TaskEvent) for event in events)
        assert [e.kind for e in events][:2] == ["created", "submitted"]
        assert [e.id for e in events] == sorted({e.id for e in events})
        last = events[-1]
        assert (last.kind, last.status, last.is_terminal) == ("completed", "completed", True)
        assert last.task is not None
        assert last.task.video_url
        assert not any(event.is_terminal for event in events[:-1])
        # After a given event: exactly the rest.
        assert list(client.videos.stream(created, last_event_id=events[0].id)) == events[1:]


async def test_async_stream(live_gateway: GatewayProcess) -> None:
    async with AsyncVidgateClient(
        base_url=live_gateway.base_url, api_key=live_gateway.api_key
    ) as client:
        created = await client.videos.generate(prompt="a lantern", **FAST)
        events = [event async for event in client.videos.stream(created.task_id)]
        assert events[0].kind == "created"
        assert events[-1].task is not None
        assert events[-1].task.status == "completed"
        with pytest.raises(NotFoundError):
            async for _ in client.videos.stream("vid_00000000000000000000000000"):
                pass


def sse(event_id: int, kind: str, status: str, **extra: Any) -> bytes:
    data = {"status": status, "data": {}, "created_at": "2026-03-12T09:35:00.000Z", **extra}
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def scripted_task(status: str) -> dict[str, Any]:
    return {
        "task_id": "vid_scripted",
        "model": "sample",
        "status": status,
        "progress": 100 if status == "completed" else 0,
        "created_at": "2026-03-12T09:35:00.000Z",
        "updated_at": "2026-03-12T09:35:02.000Z",
    }


STREAM = {"Content-Type": "text/event-stream"}


def dropping_stream(request: Seen, index: int) -> Reply:
    """The first connection breaks after two events (and a keep-alive); the second must
    resume after event 2."""
    if index == 0:
        body = (
            b": keep-alive\n\n" + sse(1, "created", "pending") + sse(2, "submitted", "processing")
        )
        return Reply(200, body + b"x" * 500, STREAM, cut_after=len(body))
    assert request.headers["last-event-id"] == "2"
    body = sse(3, "progress", "processing", data={"progress": 50}) + sse(
        4, "completed", "completed", task=scripted_task("completed")
    )
    return Reply(200, body, STREAM)


def test_stream_reconnects_after_a_drop_with_last_event_id() -> None:
    with scripted_server(dropping_stream) as server, client_of(server.url) as client:
        events = list(client.videos.stream("vid_scripted"))
    assert [(e.id, e.kind) for e in events] == [
        (1, "created"),
        (2, "submitted"),
        (3, "progress"),
        (4, "completed"),
    ]
    assert events[2].progress == 50
    assert len(server.seen) == 2
    assert "last-event-id" not in server.seen[0].headers
    assert server.seen[0].headers["accept"] == "text/event-stream"


async def test_async_stream_reconnects_after_a_drop() -> None:
    with scripted_server(dropping_stream) as server:
        async with AsyncVidgateClient(base_url=server.url, api_key="sk-x") as client:
            events = [event async for event in client.videos.stream("vid_scripted")]
    assert [e.id for e in events] == [1, 2, 3, 4]


def test_a_stream_that_keeps_dropping_gives_up() -> None:
    def script(request: Seen, index: int) -> Reply:
        body = sse(index + 1, "progress", "processing") if index == 0 else b""
        return Reply(200, body + b"x" * 100, STREAM, cut_after=len(body))

    with (
        scripted_server(script) as server,
        VidgateClient(base_url=server.url, api_key="sk-x", max_retries=2) as client,
        pytest.raises(APIConnectionError, match="kept dropping"),
    ):
        list(client.videos.stream("vid_scripted"))
    assert len(server.seen) == 3  # the first, then max_retries reconnects without news


# -- wait over the stream -----------------------------------------------------------------


def test_wait_follows_the_stream_instead_of_polling(live_gateway: GatewayProcess) -> None:
    with client_of(live_gateway) as client:
        created = client.videos.generate(prompt="a slow comet [slow:1]", **FAST)
    seen: list[tuple[str, int]] = []
    with (
        scripted_server(proxy_to(live_gateway)) as proxy,
        client_of(proxy.url, live_gateway.api_key) as client,
    ):
        task = client.videos.wait(
            created.task_id, timeout=60, on_update=lambda t: seen.append((t.status, t.progress))
        )
    assert (task.status, task.progress) == ("completed", 100)
    assert task.video_url
    paths = [request.path for request in proxy.seen]
    # One look at the task, then one stream to its end: no polling.
    assert paths == [f"/api/v1/videos/{task.task_id}", f"/api/v1/videos/{task.task_id}/events"]
    assert seen[-1] == ("completed", 100)
    assert [s for s, _ in seen] == sorted(
        (s for s, _ in seen), key=["pending", "processing", "completed"].index
    )


async def test_async_wait_follows_the_stream(live_gateway: GatewayProcess) -> None:
    async with AsyncVidgateClient(
        base_url=live_gateway.base_url, api_key=live_gateway.api_key
    ) as client:
        created = await client.videos.generate(prompt="a slow comet [slow:1]", **FAST)
        progress: list[int] = []
        task = await client.videos.wait(
            created, timeout=60, on_update=lambda t: progress.append(t.progress)
        )
    assert task.status == "completed"
    assert progress == sorted(progress)
    assert progress[-1] == 100
    assert status_polls(live_gateway, task.task_id) == 1


@pytest.mark.parametrize("status", [404, 405])
def test_wait_polls_a_gateway_without_the_stream(status: int) -> None:
    polls = 0

    def older_server(request: Seen, index: int) -> Reply:
        nonlocal polls
        if request.path.endswith("/events"):
            return error_reply(status, "not_found" if status == 404 else "method_not_allowed")
        polls += 1
        state = "completed" if polls >= 3 else "processing"
        body = {"success": True, "data": scripted_task(state), "request_id": "req_x"}
        headers = {"Content-Type": "application/json", "X-Poll-After-Ms": "250"}
        return Reply(200, json.dumps(body).encode(), headers)

    with scripted_server(older_server) as server, client_of(server.url) as client:
        assert client.videos.wait("vid_scripted", timeout=30).status == "completed"
        polls = 0
        assert client.videos.wait("vid_scripted", timeout=30).status == "completed"
    paths = [request.path.rsplit("/", 1)[-1] for request in server.seen]
    # The stream was asked for once; the client remembers the gateway has none.
    assert (
        paths == ["vid_scripted", "events", "vid_scripted", "vid_scripted"] + ["vid_scripted"] * 3
    )


# -- verify_webhook -----------------------------------------------------------------------

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
BODY = json.dumps({"type": "job.completed", "data": {"task_id": "vid_1"}}).encode()


def signed(body: bytes, *, secret: str = SECRET, at: datetime | None = None) -> dict[str, str]:
    moment = (at or datetime.now(UTC)).replace(microsecond=0)
    return {
        "Webhook-Id": "msg_1",
        "Webhook-Timestamp": str(int(moment.timestamp())),
        "Webhook-Signature": Webhook(secret).sign("msg_1", moment, body.decode()),
    }


def test_verify_webhook_accepts_a_signed_delivery_and_refuses_the_rest() -> None:
    assert verify_webhook(BODY, signed(BODY), SECRET) == json.loads(BODY)

    refusals = {
        "tampered body": (BODY.replace(b"vid_1", b"vid_2"), signed(BODY)),
        "another secret": (
            BODY,
            signed(BODY, secret="whsec_" + base64.b64encode(b"o" * 32).decode()),
        ),
        "stale": (BODY, signed(BODY, at=datetime.now(UTC) - timedelta(minutes=10))),
        "from the future": (BODY, signed(BODY, at=datetime.now(UTC) + timedelta(minutes=10))),
        "no headers": (BODY, {}),
        "garbled signature": (BODY, {**signed(BODY), "Webhook-Signature": "v1"}),
        "not JSON": (b"[1, 2", signed(b"[1, 2")),
        "not an object": (b"[1, 2]", signed(b"[1, 2]")),
    }
    for case, (body, headers) in refusals.items():
        with pytest.raises(WebhookVerificationError) as refused:
            verify_webhook(body, headers, SECRET)
        assert refused.value.code == "invalid_webhook", case
    with pytest.raises(ValueError, match="secret"):
        verify_webhook(BODY, signed(BODY), "")
