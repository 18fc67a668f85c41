"""Scale-out workers on PostgreSQL, as real processes: NOTIFY wake-ups (and their reconnect),
SIGTERM handing a running task over, and the operator's `vidgate tasks` on stuck tasks.

One `serve --no-worker` API process for the module; each test starts its own `vidgate worker`
processes with a 5 s poll interval, so a task that starts well within a second was woken by a
notification, not found by a poll.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from support import GatewayProcess, create_key_with_cli, fresh_postgres_database, wait_for_task
from vidgate.db import migrate

pytestmark = pytest.mark.e2e

POLL_S = "5"  # a poll this slow would make a task wait 2.5 s on average
SAMPLE = {"model": "sample", "duration": "1", "resolution": "240p"}


@dataclass
class Deployment:
    api: GatewayProcess
    dsn: str  # libpq spelling, for the test's own looks at the database
    tmp: Path

    def query(self, text: str, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return conn.execute(text, params).fetchall()

    def create(self, prompt: str) -> str:
        response = httpx.post(
            f"{self.api.base_url}/api/v1/videos/generate",
            json={**SAMPLE, "prompt": prompt},
            headers=self.api.headers,
            timeout=30,
        )
        assert response.status_code == 200, response.text
        task_id: str = response.json()["data"]["task_id"]
        return task_id

    def task(self, task_id: str) -> dict[str, Any]:
        rows = self.query(
            "SELECT status, lease_owner, created_at, started_at, credits_refunded "
            "FROM video_tasks WHERE id = %s",
            task_id,
        )
        status, owner, created, started, refunded = rows[0]
        return {
            "status": status,
            "lease_owner": owner,
            "created_at": created,
            "started_at": started,
            "credits_refunded": refunded,
        }

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vidgate", *args],
            env={**self.api.env, "COLUMNS": "250"},
            capture_output=True,
            text=True,
            timeout=60,
        )


class WorkerProcess:
    def __init__(self, deployment: Deployment, name: str, **env: str) -> None:
        self.log_path = deployment.tmp / f"{name}.log"
        settings = {"VIDGATE_WORKER_POLL_INTERVAL_S": POLL_S, **env}
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vidgate", "worker"],
                env={**deployment.api.env, **settings},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_listening(self, times: int = 1, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while self.log().count("listening for wake-ups") < times:
            assert self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.05)

    @property
    def owner_prefix(self) -> str:
        """Its worker ids are host:pid:suffix (worker/loop.py new_worker_id)."""
        return f":{self.process.pid}:"

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("scale-out")
    with fresh_postgres_database() as url:
        migrate.upgrade(url)
        env = {
            "VIDGATE_DATABASE_URL": url,
            "VIDGATE_RATE_LIMIT_PER_SECOND": "1000",
            "VIDGATE_RATE_LIMIT_BURST": "1000",
        }
        api = GatewayProcess(tmp / "api", env=env, serve_args=("--no-worker",))
        api.api_key = create_key_with_cli(api.env, title="scale-out", credits=100)
        api.start()
        try:
            yield Deployment(api=api, dsn=url.replace("+psycopg", ""), tmp=tmp)
        finally:
            api.stop()


def wait_until(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def dispatch_latency(deployment: Deployment, task_id: str) -> float:
    """create -> the worker's submit (started_at), from the task row's own timestamps."""
    wait_until(
        lambda: deployment.task(task_id)["started_at"] is not None, 10, f"{task_id} never started"
    )
    task = deployment.task(task_id)
    started: datetime = task["started_at"]
    return (started - task["created_at"]).total_seconds()


def test_notify_wakes_an_idle_worker_and_resumes_after_its_connection_is_killed(
    deployment: Deployment,
) -> None:
    worker = WorkerProcess(deployment, "notified")
    try:
        worker.wait_listening()
        before = [dispatch_latency(deployment, deployment.create(f"woken {n}")) for n in range(5)]
        # The listen connection dies (a database restart or failover looks the same to it).
        killed = deployment.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'vidgate-listen' AND datname = current_database()"
        )
        assert killed == [(True,)]
        worker.wait_listening(times=2, timeout_s=10)
        after = [dispatch_latency(deployment, deployment.create(f"again {n}")) for n in range(5)]
    finally:
        assert worker.stop() == 0, worker.log()
    print(f"\ndispatch latency (s), poll every {POLL_S} s: {before} then {after}")
    # By polling alone each would start within 1 s with a chance of 1 in 5.
    assert max(before) < 1.0, before
    assert max(after) < 1.0, after
    assert "wake-up connection lost" in worker.log()


def test_sigterm_hands_a_running_task_to_another_worker_and_fail_refunds_once(
    deployment: Deployment,
) -> None:
    first = WorkerProcess(deployment, "first", VIDGATE_WORKER_LEASE_S="300")
    second = None
    try:
        first.wait_listening()
        task_id = deployment.create("held for long [slow:60]")
        wait_until(
            lambda: first.owner_prefix in (deployment.task(task_id)["lease_owner"] or ""),
            10,
            "the first worker never took the task",
        )
        second = WorkerProcess(deployment, "second", VIDGATE_WORKER_LEASE_S="300")
        second.wait_listening()
        started = time.monotonic()
        assert first.stop() == 0, first.log()
        stopped_after = time.monotonic() - started
        # Its 300 s lease was handed back, and the release's notification woke the other one.
        pid = second.owner_prefix
        wait_until(
            lambda: pid in (deployment.task(task_id)["lease_owner"] or ""),
            1.5,
            f"the second worker did not take the task at once: {deployment.task(task_id)}",
        )
        assert stopped_after < 15, stopped_after

        # The operator ends it, twice at once: one refund, the other told it had ended.
        with ThreadPoolExecutor(max_workers=2) as pool:
            runs = list(pool.map(lambda _: deployment.cli("tasks", "fail", task_id), range(2)))
        assert sorted(run.returncode for run in runs) == [0, 1], [r.stderr for r in runs]
        done = next(run for run in runs if run.returncode == 0)
        refused = next(run for run in runs if run.returncode == 1)
        assert "failed (failed by the operator); 1 credits refunded" in done.stdout
        assert "has already ended (failed); nothing was changed" in refused.stderr
        again = deployment.cli("tasks", "fail", task_id, "--reason", "once more")
        assert again.returncode == 1
        task = wait_for_task(deployment.api, task_id, timeout_s=5)
        assert (task["status"], task["credits_refunded"]) == ("failed", 1)
        assert task["error_message"] == "failed by the operator"
        refunds = deployment.query(
            "SELECT count(*) FROM credit_ledger WHERE task_id = %s AND kind = 'refund'", task_id
        )
        assert refunds == [(1,)]
        # One audit row: the refused runs changed nothing, so they left none.
        audited = deployment.query(
            "SELECT actor, action, reason FROM audit_log WHERE target_id = %s", task_id
        )
        assert audited == [("cli", "task.fail", "failed by the operator")]
        # The ending took the lease too: the second worker's later writes are fenced off.
        assert deployment.task(task_id)["lease_owner"] is None
    finally:
        first.stop()
        if second is not None:
            assert second.stop() == 0, second.log()


def test_retry_runs_a_task_a_dead_worker_holds(deployment: Deployment) -> None:
    dead = WorkerProcess(deployment, "dead", VIDGATE_WORKER_LEASE_S="300")
    rescuer = None
    try:
        dead.wait_listening()
        task_id = deployment.create("rescued [slow:1]")
        wait_until(
            lambda: (
                (task := deployment.task(task_id))["status"] == "processing"
                and dead.owner_prefix in (task["lease_owner"] or "")
            ),
            10,
            "the worker never started the task",
        )
        dead.kill()
        rescuer = WorkerProcess(deployment, "rescuer", VIDGATE_WORKER_LEASE_S="300")
        rescuer.wait_listening()
        time.sleep(1.0)
        stuck = deployment.task(task_id)
        assert stuck["status"] == "processing"
        assert dead.owner_prefix in stuck["lease_owner"]  # for 300 s more

        listed = deployment.cli("tasks", "list", "--status", "processing")
        assert listed.returncode == 0, listed.stderr
        assert task_id in listed.stdout
        retried = deployment.cli("tasks", "retry", task_id)
        assert retried.returncode == 0, retried.stderr
        assert f"task {task_id}: due now on queue default; cleared the lease of" in retried.stdout
        assert dead.owner_prefix in retried.stdout
        task = wait_for_task(deployment.api, task_id, timeout_s=30)
        assert (task["status"], task["credits_used"], task["credits_refunded"]) == (
            "completed",
            1,
            0,
        )
        assert "submitting again" in rescuer.log()  # the dead worker's render was lost

        shown = deployment.cli("tasks", "show", task_id)
        assert shown.returncode == 0, shown.stderr
        row, _, rest = shown.stdout.partition("Events")
        events, _, ledger = rest.partition("Ledger")
        for expected in (task_id, "completed"):
            assert expected in row, shown.stdout
        for kind in ("created", "submitted", "completed"):
            assert kind in events, shown.stdout
        for expected in ("debit", "-1"):
            assert expected in ledger, shown.stdout
        assert "refund" not in ledger, shown.stdout  # charged once, nothing given back
        ended = deployment.cli("tasks", "retry", task_id)
        assert ended.returncode == 1
        assert "has already ended (completed); create a new task to run it again" in ended.stderr
        audited = deployment.query(
            "SELECT actor, action FROM audit_log WHERE target_id = %s", task_id
        )
        assert audited == [("cli", "task.retry")]
    finally:
        if rescuer is not None:
            assert rescuer.stop() == 0, rescuer.log()


def test_with_pg_notify_false_the_worker_does_not_listen_and_finds_tasks_by_its_poll(
    deployment: Deployment,
) -> None:
    worker = WorkerProcess(
        deployment, "unnotified", VIDGATE_PG_NOTIFY="false", VIDGATE_WORKER_POLL_INTERVAL_S="1"
    )
    try:
        task_id = deployment.create("found by the poll")
        task = wait_for_task(deployment.api, task_id, timeout_s=30)
        assert task["status"] == "completed"
        assert "started (concurrency" in worker.log()
        listening = deployment.query(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'vidgate-listen' AND datname = current_database()"
        )
        assert listening == [(0,)]
        assert "listening for wake-ups" not in worker.log()
    finally:
        assert worker.stop() == 0, worker.log()
