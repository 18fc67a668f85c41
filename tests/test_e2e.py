"""End to end against real `vidgate serve` processes: the API Mall flow a client goes through."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from support import (
    GatewayProcess,
    create_key_with_cli,
    decode_mp4,
    static_http_server,
    wait_for_task,
)

pytestmark = pytest.mark.e2e


def post_generate(
    server: GatewayProcess, body: dict, *, headers: dict | None = None
) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/api/v1/videos/generate",
        json=body,
        headers={**server.headers, **(headers or {})},
        timeout=10,
    )


def credits(server: GatewayProcess) -> int:
    response = httpx.get(f"{server.base_url}/api/v1/account/balances", headers=server.headers)
    value: int = response.json()["data"]["credits"]
    return value


def download(url: str, path: Path) -> Path:
    with httpx.stream("GET", url, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "video/mp4"
        with path.open("wb") as file:
            for chunk in response.iter_bytes():
                file.write(chunk)
    return path


@pytest.fixture
def image_server() -> Iterator[str]:
    """A loopback server with a red PNG at /red.png (the gateway allows 127.0.0.0/8 in tests)."""
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), (220, 20, 20)).save(buffer, format="PNG")
    with static_http_server({"/red.png": ("image/png", buffer.getvalue())}) as base_url:
        yield base_url


def test_text_to_video_create_poll_download_decode(
    live_gateway: GatewayProcess, tmp_path: Path
) -> None:
    body = {
        "model": "sample",
        "prompt": "a red fox in the snow",
        "aspect_ratio": "portrait",
        "duration": "2",
        "resolution": "240p",
    }
    created = post_generate(live_gateway, body).json()["data"]
    assert created["credits_used"] == 1
    task = wait_for_task(live_gateway, created["task_id"])
    assert task["status"] == "completed", task
    assert task["progress"] == 100
    assert task["error_message"] is None
    assert task["output"]["resultUrls"] == [task["video_url"]]
    assert task["video_url"].startswith(f"{live_gateway.base_url}/files/{created['task_id']}.mp4?")
    assert task["completed_at"] is not None

    video = decode_mp4(download(task["video_url"], tmp_path / "out.mp4"))
    assert video["codec"] == "h264"
    assert (video["width"], video["height"]) == (240, 426)
    assert video["fps"] == 24
    assert len(video["frames"]) == 48
    assert abs(video["duration_s"] - 2.0) < 1 / 24 + 1e-6
    assert not np.array_equal(video["frames"][0], video["frames"][-1])


def test_image_to_video_uses_the_first_image(
    live_gateway: GatewayProcess, image_server: str, tmp_path: Path
) -> None:
    body = {
        "model": "sample",
        "type": "image-to-video",
        "prompt": "make it move",
        "image_urls": [f"{image_server}/red.png"],
        "aspect_ratio": "square",
        "duration": "1",
        "resolution": "240p",
    }
    task_id = post_generate(live_gateway, body).json()["data"]["task_id"]
    task = wait_for_task(live_gateway, task_id)
    assert task["status"] == "completed", task
    video = decode_mp4(download(task["video_url"], tmp_path / "i2v.mp4"))
    assert (video["width"], video["height"]) == (240, 240)
    middle = video["frames"][len(video["frames"]) // 2][100:140, 100:140].reshape(-1, 3).mean(0)
    red, green, blue = middle
    assert red > 150, middle
    assert green < 90, middle
    assert blue < 90, middle


def test_a_never_public_image_url_is_refused_before_any_charge(
    live_gateway: GatewayProcess,
) -> None:
    # (A name or redirect that reaches a private address is judged at fetch time: the task
    # fails and is refunded; tests/test_ssrf_create.py covers that path.)
    before = credits(live_gateway)
    body = {
        "model": "sora2",
        "type": "image-to-video",
        "prompt": "p",
        "image_urls": ["http://169.254.169.254/latest/meta-data/"],
    }
    answer = post_generate(live_gateway, body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"].startswith("image_urls[0]: ")
    assert "169.254.169.254" in error["message"]
    assert credits(live_gateway) == before


def test_injected_failure_is_refunded_in_full(live_gateway: GatewayProcess) -> None:
    before = credits(live_gateway)
    body = {"model": "sora2", "prompt": "a storm [fail: upstream exploded]", "n_frames": "15"}
    created = post_generate(live_gateway, body).json()["data"]
    assert created["credits_used"] == 45
    assert created["remaining_credits"] == before - 45
    task = wait_for_task(live_gateway, created["task_id"])
    assert task["status"] == "failed"
    assert task["error_message"] == "upstream exploded"
    assert task["failMsg"] == "upstream exploded"
    assert task["video_url"] is None
    assert task["output"]["resultUrls"] == []
    assert (task["credits_used"], task["credits_refunded"]) == (45, 45)
    assert credits(live_gateway) == before


def test_idempotent_replay_returns_the_same_task(live_gateway: GatewayProcess) -> None:
    before = credits(live_gateway)
    body = {"model": "sample", "prompt": "once", "duration": "1", "resolution": "240p"}
    key = {"Idempotency-Key": "e2e-replay"}
    first = post_generate(live_gateway, body, headers=key)
    wait_for_task(live_gateway, first.json()["data"]["task_id"])
    second = post_generate(live_gateway, body, headers=key)
    assert second.status_code == 200
    assert second.json()["data"] == first.json()["data"]
    assert second.headers["idempotent-replayed"] == "true"
    assert credits(live_gateway) == before - 1


def test_result_urls_support_range_and_are_signed(
    live_gateway: GatewayProcess,
) -> None:
    body = {"model": "sample", "prompt": "seek", "duration": "1", "resolution": "240p"}
    task_id = post_generate(live_gateway, body).json()["data"]["task_id"]
    url = wait_for_task(live_gateway, task_id)["video_url"]
    full = httpx.get(url)
    assert full.headers["accept-ranges"] == "bytes"
    partial = httpx.get(url, headers={"Range": "bytes=100-199"})
    assert partial.status_code == 206
    assert partial.headers["content-range"] == f"bytes 100-199/{len(full.content)}"
    assert partial.content == full.content[100:200]

    tampered = url.replace("signature=", "signature=0")
    for bad in (tampered, url.replace("expires=", "expires=1"), url.split("?")[0]):
        response = httpx.get(bad)
        assert response.status_code in (400, 403), bad
        assert response.json()["success"] is False
    denied = httpx.get(tampered).json()
    assert denied["error"]["code"] == "forbidden"


def test_sigkill_mid_task_resumes_after_restart_charged_once(tmp_path: Path) -> None:
    server = GatewayProcess(tmp_path / "gw").start()
    try:
        before = credits(server)
        body = {"model": "sora2", "prompt": "survive the crash [slow:2]", "n_frames": "10"}
        task_id = post_generate(server, body).json()["data"]["task_id"]
        wait_for_task(server, task_id, until=("processing",), timeout_s=20)
        server.kill()
        server.start()  # same data dir and port; the old lease expires after 3 s
        task = wait_for_task(server, task_id, timeout_s=90)
        assert task["status"] == "completed", task
        assert (task["credits_used"], task["credits_refunded"]) == (30, 0)
        assert credits(server) == before - 30
        assert "submitting again" in server.log()
        video = decode_mp4(download(task["video_url"], tmp_path / "after-crash.mp4"))
        assert (video["width"], video["height"], len(video["frames"])) == (1280, 720, 240)
    finally:
        server.stop()


def test_task_past_its_time_limit_fails_and_is_refunded(tmp_path: Path) -> None:
    catalogue = tmp_path / "models.toml"
    catalogue.write_text(
        "[models.quick]\ntime_limit_seconds = 2\nprice = { base = 5 }\n"
        'channels = [{ provider = "sample" }]\n'
    )
    server = GatewayProcess(tmp_path / "gw", env={"VIDGATE_CATALOGUE_PATH": str(catalogue)}).start()
    try:
        before = credits(server)
        started = time.monotonic()
        task_id = post_generate(server, {"model": "quick", "prompt": "[slow:30]"}).json()["data"][
            "task_id"
        ]
        task = wait_for_task(server, task_id, timeout_s=20)
        assert time.monotonic() - started < 10
        assert task["status"] == "failed"
        assert task["error_message"] == "task timed out after 2 s (the limit of model quick)"
        assert task["credits_refunded"] == 5
        assert credits(server) == before
    finally:
        server.stop()


def test_separate_worker_process_runs_tasks_of_a_no_worker_api(tmp_path: Path) -> None:
    """The scale-out split: API with --no-worker, tasks run by `vidgate worker`."""
    api = GatewayProcess(tmp_path / "gw", serve_args=("--no-worker",)).start()
    worker = None
    try:
        body = {"model": "sample", "prompt": "split roles", "duration": "1", "resolution": "240p"}
        task_id = post_generate(api, body).json()["data"]["task_id"]
        time.sleep(1.0)
        assert wait_for_task(api, task_id, until=("pending",), timeout_s=1)["status"] == "pending"
        worker = subprocess.Popen(
            [sys.executable, "-m", "vidgate", "worker"],
            env=api.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert wait_for_task(api, task_id, timeout_s=60)["status"] == "completed"
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=15) == 0
        api.stop()


def test_postgresql_deployment_end_to_end(private_postgres_url: str, tmp_path: Path) -> None:
    """The same flow on PostgreSQL: migrate, create a key with the CLI, serve, generate."""
    env = {"VIDGATE_DATABASE_URL": private_postgres_url}
    server = GatewayProcess(tmp_path / "gw", env=env)
    server.api_key = create_key_with_cli(server.env, title="pg", credits=40)
    server.start()
    try:
        ready = httpx.get(f"{server.base_url}/readyz").json()["data"]
        assert ready == {"status": "ready", "database": "postgresql"}
        body = {"model": "sora2", "prompt": "on postgres [fail: nope]"}
        failed_id = post_generate(server, body).json()["data"]["task_id"]
        body = {"model": "sample", "prompt": "on postgres", "duration": "1", "resolution": "240p"}
        task_id = post_generate(server, body).json()["data"]["task_id"]
        assert wait_for_task(server, task_id)["status"] == "completed"
        failed = wait_for_task(server, failed_id)
        assert (failed["status"], failed["credits_refunded"]) == ("failed", 30)
        assert credits(server) == 39
        video = decode_mp4(
            download(wait_for_task(server, task_id)["video_url"], tmp_path / "pg.mp4")
        )
        assert len(video["frames"]) == 24
    finally:
        server.stop()
