"""Chaos on the scale-out deployment: 2 API processes, 3 worker processes, one PostgreSQL.

300 tasks are created concurrently over HTTP (each with an Idempotency-Key, as a careful client
sends them) against an upstream of random latency, while one worker and one API process are
SIGKILLed and replacements start. Then, from the database and the upstream's own records: every
task ended exactly once, the upstream made one job per task, every ledger sums to its balance,
and no task was charged twice or refunded without failing.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest

from openai_videos_server import FakeVideosUpstream
from support import GatewayProcess, create_key_with_cli

pytestmark = pytest.mark.e2e

TASKS = 300
ACCOUNTS = 3
CREDITS = 1000
KILL_AFTER = 100  # creates sent before one worker and one API process are killed
PRICE = 2

CATALOGUE = """
[models.chaos]
types = ["text-to-video"]
price = { base = 2 }
time_limit_seconds = 600
channels = [{ provider = "up", upstream_model = "sora-2" }]
"""


class Fleet:
    """The processes of the deployment, with replacements started as the chaos goes."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.apis: list[GatewayProcess] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self.lock = threading.Lock()
        self.started = 0

    def start_api(self, api_key: str) -> GatewayProcess:
        self.started += 1
        api = GatewayProcess(
            self.root / f"api-{self.started}", env=self.env, serve_args=("--no-worker",)
        )
        api.api_key = api_key  # any key: the clients send their own
        api.start()
        with self.lock:
            self.apis.append(api)
        return api

    def start_worker(self) -> subprocess.Popen[bytes]:
        self.started += 1
        with (self.root / f"worker-{self.started}.log").open("wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "vidgate", "worker"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.workers.append(worker)
        return worker

    def live_apis(self) -> list[GatewayProcess]:
        with self.lock:
            return [api for api in self.apis if api.process and api.process.poll() is None]

    def kill_one_api(self) -> None:
        with self.lock:
            victim = self.apis.pop(0)
        victim.kill()

    def kill_one_worker(self, dsn: str) -> int:
        """SIGKILL a worker in the middle of its work (the one holding the most leases); how
        many tasks it held."""
        pids = {worker.pid: worker for worker in self.workers if worker.poll() is None}
        held: dict[int, int] = {}
        with psycopg.connect(dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 30
            while not held and time.monotonic() < deadline:
                owners = conn.execute(
                    "SELECT lease_owner, count(*) FROM video_tasks WHERE lease_owner IS NOT NULL "
                    "AND status NOT IN ('completed', 'failed', 'cancelled') GROUP BY lease_owner"
                ).fetchall()
                for owner, count in owners:
                    pid = int(owner.split(":")[-2])  # worker ids are host:pid:suffix
                    if pid in pids:
                        held[pid] = held.get(pid, 0) + count
                time.sleep(0.02)
        pid = max(held, key=held.__getitem__) if held else next(iter(pids))
        victim = pids[pid]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        return held.get(pid, 0)

    def stop(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
        for api in self.apis:
            api.stop()

    def logs(self) -> str:
        return "".join(path.read_text(errors="replace") for path in self.root.rglob("*.log"))


def create_with_retries(fleet: Fleet, n: int, api_key: str) -> str:
    """POST the create, and on a dead process or a lost answer send it again, with the same
    Idempotency-Key, to another live API process: the retry must not make a second task."""
    body = {"model": "chaos", "prompt": f"chaos {n}" + (" [fail]" if n % 10 == 0 else "")}
    headers = {"Authorization": f"Bearer {api_key}", "Idempotency-Key": f"chaos-{n}"}
    for attempt in range(40):
        apis = fleet.live_apis()
        api = apis[(n + attempt) % len(apis)]
        try:
            response = httpx.post(
                f"{api.base_url}/api/v1/videos/generate", json=body, headers=headers, timeout=30
            )
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        if response.status_code in (429, 503):
            time.sleep(float(response.headers.get("Retry-After", "1")))
            continue
        assert response.status_code == 200, response.text
        task_id: str = response.json()["data"]["task_id"]
        return task_id
    raise AssertionError(f"create {n} never got an answer")


def test_300_tasks_survive_killed_workers_and_api_processes(
    private_postgres_url: str, tmp_path: Path
) -> None:
    dsn = private_postgres_url.replace("+psycopg", "")
    with FakeVideosUpstream(polls_to_finish=2) as upstream:
        upstream.random_delay_s = (0.0, 0.25)
        providers = tmp_path / "providers.toml"
        providers.write_text(
            f'[providers.up]\nkind = "openai"\nbase_url = "{upstream.base_url}"\n'
            'api_key_env = "UPSTREAM_KEY"\n'
            "poll_interval_s = 0.3\nmax_poll_interval_s = 1.0\nrequest_timeout_s = 10\n"
        )
        catalogue = tmp_path / "catalogue.toml"
        catalogue.write_text(CATALOGUE)
        env = {
            **GatewayProcess.TEST_SETTINGS,
            "VIDGATE_DATABASE_URL": private_postgres_url,
            "VIDGATE_PROVIDERS_PATH": str(providers),
            "VIDGATE_CATALOGUE_PATH": str(catalogue),
            "UPSTREAM_KEY": upstream.api_key,
            "VIDGATE_MAX_CONCURRENT_JOBS": "1000",
            "VIDGATE_RATE_LIMIT_PER_SECOND": "1000",
            "VIDGATE_RATE_LIMIT_BURST": "1000",
            "VIDGATE_WORKER_CONCURRENCY": "8",
            # One data dir for every process: results stored by a worker are served by any API.
            "VIDGATE_DATA_DIR": str(tmp_path / "shared"),
            "PATH": "/usr/bin:/bin",
        }
        fleet = Fleet(tmp_path, env)
        keys = [
            create_key_with_cli(env, title=f"tenant {i}", credits=CREDITS) for i in range(ACCOUNTS)
        ]
        try:
            for _ in range(2):
                fleet.start_api(keys[0])
            for _ in range(3):
                fleet.start_worker()
            sent = threading.Semaphore(0)
            held: list[int] = []

            def create(n: int) -> str:
                sent.release()
                return create_with_retries(fleet, n, keys[n % ACCOUNTS])

            def chaos() -> None:
                for _ in range(KILL_AFTER):
                    sent.acquire()
                held.append(fleet.kill_one_worker(dsn))
                fleet.kill_one_api()
                fleet.start_worker()
                fleet.start_api(keys[0])

            started = time.monotonic()
            killer = threading.Thread(target=chaos)
            killer.start()
            with ThreadPoolExecutor(max_workers=16) as pool:
                task_ids = list(pool.map(create, range(TASKS)))
            killer.join(timeout=60)
            created_s = time.monotonic() - started
            statuses = wait_until_all_ended(dsn, TASKS, timeout_s=300)
            ended_s = time.monotonic() - started
        finally:
            fleet.stop()
        logs = fleet.logs()

    assert len(set(task_ids)) == TASKS, "a retried create made a second task"
    with psycopg.connect(dsn) as conn:
        tasks = conn.execute(
            "SELECT id, account_id, status, credits_used, credits_refunded FROM video_tasks"
        ).fetchall()
        terminal_events = Counter(
            task_id
            for (task_id,) in conn.execute(
                "SELECT task_id FROM task_events WHERE kind IN ('completed', 'failed', 'cancelled')"
            )
        )
        ledger = conn.execute(
            "SELECT task_id, kind, count(*) FROM credit_ledger WHERE task_id IS NOT NULL "
            "GROUP BY task_id, kind"
        ).fetchall()
        balances = conn.execute(
            "SELECT a.id, a.credits, coalesce(sum(l.amount), 0) FROM accounts a "
            "LEFT JOIN credit_ledger l ON l.account_id = a.id GROUP BY a.id, a.credits"
        ).fetchall()
        in_flight = conn.execute("SELECT coalesce(sum(in_flight_jobs), 0) FROM api_keys").fetchone()
        slots = conn.execute("SELECT coalesce(sum(in_flight), 0) FROM channel_slots").fetchone()

    # Every task ended exactly once.
    assert {row[0] for row in tasks} == set(task_ids)
    assert set(terminal_events) == set(task_ids)
    assert set(terminal_events.values()) == {1}
    by_status = Counter(row[2] for row in tasks)
    failed = {row[0] for row in tasks if row[2] == "failed"}
    assert by_status["completed"] + by_status["failed"] == TASKS, by_status
    assert len(failed) == TASKS // 10, "only the [fail] prompts fail"

    # Charged once, refunded exactly when failed; every ledger sums to its balance.
    charges = {(task_id, kind): count for task_id, kind, count in ledger}
    assert all(charges.get((task_id, "debit")) == 1 for task_id in task_ids)
    assert set(charges.values()) == {1}
    assert {task_id for task_id, kind in charges if kind == "refund"} == failed
    assert all(credits == total for _, credits, total in balances)
    spent = sum(PRICE for row in tasks if row[2] == "completed")
    assert sum(credits for _, credits, _ in balances) == ACCOUNTS * CREDITS - spent
    assert in_flight == (0,)
    assert slots == (0,)
    assert held[0] > 0, "the killed worker held no task: the kill proved nothing"

    # One upstream job per task: a resubmit after a crash carried the same Idempotency-Key.
    submits = Counter(create.headers.get("idempotency-key") for create in upstream.creates)
    assert set(submits) == set(task_ids)
    assert len(upstream.videos) == TASKS
    resent = {key: count for key, count in submits.items() if count > 1}
    print(
        f"\nchaos: {TASKS} tasks over 2+1 API and 3+1 worker processes (1 of each SIGKILLed): "
        f"the killed worker held {held[0]} tasks; created in {created_s:.1f} s, "
        f"all ended after {ended_s:.1f} s; {dict(by_status)}; "
        f"{len(upstream.creates)} upstream submits, {len(upstream.videos)} upstream jobs, "
        f"{len(resent)} tasks resubmitted with their key after the kill; "
        f"{logs.count('submitting again')} 'submitting again' log lines"
    )
    print(f"chaos: final statuses seen while waiting: {statuses}")


def wait_until_all_ended(dsn: str, total: int, *, timeout_s: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            counts = dict(
                conn.execute("SELECT status, count(*) FROM video_tasks GROUP BY status").fetchall()
            )
            ended = counts.get("completed", 0) + counts.get("failed", 0)
            if ended == total and sum(counts.values()) == total:
                return counts
            if time.monotonic() > deadline:
                pytest.fail(f"tasks not all ended after {timeout_s} s: {counts}")
            time.sleep(0.5)
