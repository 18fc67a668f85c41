"""The Python SDK (sync and async) against real gateway processes, plus a scripted loopback
server for what a healthy gateway never does on demand (429s, 5xx, broken downloads)."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import GatewayProcess, create_key_with_cli, decode_mp4, free_port
from vidgate.client import (
    APIConnectionError,
    AsyncVidgateClient,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InsufficientCreditsError,
    InternalServerError,
    MissingAPIKeyError,
    NotFoundError,
    RateLimitError,
    Task,
    TaskFailedError,
    VidgateClient,
    WaitTimeoutError,
)

pytestmark = pytest.mark.e2e

# The quickest render the sample model does: 1 s at 240p (426x240 landscape, 24 fps).
FAST: dict[str, Any] = {"model": "sample", "options": {"duration": 1, "resolution": "240p"}}


def sync_client(server: GatewayProcess, **kwargs: Any) -> VidgateClient:
    return VidgateClient(base_url=server.base_url, api_key=server.api_key, **kwargs)


def async_client(server: GatewayProcess, **kwargs: Any) -> AsyncVidgateClient:
    return AsyncVidgateClient(base_url=server.base_url, api_key=server.api_key, **kwargs)


def assert_sample_video(path: Path) -> None:
    video = decode_mp4(path)
    assert (video["codec"], video["width"], video["height"]) == ("h264", 426, 240)
    assert video["duration_s"] == pytest.approx(1.0, abs=0.1)
    assert len(video["frames"]) == 24


def admin_key(server: GatewayProcess, *, credits: int) -> str:
    """A key on a new account of the server's database, made with the admin CLI."""
    return create_key_with_cli(server.env, title="poor", credits=credits)


# -- the happy path -----------------------------------------------------------------------


def test_generate_wait_download(live_gateway: GatewayProcess, tmp_path: Path) -> None:
    with sync_client(live_gateway) as client:
        before = client.account.balances().credits
        created = client.videos.generate(prompt="a lighthouse at dusk", **FAST)
        assert created.task_id.startswith("vid_")
        assert created.model == "sample"
        assert created.remaining_credits == before - created.credits_used

        updates: list[Task] = []
        task = client.videos.wait(created, timeout=60, on_update=updates.append)
        assert task.status == "completed"
        assert task.progress == 100
        assert task.video_url
        assert task.output.result_urls == [task.video_url]
        assert task.completed_at is not None
        assert updates[-1] == task

        progress: list[tuple[int, int | None]] = []
        target = tmp_path / "videos" / "out.mp4"
        saved = client.videos.download(
            task, target, on_progress=lambda done, total: progress.append((done, total))
        )
        assert saved == target
        size = target.stat().st_size
        assert progress[-1] == (size, size)
        assert [p.name for p in target.parent.iterdir()] == ["out.mp4"]  # no .part left
        assert_sample_video(target)

        page = client.videos.history(page=1, limit=5)
        assert page.total == 1
        assert page.items[0].task_id == task.task_id
        assert page.items[0].status == "completed"
        assert client.account.balances().credits == created.remaining_credits


async def test_async_generate_wait_download(live_gateway: GatewayProcess, tmp_path: Path) -> None:
    async with async_client(live_gateway) as client:
        created = await client.videos.generate(prompt="a kite over a beach", **FAST)
        seen: list[str] = []
        task = await client.videos.wait(
            created.task_id, timeout=60, on_update=lambda t: seen.append(t.status)
        )
        assert task.status == "completed"
        assert seen[-1] == "completed"
        # By task id: the SDK fetches the task for its signed URL.
        saved = await client.videos.download(task.task_id, tmp_path / "async.mp4")
        assert_sample_video(saved)
        assert (await client.videos.get(task.task_id)).status == "completed"
        assert (await client.videos.history()).items[0].task_id == task.task_id
        balances = await client.account.balances()
        assert balances.credits == balances.api_credits == created.remaining_credits


# -- typed errors -------------------------------------------------------------------------


def test_typed_errors(live_gateway: GatewayProcess) -> None:
    bad = VidgateClient(base_url=live_gateway.base_url, api_key="sk-" + "0" * 48)
    with bad, pytest.raises(AuthenticationError) as auth:
        bad.account.balances()
    assert (auth.value.status_code, auth.value.code) == (401, "unauthorized")
    assert auth.value.request_id
    assert auth.value.request_id.startswith("req_")

    with sync_client(live_gateway) as client:
        with pytest.raises(BadRequestError) as bad_request:
            client.videos.generate(model="no-such-model", prompt="x")
        assert bad_request.value.status_code == 400
        assert bad_request.value.code == "invalid_request"
        assert "unknown model 'no-such-model'" in bad_request.value.message

        with pytest.raises(NotFoundError) as not_found:
            client.videos.get("vid_00000000000000000000000000")
        assert not_found.value.code == "not_found"
        assert "not found" in not_found.value.message

    poor = admin_key(live_gateway, credits=0)
    with VidgateClient(base_url=live_gateway.base_url, api_key=poor) as client:
        with pytest.raises(InsufficientCreditsError) as broke:
            client.videos.generate(prompt="costly", **FAST)
        assert (broke.value.status_code, broke.value.code) == (402, "insufficient_credits")
        assert client.account.balances().credits == 0


async def test_async_typed_errors(live_gateway: GatewayProcess) -> None:
    async with async_client(live_gateway) as client:
        with pytest.raises(NotFoundError):
            await client.videos.get("vid_nope")
        with pytest.raises(BadRequestError, match="resolution"):
            await client.videos.generate(model="sample", prompt="x", resolution="9000p")
        with pytest.raises(BadRequestError) as unknown:
            await client.videos.generate(prompt="x", **FAST | {"options": {"colour": "red"}})
        assert unknown.value.message.startswith("colour: not an option of model sample")
    async with AsyncVidgateClient(base_url=live_gateway.base_url, api_key="sk-wrong") as bad:
        with pytest.raises(AuthenticationError):
            await bad.videos.history()


def test_missing_key_fails_before_any_request(
    live_gateway: GatewayProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VIDGATE_API_KEY", raising=False)
    with VidgateClient(base_url=live_gateway.base_url) as client:
        assert "sample" in [model.id for model in client.models.list()]  # no key needed
        with pytest.raises(MissingAPIKeyError):
            client.account.balances()


def test_unreachable_gateway_is_a_connection_error() -> None:
    client = VidgateClient(base_url=f"http://127.0.0.1:{free_port()}", api_key="sk-x")
    with client, pytest.raises(APIConnectionError, match="could not connect"):
        client.videos.get("vid_x")


# -- task outcomes ------------------------------------------------------------------------


def test_failed_task_is_returned_or_raised(live_gateway: GatewayProcess) -> None:
    with sync_client(live_gateway) as client:
        created = client.videos.generate(prompt="a storm [fail: boom]", **FAST)
        task = client.videos.wait(created.task_id, timeout=60)
        assert task.status == "failed"
        assert (task.error_code, task.error_message) == ("generation_failed", "boom")
        assert task.credits_refunded == task.credits_used == created.credits_used
        with pytest.raises(TaskFailedError) as failed:
            client.videos.wait(created.task_id, timeout=60, raise_on_failure=True)
        assert failed.value.task.task_id == created.task_id
        assert "boom" in str(failed.value)


def test_wait_timeout(live_gateway: GatewayProcess) -> None:
    with sync_client(live_gateway) as client:
        created = client.videos.generate(prompt="slow [slow:5]", **FAST)
        started = time.monotonic()
        with pytest.raises(WaitTimeoutError) as timed_out:
            client.videos.wait(created.task_id, timeout=0.5)
        assert time.monotonic() - started < 3
        assert timed_out.value.task.status in ("pending", "processing")


def test_idempotent_generate(live_gateway: GatewayProcess) -> None:
    with sync_client(live_gateway) as client:
        first = client.videos.generate(prompt="same", idempotency_key="order-42", **FAST)
        again = client.videos.generate(prompt="same", idempotency_key="order-42", **FAST)
        assert again.task_id == first.task_id
        assert again.remaining_credits == first.remaining_credits  # charged once
        with pytest.raises(ConflictError) as conflict:
            client.videos.generate(prompt="different", idempotency_key="order-42", **FAST)
        assert conflict.value.code == "idempotency_key_reused"
        assert client.videos.history().total == 1


def test_keys_and_models(live_gateway: GatewayProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDGATE_BASE_URL", f"{live_gateway.base_url}/api/v1/")
    monkeypatch.setenv("VIDGATE_API_KEY", live_gateway.api_key or "")
    with VidgateClient() as client:  # both from the environment
        created = client.keys.create("ci")
        assert created.api_key.startswith("sk-")
        listed = {key.id: key for key in client.keys.list()}
        assert listed[created.id].title == "ci"
        assert listed[created.id].key_preview.startswith("sk-")
        assert client.keys.revoke(created.id).status == "revoked"
        sample = next(model for model in client.models.list() if model.id == "sample")
        assert "240p" in sample.options["resolution"]["values"]
    with VidgateClient(api_key=created.api_key) as revoked, pytest.raises(AuthenticationError):
        revoked.account.balances()


# -- retries, poll hints and resumed downloads, against a scripted server ------------------


@dataclass
class Seen:
    at: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    cut_after: int | None = None  # send only this many body bytes, then drop the connection


Script = Callable[[Seen, int], Reply]


@dataclass
class Scripted:
    url: str
    seen: list[Seen]

    def gaps(self) -> list[float]:
        return [later.at - earlier.at for earlier, later in itertools.pairwise(self.seen)]


@contextmanager
def scripted_server(script: Script) -> Iterator[Scripted]:
    """A loopback HTTP server answering request number N with script(request, N)."""
    scripted = Scripted(url="", seen=[])
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = Seen(
                at=time.monotonic(),
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length),
            )
            with lock:
                scripted.seen.append(request)
                index = len(scripted.seen) - 1
            reply = script(request, index)
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body[: reply.cut_after])
            self.close_connection = True

        do_GET = do_POST = do_DELETE = _handle

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    scripted.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield scripted
    finally:
        server.shutdown()
        server.server_close()


def always(reply: Reply) -> Script:
    return lambda request, index: reply


def error_reply(status: int, code: str, *, retry_after: str | None = None) -> Reply:
    body = {"success": False, "error": {"code": code, "message": code}, "request_id": "req_x"}
    headers = {"Content-Type": "application/json"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return Reply(status, json.dumps(body).encode(), headers)


def proxy_to(server: GatewayProcess) -> Script:
    def forward(request: Seen, index: int) -> Reply:
        del index
        headers = {k: v for k, v in request.headers.items() if k not in ("host", "connection")}
        response = httpx.request(
            request.method,
            f"{server.base_url}{request.path}",
            headers=headers,
            content=request.body,
            timeout=10,
        )
        content_type = response.headers.get("content-type", "application/json")
        return Reply(response.status_code, response.content, {"Content-Type": content_type})

    return forward


def test_create_retry_honours_retry_after_and_reuses_idempotency_key(
    live_gateway: GatewayProcess,
) -> None:
    forward = proxy_to(live_gateway)

    def script(request: Seen, index: int) -> Reply:
        if index == 0:
            return error_reply(429, "rate_limited", retry_after="1")
        return forward(request, index)

    with (
        scripted_server(script) as server,
        VidgateClient(base_url=server.url, api_key=live_gateway.api_key) as client,
    ):
        started = time.monotonic()
        created = client.videos.generate(prompt="after a 429", **FAST)
        elapsed = time.monotonic() - started
    assert len(server.seen) == 2
    assert server.gaps()[0] >= 0.95  # Retry-After: 1 was honoured
    assert elapsed < 5
    keys = {request.headers.get("idempotency-key") for request in server.seen}
    assert len(keys) == 1
    assert None not in keys
    with sync_client(live_gateway) as client:
        assert client.videos.get(created.task_id).model == "sample"
        assert client.videos.history().total == 1


async def test_async_retries_5xx_then_succeeds(live_gateway: GatewayProcess) -> None:
    forward = proxy_to(live_gateway)

    def script(request: Seen, index: int) -> Reply:
        if index == 0:
            return error_reply(503, "upstream_unavailable", retry_after="1")
        if index == 1:
            return error_reply(500, "internal_error")  # no Retry-After: backoff
        return forward(request, index)

    with scripted_server(script) as server:
        async with AsyncVidgateClient(base_url=server.url, api_key=live_gateway.api_key) as client:
            created = await client.videos.generate(prompt="after a 503", **FAST)
    assert len(server.seen) == 3
    assert server.gaps()[0] >= 0.95
    assert len({request.headers["idempotency-key"] for request in server.seen}) == 1
    assert created.task_id.startswith("vid_")


CREATED = {
    "success": True,
    "data": {
        "task_id": "vid_1",
        "request_id": "provider_req_1",
        "credits_used": 1,
        "remaining_credits": 9,
        "model": "wan",
    },
    "request_id": "req_1",
}


async def test_options_travel_as_data_from_both_twins() -> None:
    """Any model option, as given: flat in the body beside the request's own fields."""
    reply = Reply(200, json.dumps(CREATED).encode(), {"Content-Type": "application/json"})
    fields: dict[str, Any] = {
        "model": "wan",
        "prompt": "a fox",
        "options": {"seed": 42, "negative_prompt": "blur", "n_frames": 10},
        "aspect_ratio": "portrait",  # a shortcut joins the options
        "callback_url": "https://example.com/hook",
    }
    with scripted_server(always(reply)) as server:
        with VidgateClient(base_url=server.url, api_key="sk-x") as client:
            assert client.videos.generate(**fields).task_id == "vid_1"
        async with AsyncVidgateClient(base_url=server.url, api_key="sk-x") as aclient:
            assert (await aclient.videos.generate(**fields)).task_id == "vid_1"
    bodies = [json.loads(request.body) for request in server.seen]
    assert (
        bodies[0]
        == bodies[1]
        == {
            "model": "wan",
            "prompt": "a fox",
            "seed": 42,
            "negative_prompt": "blur",
            "n_frames": "10",  # the contract's string
            "aspect_ratio": "portrait",
            "callBackUrl": "https://example.com/hook",
        }
    )


def test_contradictory_options_are_refused_before_sending() -> None:
    with (
        scripted_server(always(Reply(500))) as server,
        VidgateClient(base_url=server.url, api_key="sk-x") as client,
    ):
        with pytest.raises(ValueError, match="duration is given both as an argument and in"):
            client.videos.generate(model="m", duration="2", options={"duration": "3"})
        with pytest.raises(ValueError, match="prompt is a field of the request"):
            client.videos.generate(model="m", options={"prompt": "x"})
    assert server.seen == []


def test_no_retry_on_4xx() -> None:
    with (
        scripted_server(always(error_reply(400, "invalid_request"))) as server,
        VidgateClient(base_url=server.url, api_key="sk-x") as client,
        pytest.raises(BadRequestError),
    ):
        client.videos.generate(model="sample", prompt="x")
    assert len(server.seen) == 1


def test_retries_5xx_a_limited_number_of_times() -> None:
    with (
        scripted_server(always(error_reply(500, "internal_error"))) as server,
        VidgateClient(base_url=server.url, api_key="sk-x", max_retries=1) as client,
        pytest.raises(InternalServerError) as failed,
    ):
        client.videos.get("vid_x")
    assert len(server.seen) == 2
    assert failed.value.status_code == 500


def test_rate_limit_error_after_the_retries() -> None:
    with (
        scripted_server(always(error_reply(429, "rate_limited", retry_after="0"))) as server,
        VidgateClient(base_url=server.url, api_key="sk-x", max_retries=2) as client,
        pytest.raises(RateLimitError) as limited,
    ):
        client.account.balances()
    assert len(server.seen) == 3
    assert limited.value.retry_after == 0


def _task_json(status: str, progress: int) -> bytes:
    data = {
        "task_id": "vid_scripted",
        "model": "sample",
        "type": "text-to-video",
        "status": status,
        "progress": progress,
        "output": {"resultUrls": []},
        "video_url": None,
        "error_message": None,
        "credits_used": 1,
        "credits_refunded": 0,
        "created_at": "2026-03-12T09:35:00.000Z",
        "updated_at": "2026-03-12T09:35:01.000Z",
        "completed_at": None,
    }
    return json.dumps({"success": True, "data": data, "request_id": "req_x"}).encode()


def test_wait_honours_the_poll_hint() -> None:
    polls: list[Seen] = []

    def script(request: Seen, index: int) -> Reply:
        if request.path.endswith("/events"):  # a gateway older than the event stream
            return error_reply(404, "not_found")
        polls.append(request)
        if len(polls) <= 2:
            body = _task_json("processing", 50 * (len(polls) - 1))
            return Reply(200, body, {"Content-Type": "application/json", "X-Poll-After-Ms": "300"})
        return Reply(200, _task_json("completed", 100), {"Content-Type": "application/json"})

    progress: list[int] = []
    with (
        scripted_server(script) as server,
        VidgateClient(base_url=server.url, api_key="sk-x") as client,
    ):
        task = client.videos.wait("vid_scripted", on_update=lambda t: progress.append(t.progress))
    assert task.status == "completed"
    assert progress == [0, 50, 100]
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(polls)]
    assert all(0.28 <= gap < 0.9 for gap in gaps), gaps  # the hint, not the 1 s fallback


def _names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


async def test_download_resumes_with_range(tmp_path: Path) -> None:
    payload = os.urandom(200_000)

    def script(request: Seen, index: int) -> Reply:
        if index == 0:  # the connection drops part-way through the body
            return Reply(200, payload, {"ETag": '"v1"'}, cut_after=80_000)
        assert request.headers["range"] == "bytes=80000-"
        assert request.headers["if-range"] == '"v1"'
        headers = {"Content-Range": f"bytes 80000-{len(payload) - 1}/{len(payload)}"}
        return Reply(206, payload[80_000:], headers)

    progress: list[tuple[int, int | None]] = []
    target = tmp_path / "resumed.mp4"
    with scripted_server(script) as server:
        async with AsyncVidgateClient(base_url=server.url, api_key=None) as client:
            await client.videos.download(
                f"{server.url}/files/x.mp4?signature=s",
                target,
                on_progress=lambda done, total: progress.append((done, total)),
            )
    assert len(server.seen) == 2
    assert "authorization" not in server.seen[0].headers  # signed links need no key
    assert target.read_bytes() == payload
    assert progress[-1] == (len(payload), len(payload))
    assert _names(tmp_path) == ["resumed.mp4"]
