"""Webhooks end to end: real `vidgate serve` (and `vidgate worker`) processes deliver task
endings to a real loopback receiver that verifies every one with the standardwebhooks package.

The test gateways allow 127.0.0.0/8 (support.GatewayProcess), so a plain-http loopback receiver
is a valid target, and short retry delays keep the schedule within a test's time.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from support import GatewayProcess, create_key_with_cli, free_port, wait_for_task
from webhooks.receiver import running_receiver

pytestmark = pytest.mark.e2e

QUICK_RETRIES = {"VIDGATE_WEBHOOK_RETRY_DELAYS": "0,0.5,0.5"}
QUICK_SAMPLE = {"model": "sample", "duration": "1", "resolution": "240p"}


def api(server: GatewayProcess, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, f"{server.base_url}{path}", headers=server.headers, timeout=10, **kwargs
    )


def data_of(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["data"]


def add_webhook(server: GatewayProcess, url: str, **body: Any) -> dict[str, Any]:
    body = {"url": url, "events": ["job.completed", "job.failed", "job.cancelled"], **body}
    made: dict[str, Any] = data_of(api(server, "POST", "/api/v1/webhooks", json=body))
    return made


def generate(server: GatewayProcess, prompt: str, **extra: Any) -> str:
    body = {**QUICK_SAMPLE, "prompt": prompt, **extra}
    task_id: str = data_of(api(server, "POST", "/api/v1/videos/generate", json=body))["task_id"]
    return task_id


def webhooks(server: GatewayProcess) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = data_of(api(server, "GET", "/api/v1/webhooks"))
    return found


def deliveries(server: GatewayProcess, webhook_id: int) -> list[dict[str, Any]]:
    page = data_of(api(server, "GET", f"/api/v1/webhooks/{webhook_id}/deliveries"))
    items: list[dict[str, Any]] = page["items"]
    return items


def without_signature(view: dict[str, Any]) -> dict[str, Any]:
    """The task view with its file links cut at the query (the signature may roll over)."""

    def cut(url: str | None) -> str | None:
        return url.split("?")[0] if url else url

    return {
        **view,
        "video_url": cut(view["video_url"]),
        "output": {"resultUrls": [cut(u) for u in view["output"]["resultUrls"]]},
    }


def wait_until(check: Any, *, timeout_s: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not met after {timeout_s} s")


def test_endings_are_delivered_signed_with_the_task_as_its_status_shows_it(
    tmp_path: Path,
) -> None:
    server = GatewayProcess(tmp_path / "gw", env=QUICK_RETRIES).start()
    try:
        with running_receiver() as receiver:
            hook = add_webhook(server, receiver.url)
            receiver.secret = hook["secret_key"]
            done = generate(server, "a heron at dawn")
            failed = generate(server, "a heron [fail: the heron flew off]")
            assert wait_for_task(server, done)["status"] == "completed"
            assert wait_for_task(server, failed)["status"] == "failed"
            got = receiver.wait_for(2)
            time.sleep(1.0)  # nothing more comes
            assert len(receiver.received) == 2
        assert receiver.unverified == []
        by_task = {g.payload["data"]["task_id"]: g for g in got}
        assert set(by_task) == {done, failed}
        for task_id, event in [(done, "job.completed"), (failed, "job.failed")]:
            payload = by_task[task_id].payload
            assert payload["type"] == event
            assert payload["timestamp"].endswith("Z")
            status = data_of(api(server, "GET", f"/api/v1/videos/{task_id}"))
            assert without_signature(payload["data"]) == without_signature(status)
            assert payload["timestamp"] == status["completed_at"]
        assert by_task[failed].payload["data"]["error_message"] == "the heron flew off"
        # The link in the delivery is a working signed link.
        video = httpx.get(by_task[done].payload["data"]["video_url"], timeout=10)
        assert video.status_code == 200
        assert video.content[4:8] == b"ftyp"

        [listed] = webhooks(server)
        assert (listed["total_sent"], listed["total_failed"], listed["status"]) == (2, 0, "active")
        assert listed["last_sent_at"] is not None
        assert "secret_key" not in listed
        sent = deliveries(server, hook["id"])
        assert {d["message_id"] for d in sent} == {g.message_id for g in got}
        assert {(d["status"], d["attempts"], d["last_status_code"]) for d in sent} == {
            ("delivered", 1, 200)
        }
    finally:
        server.stop()


def test_a_receiver_failing_twice_gets_it_on_the_third_try_with_the_same_id(
    tmp_path: Path,
) -> None:
    server = GatewayProcess(tmp_path / "gw", env=QUICK_RETRIES).start()
    try:
        with running_receiver(answers=(500, 500)) as receiver:
            hook = add_webhook(server, receiver.url)
            receiver.secret = hook["secret_key"]
            task_id = generate(server, "try, try again")
            wait_for_task(server, task_id)
            got = receiver.wait_for(3)
            time.sleep(1.0)
            assert len(receiver.received) == 3
        assert receiver.unverified == []
        assert [g.answered for g in got] == [500, 500, 200]
        assert len({g.message_id for g in got}) == 1
        assert len({g.body for g in got}) == 1  # the same bytes on every try
        [listed] = webhooks(server)
        assert (listed["total_sent"], listed["total_failed"]) == (1, 2)
        assert listed["last_error"] == "HTTP 500"
        [delivery] = deliveries(server, hook["id"])
        assert (delivery["status"], delivery["attempts"]) == ("delivered", 3)
        assert delivery["message_id"] == got[0].message_id
    finally:
        server.stop()


def test_a_410_disables_the_webhook_and_later_endings_are_not_sent(tmp_path: Path) -> None:
    server = GatewayProcess(tmp_path / "gw", env=QUICK_RETRIES).start()
    try:
        with running_receiver(answers=(410,)) as receiver:
            hook = add_webhook(server, receiver.url)
            receiver.secret = hook["secret_key"]
            wait_for_task(server, generate(server, "gone"))
            wait_until(lambda: webhooks(server)[0]["status"] == "disabled", what="webhook disabled")
            later = generate(server, "after the 410")
            wait_for_task(server, later)
            time.sleep(1.5)
            assert receiver.requests == 1
        [listed] = webhooks(server)
        assert (listed["status"], listed["total_failed"]) == ("disabled", 1)
        assert [d["last_status_code"] for d in deliveries(server, hook["id"])] == [410]
        redelivery = api(
            server,
            "POST",
            f"/api/v1/webhooks/{hook['id']}/deliveries/"
            f"{deliveries(server, hook['id'])[0]['id']}/redeliver",
        )
        assert redelivery.status_code == 409
        assert redelivery.json()["error"]["code"] == "webhook_disabled"
    finally:
        server.stop()


def test_a_delivery_pending_when_the_gateway_is_killed_is_sent_after_restart_once(
    tmp_path: Path,
) -> None:
    # The receiver's port stays closed at first: the first try fails (connection refused) and
    # the next waits 3 s, long enough to SIGKILL the gateway with the delivery still unsent.
    port = free_port()
    server = GatewayProcess(
        tmp_path / "gw", env={"VIDGATE_WEBHOOK_RETRY_DELAYS": "0,3,0.5,0.5"}
    ).start()
    try:
        hook = add_webhook(server, f"http://127.0.0.1:{port}/hooks")
        task_id = generate(server, "survive the crash")
        assert wait_for_task(server, task_id)["status"] == "completed"
        [pending] = wait_until(
            lambda: [d for d in deliveries(server, hook["id"]) if d["attempts"] == 1],
            what="a first, failed try",
        )
        assert (pending["status"], pending["last_error"]) == ("pending", "connection refused")
        server.kill()

        with running_receiver(secret=hook["secret_key"], port=port) as receiver:
            server.start()  # same data dir and port
            [got] = receiver.wait_for(1)
            time.sleep(2.0)  # and only once
            assert len(receiver.received) == 1
        assert receiver.unverified == []
        assert got.message_id == pending["message_id"]
        assert got.payload["data"]["task_id"] == task_id
        [delivered] = deliveries(server, hook["id"])
        assert (delivered["status"], delivered["attempts"]) == ("delivered", 2)
    finally:
        server.stop()


def test_a_tasks_callback_url_gets_its_ending_signed_with_the_accounts_secret(
    tmp_path: Path,
) -> None:
    server = GatewayProcess(tmp_path / "gw", env=QUICK_RETRIES).start()
    try:
        secret = data_of(api(server, "GET", "/api/v1/account/webhook-secret"))["secret_key"]
        with running_receiver(secret=secret) as receiver:
            body = {  # the wrapped shape, with its per-task callback
                "model": "sample",
                "callBackUrl": f"{receiver.url}?task=mine",
                "input": {"prompt": "call me back [fail: no]", "duration": "1"},
            }
            created = data_of(api(server, "POST", "/api/v1/videos/generate", json=body))
            wait_for_task(server, created["task_id"])
            [got] = receiver.wait_for(1)
        assert receiver.unverified == []
        assert urlsplit(got.path).query == "task=mine"
        assert got.payload["type"] == "job.failed"
        assert got.payload["data"]["task_id"] == created["task_id"]
        assert webhooks(server) == []  # a callback is not a registered webhook
    finally:
        server.stop()


def test_another_account_cannot_see_or_delete_a_webhook(tmp_path: Path) -> None:
    server = GatewayProcess(tmp_path / "gw").start()
    try:
        hook = add_webhook(server, "https://hooks.example.com/in")
        stranger = httpx.Headers(
            {
                "Authorization": "Bearer "
                + create_key_with_cli(server.env, title="stranger", credits=10)
            }
        )
        listed = httpx.get(f"{server.base_url}/api/v1/webhooks", headers=stranger, timeout=10)
        assert listed.json()["data"] == []
        gone = httpx.delete(
            f"{server.base_url}/api/v1/webhooks/{hook['id']}", headers=stranger, timeout=10
        )
        assert (gone.status_code, gone.json()["error"]["code"]) == (404, "not_found")
        assert [h["id"] for h in webhooks(server)] == [hook["id"]]
    finally:
        server.stop()


def test_worker_processes_on_postgresql_deliver_each_ending_once(
    private_postgres_url: str, tmp_path: Path
) -> None:
    """Scale-out: an API without a worker and two `vidgate worker` processes share the
    deliveries; each ending reaches the receiver exactly once."""
    env = {"VIDGATE_DATABASE_URL": private_postgres_url, **QUICK_RETRIES}
    api_server = GatewayProcess(tmp_path / "gw", env=env, serve_args=("--no-worker",))
    api_server.api_key = create_key_with_cli(api_server.env, title="pg", credits=100)
    api_server.start()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        with running_receiver() as receiver:
            hook = add_webhook(api_server, receiver.url)
            receiver.secret = hook["secret_key"]
            tasks = [generate(api_server, f"shared {n} [fail: {n}]") for n in range(8)]
            workers = [
                subprocess.Popen(
                    [sys.executable, "-m", "vidgate", "worker"],
                    env=api_server.env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(2)
            ]
            for task_id in tasks:
                wait_for_task(api_server, task_id, timeout_s=60)
            receiver.wait_for(len(tasks))
            time.sleep(1.5)
            assert len(receiver.received) == len(tasks)
        assert receiver.unverified == []
        assert sorted(g.payload["data"]["task_id"] for g in receiver.received) == sorted(tasks)
        assert len({g.message_id for g in receiver.received}) == len(tasks)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=15) == 0
        api_server.stop()
