"""Worker processes on PostgreSQL: a local job stays with the worker that renders it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest

from support import GatewayProcess, create_key_with_cli

pytestmark = pytest.mark.e2e

TASKS = 200


def test_two_workers_render_each_of_200_sample_tasks_exactly_once(
    private_postgres_url: str, tmp_path: Path
) -> None:
    env = {
        "VIDGATE_DATABASE_URL": private_postgres_url,
        "VIDGATE_MAX_CONCURRENT_JOBS": "1000",
        "VIDGATE_RATE_LIMIT_PER_SECOND": "1000",
        "VIDGATE_RATE_LIMIT_BURST": "1000",
        "VIDGATE_SAMPLE_FAILURE_INJECTION": "false",
    }
    api = GatewayProcess(tmp_path / "gw", env=env, serve_args=("--no-worker",))
    api.api_key = create_key_with_cli(api.env, title="pools", credits=500)
    api.start()
    logs = [tmp_path / f"worker-{n}.log" for n in (1, 2)]
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for log in logs:
            with log.open("wb") as out:
                workers.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "vidgate", "worker"],
                        env=api.env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        body = {"model": "sample", "prompt": "pool", "duration": "1", "resolution": "240p"}

        def create(n: int) -> str:
            response = httpx.post(
                f"{api.base_url}/api/v1/videos/generate",
                json={**body, "prompt": f"pool {n}"},
                headers=api.headers,
                timeout=30,
            )
            assert response.status_code == 200, response.text
            task_id: str = response.json()["data"]["task_id"]
            return task_id

        with ThreadPoolExecutor(max_workers=8) as pool:
            task_ids = list(pool.map(create, range(TASKS)))

        deadline = time.monotonic() + 240
        with psycopg.connect(private_postgres_url.replace("+psycopg", "")) as conn:
            while time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FROM video_tasks"
                ).fetchone()
                assert row is not None
                if row[0] == TASKS:
                    break
                time.sleep(1)
            else:
                pytest.fail(f"only {row[0]} of {TASKS} tasks completed in time")
            # Every sample submit starts one render: one `submitted` event per task means one
            # render per task, with no crash to excuse a second.
            submits = dict(
                conn.execute(
                    "SELECT task_id, count(*) FROM task_events WHERE kind = 'submitted' "
                    "GROUP BY task_id"
                ).fetchall()
            )
        assert set(submits) == set(task_ids)
        assert set(submits.values()) == {1}, {k: v for k, v in submits.items() if v != 1}
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)
        api.stop()
    text = "".join(log.read_text() for log in logs)
    renders = text.count("submitted to sample")
    print(
        f"\n{TASKS} tasks, 2 workers: {renders} renders, per worker",
        [log.read_text().count("submitted to sample") for log in logs],
    )
    assert renders == TASKS
    assert "submitting again" not in text
