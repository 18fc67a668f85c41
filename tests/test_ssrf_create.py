"""SSRF at the API: never-public URLs are refused at create (400, nothing charged, no task);
what only DNS or a redirect can reveal fails the task at fetch time, refunded.

Create-time cases run against the in-process gateway of conftest.py (worker off, no allow-list).
The fetch-time cases start the embedded worker with the test allow-list (127.0.0.0/8), so a
loopback server can answer with redirects to addresses outside it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import Caller, make_caller, static_http_server
from test_http_edge import assert_error, assert_success
from vidgate.app import create_app
from vidgate.db import migrate
from vidgate.gateway import Gateway
from vidgate.settings import Settings

GENERATE = "/api/v1/videos/generate"
IMAGE_TO_VIDEO = {"model": "sora2", "type": "image-to-video", "prompt": "make it move"}
PUBLIC_IMAGE = "https://images.example.com/cat.png"

# (URL, the host as the refusal names it): each can never be fetched, whatever DNS says.
NEVER_PUBLIC = [
    ("http://127.0.0.1/a.png", "127.0.0.1"),
    ("http://[::1]/a.png", "::1"),
    ("http://127.1/a.png", "127.1 (127.0.0.1)"),
    ("http://2130706433/a.png", "2130706433 (127.0.0.1)"),
    ("http://0x7f000001/a.png", "0x7f000001 (127.0.0.1)"),
    ("http://0177.0.0.1/a.png", "0177.0.0.1 (127.0.0.1)"),
    ("http://0.0.0.0/a.png", "0.0.0.0"),
    ("http://10.0.0.1/a.png", "10.0.0.1"),
    ("http://172.16.0.1/a.png", "172.16.0.1"),
    ("http://192.168.0.1/a.png", "192.168.0.1"),
    ("http://100.64.0.1/a.png", "100.64.0.1"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
    ("http://[fe80::1]/a.png", "fe80::1"),
    ("http://[::ffff:127.0.0.1]/a.png", "::ffff:127.0.0.1 (127.0.0.1)"),
    ("http://[::ffff:7f00:1]/a.png", "::ffff:7f00:1 (127.0.0.1)"),
    ("http://[64:ff9b::7f00:1]/a.png", "64:ff9b::7f00:1 (127.0.0.1)"),
    ("http://[64:ff9b::a9fe:a9fe]/a.png", "64:ff9b::a9fe:a9fe (169.254.169.254)"),
    ("http://[64:ff9b:1::a00:1]/a.png", "64:ff9b:1::a00:1"),
    ("http://localhost/a.png", "localhost"),
    ("http://images.localhost/a.png", "images.localhost"),
]


async def snapshot(client: httpx.AsyncClient, caller: Caller) -> tuple[int, list[Any]]:
    """What a refused create must leave as it was: the balance and the task history."""
    balance = assert_success(await client.get("/api/v1/account/balances", headers=caller.headers))
    history = assert_success(await client.get("/api/v1/videos/history", headers=caller.headers))
    return balance["credits"], history["items"]


async def refused(
    client: httpx.AsyncClient, caller: Caller, body: dict[str, Any], *, field: str
) -> str:
    before = await snapshot(client, caller)
    response = await client.post(GENERATE, json=body, headers=caller.headers)
    message = assert_error(response, 400, "invalid_request")
    assert message.startswith(f"{field}: "), message
    assert await snapshot(client, caller) == before
    return message


@pytest.mark.parametrize(("url", "named"), NEVER_PUBLIC)
async def test_never_public_image_url_is_refused_at_create(
    client: httpx.AsyncClient, caller: Caller, url: str, named: str
) -> None:
    body = {**IMAGE_TO_VIDEO, "image_urls": [url]}

    message = await refused(client, caller, body, field="image_urls[0]")

    assert named in message


async def test_the_refusal_names_the_index_of_the_image(
    client: httpx.AsyncClient, caller: Caller
) -> None:
    body = {**IMAGE_TO_VIDEO, "image_urls": [PUBLIC_IMAGE, "http://10.0.0.1/b.png?sig=s3cret"]}

    message = await refused(client, caller, body, field="image_urls[1]")

    assert message == "image_urls[1]: 10.0.0.1 is not a public address"


async def test_never_public_callback_url_is_refused_at_create(
    client: httpx.AsyncClient, caller: Caller
) -> None:
    body = {
        "model": "sora2",
        "prompt": "a storm",
        "callBackUrl": "http://169.254.169.254/hook?key=s3cret",
    }

    message = await refused(client, caller, body, field="callBackUrl")

    assert message == "callBackUrl: 169.254.169.254 is not a public address"


async def test_never_public_video_url_is_refused_at_create(
    client: httpx.AsyncClient, caller: Caller
) -> None:
    # No built-in model takes video-to-video, but the field is checked on any request.
    body = {"model": "sora2", "prompt": "a storm", "video_url": "http://2130706433/v.mp4"}

    message = await refused(client, caller, body, field="video_url")

    assert message == "video_url: 2130706433 (127.0.0.1) is not a public address"


async def test_credentials_in_an_image_url_are_refused_at_create(
    client: httpx.AsyncClient, caller: Caller
) -> None:
    body = {**IMAGE_TO_VIDEO, "image_urls": ["https://user:pw@images.example.com/a.png"]}

    message = await refused(client, caller, body, field="image_urls[0]")

    assert "pw" not in message


async def test_names_and_public_addresses_are_accepted_at_create(
    client: httpx.AsyncClient, caller: Caller
) -> None:
    # A name is judged when it is fetched: only then is it resolved.
    body = {
        **IMAGE_TO_VIDEO,
        "image_urls": [PUBLIC_IMAGE, "http://93.184.215.14/b.png", "http://[64:ff9b::5db8:d70e]/"],
        "callBackUrl": "https://hooks.example.com/done",
    }

    created = assert_success(await client.post(GENERATE, json=body, headers=caller.headers))

    assert created["credits_used"] == 30


# --- what only the fetch can find out --------------------------------------------------------


@contextmanager
def redirecting_server(location: str) -> Iterator[str]:
    """A loopback server answering every GET with a redirect to ``location``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def working_gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    """The in-process gateway with its embedded worker and the test allow-list."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'vidgate.db'}"
    migrate.upgrade(url)
    settings = Settings(
        data_dir=tmp_path,
        database_url=url,
        worker_enabled=True,
        worker_poll_interval_s=0.1,
        provider_poll_interval_s=0.1,
        fetch_allowed_private_networks=["127.0.0.0/8"],
    )
    gateway = Gateway.build(settings)
    await gateway.start()
    yield gateway
    await gateway.close()


async def wait_until_done(
    client: httpx.AsyncClient, caller: Caller, task_id: str, timeout_s: float = 20
) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            response = await client.get(f"/api/v1/videos/{task_id}", headers=caller.headers)
            task: dict[str, Any] = assert_success(response)
            if task["status"] in ("completed", "failed"):
                return task
            await asyncio.sleep(0.1)


@pytest.mark.parametrize(
    ("target", "named"),
    [
        ("http://10.0.0.1/internal.png", "10.0.0.1"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
    ],
)
async def test_redirect_to_a_private_address_fails_the_task_and_refunds(
    working_gateway: Gateway, target: str, named: str
) -> None:
    caller = await make_caller(working_gateway.db, credits=100)
    transport = httpx.ASGITransport(app=create_app(gateway=working_gateway))
    with redirecting_server(target) as base_url:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            # Loopback is allow-listed, so the create passes; only the redirect leaves it.
            body = {**IMAGE_TO_VIDEO, "image_urls": [f"{base_url}/cat.png?sig=s3cret"]}
            created = assert_success(await client.post(GENERATE, json=body, headers=caller.headers))
            task = await wait_until_done(client, caller, created["task_id"])
            balance = await snapshot(client, caller)

    assert task["status"] == "failed"
    assert task["error_code"] == "invalid_input"
    assert task["error_message"] == (
        f"image_urls[0]: redirect from 127.0.0.1 refused: {named} is not a public address; "
        "refusing to fetch it"
    )
    assert task["credits_refunded"] == task["credits_used"] == 30
    assert balance[0] == 100


PNG_HEAD = b"\x89PNG\r\n\x1a\n" + b"\x00" * 56


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"<!doctype html><title>login</title>" + b" " * 64, "is not an image"),
        (PNG_HEAD + b"\x00" * (2 * 1024 * 1024), "is larger than the limit of 1 MiB"),
    ],
    ids=["not-an-image", "oversized"],
)
async def test_a_body_that_is_no_image_or_too_large_fails_the_task_and_refunds(
    working_gateway: Gateway, body: bytes, problem: str
) -> None:
    working_gateway.settings.fetch_max_bytes = 1024 * 1024
    # The worker builds its fetch policy when it starts: start it again with the small cap.
    await working_gateway.stop_worker()
    await working_gateway.start()
    caller = await make_caller(working_gateway.db, credits=100)
    transport = httpx.ASGITransport(app=create_app(gateway=working_gateway))
    with static_http_server({"/cat.png": ("image/png", body)}) as base_url:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            request = {**IMAGE_TO_VIDEO, "image_urls": [f"{base_url}/cat.png"]}
            created = assert_success(
                await client.post(GENERATE, json=request, headers=caller.headers)
            )
            task = await wait_until_done(client, caller, created["task_id"])
            balance = await snapshot(client, caller)

    assert task["status"] == "failed"
    assert task["error_code"] == "input_fetch_failed"
    assert task["error_message"].startswith("image_urls[0]: ")
    assert problem in task["error_message"]
    assert task["credits_refunded"] == task["credits_used"] == 30
    assert balance[0] == 100
