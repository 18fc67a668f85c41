"""Metrics and JSON logs of real `vidgate serve` and `vidgate worker` processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from support import GatewayProcess, create_key_with_cli, free_port, wait_for_task
from test_metrics import Samples, parse, value

pytestmark = pytest.mark.e2e

SAMPLE = {"model": "sample", "duration": "1", "resolution": "240p"}
TASK_ROUTE = "/api/v1/videos/{task_id}"
GENERATE = "/api/v1/videos/generate"


def create(server: GatewayProcess, body: dict[str, Any]) -> str:
    response = httpx.post(
        f"{server.base_url}{GENERATE}", json=body, headers=server.headers, timeout=10
    )
    assert response.status_code == 200, response.text
    task_id: str = response.json()["data"]["task_id"]
    return task_id


def scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    response = httpx.get(url, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return parse(response.text)


def database_counts(server: GatewayProcess) -> dict[str, int]:
    """What the database itself says: in-flight tasks by status, and due unheld ones."""
    url = server.env.get("VIDGATE_DATABASE_URL") or f"sqlite:///{server.data_dir / 'vidgate.db'}"
    engine = create_engine(url.replace("+aiosqlite", ""))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT status, count(*) FROM video_tasks GROUP BY status")
            ).all()
    finally:
        engine.dispose()
    return {status: count for status, count in rows}


def test_metrics_of_a_gateway_after_completed_and_failed_tasks(tmp_path: Path) -> None:
    server = GatewayProcess(tmp_path / "gw").start()
    try:
        done = [create(server, {**SAMPLE, "prompt": f"metrics {n}"}) for n in range(2)]
        failed = create(server, {"model": "sora2", "prompt": "metrics [fail]"})
        for task_id in [*done, failed]:
            wait_for_task(server, task_id)
        assert wait_for_task(server, failed)["credits_refunded"] == 30
        slow = create(server, {**SAMPLE, "prompt": "still rendering [slow:60]"})
        wait_for_task(server, slow, until=("processing",))
        missing = httpx.get(f"{server.base_url}/api/v1/videos/vid_x", headers=server.headers)
        assert missing.status_code == 404

        samples = scrape(f"{server.base_url}/metrics")
        requests = "vidgate_http_requests_total"
        assert value(samples, requests, method="POST", route=GENERATE, status="200") == 4
        polls = value(samples, requests, method="GET", route=TASK_ROUTE, status="200")
        assert polls is not None
        assert polls >= 4
        assert value(samples, requests, method="GET", route=TASK_ROUTE, status="404") == 1
        latency = "vidgate_http_request_duration_seconds_count"
        assert value(samples, latency, method="POST", route=GENERATE) == 4
        # Endings, observed by the worker after each commit.
        durations = "vidgate_task_duration_seconds_count"
        assert value(samples, durations, model="sample", status="completed") == 2
        assert value(samples, durations, model="sora2", status="failed") == 1
        total = value(
            samples, "vidgate_task_duration_seconds_sum", model="sample", status="completed"
        )
        assert total is not None
        assert total > 0
        assert value(samples, "vidgate_refunds_total", reason="generation_failed") == 1
        claims = value(samples, "vidgate_task_claim_latency_seconds_count", queue="default")
        assert claims is not None
        assert claims >= 4
        assert value(samples, "vidgate_channel_breaker_open", channel="sample") == 0
        # The gauges say what the database holds: the slow one renders (held, not waiting).
        assert database_counts(server) == {"completed": 2, "failed": 1, "processing": 1}
        assert value(samples, "vidgate_tasks", status="processing", model="sample") == 1
        assert value(samples, "vidgate_tasks", status="pending", model="sample") == 0
        assert value(samples, "vidgate_queue_depth", queue="default") == 0
    finally:
        server.stop()


def test_worker_metrics_reach_the_api_scrape_through_the_shared_directory(
    tmp_path: Path,
) -> None:
    """Scale-out on one machine: `serve --no-worker` and `vidgate worker` share a metrics dir;
    the API's /metrics shows what the worker observed, and the worker's port shows it too."""
    metrics_dir = tmp_path / "metrics"
    worker_port = free_port()
    token = {"Authorization": "Bearer scrape-me"}
    env = {"VIDGATE_METRICS_DIR": str(metrics_dir), "VIDGATE_METRICS_TOKEN": "scrape-me"}
    api = GatewayProcess(tmp_path / "gw", env=env, serve_args=("--no-worker",)).start()
    worker: subprocess.Popen[bytes] | None = None
    try:
        task_ids = [create(api, {**SAMPLE, "prompt": f"split {n}"}) for n in range(2)]
        waited_s = 1.0
        time.sleep(waited_s)
        before = scrape(f"{api.base_url}/metrics", token)
        assert value(before, "vidgate_queue_depth", queue="default") == 2
        oldest = value(before, "vidgate_queue_oldest_due_age_seconds", queue="default")
        assert oldest is not None
        assert oldest >= waited_s
        assert value(before, "vidgate_tasks", status="pending", model="sample") == 2
        assert (
            value(before, "vidgate_task_duration_seconds_count", model="sample", status="completed")
            is None
        )

        with (tmp_path / "worker.log").open("wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "vidgate", "worker"],
                env={**api.env, "VIDGATE_WORKER_METRICS_PORT": str(worker_port)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        for task_id in task_ids:
            assert wait_for_task(api, task_id)["status"] == "completed"
        during = scrape(f"{api.base_url}/metrics", token)
        durations = "vidgate_task_duration_seconds_count"
        assert value(during, durations, model="sample", status="completed") == 2
        claims = "vidgate_task_claim_latency_seconds"
        assert value(during, f"{claims}_count", queue="default") == 2
        claimed_after = value(during, f"{claims}_sum", queue="default")
        assert claimed_after is not None
        assert claimed_after >= 2 * waited_s  # both waited for the worker to start
        assert value(during, "vidgate_channel_breaker_open", channel="sample") == 0
        assert value(during, "vidgate_queue_depth", queue="default") == 0
        assert value(during, "vidgate_tasks", status="pending", model="sample") == 0
        # The API's own request counts are in the same scrape.
        requests = "vidgate_http_requests_total"
        assert value(during, requests, method="POST", route=GENERATE, status="200") == 2
        # The worker's own port: the directory's metrics (no database gauges, no token).
        own = scrape(f"http://127.0.0.1:{worker_port}/metrics")
        assert value(own, durations, model="sample", status="completed") == 2

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        after = scrape(f"{api.base_url}/metrics", token)
        # A stopped worker's counts stay; its breaker view (a live gauge) goes with it.
        assert value(after, durations, model="sample", status="completed") == 2
        assert value(after, "vidgate_channel_breaker_open", channel="sample") is None
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
        api.stop()


def test_json_logs_carry_the_request_id_and_the_task_id(tmp_path: Path) -> None:
    server = GatewayProcess(tmp_path / "gw", env={"VIDGATE_LOG_FORMAT": "json"})
    if server.api_key is None:  # embedded: a key made first, so `serve` prints no banner
        server.api_key = create_key_with_cli(server.env, title="logs", credits=100)
    server.start()
    try:
        response = httpx.post(
            f"{server.base_url}{GENERATE}",
            json={**SAMPLE, "prompt": "json logs"},
            headers=server.headers,
        )
        request_id = response.headers["x-request-id"]
        task_id = response.json()["data"]["task_id"]
        assert wait_for_task(server, task_id)["status"] == "completed"
    finally:
        server.stop()
    lines = [line for line in server.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line of the process is one object
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record)
    access = [r for r in records if f"POST {GENERATE}" in r["message"]]
    assert len(access) == 1
    assert access[0]["logger"] == "uvicorn.access"
    assert access[0]["request_id"] == request_id
    worker = [r for r in records if r.get("task_id") == task_id]
    messages = [r["message"] for r in worker]
    assert f"task {task_id}: submitted to sample" in messages
    assert f"task {task_id}: completed" in messages
    assert all(r["logger"] == "vidgate.worker" for r in worker)
    assert any(r["message"].startswith("Started server process") for r in records)
    assert all(r["time"].endswith("Z") for r in records)
