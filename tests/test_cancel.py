"""Cancel: the rules on SQLite and PostgreSQL (remote jobs through the package's InMemoryProvider,
a worker's local job through the real runner), then over HTTP against real `vidgate serve`
processes with the sample renderer."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, update

from support import (
    Caller,
    GatewayProcess,
    create_key_with_cli,
    create_task_as,
    make_caller,
)
from vidgate.billing import service as billing
from vidgate.db.engine import Database
from vidgate.db.models import VideoTask
from vidgate.db.types import utcnow
from vidgate.errors import NotFound, TaskAlreadyEnded
from vidgate.net.fetch import FetchPolicy
from vidgate.providers.base import JobState, JobStatus, Provider, TechnicalError
from vidgate.providers.catalogue import Catalogue
from vidgate.providers.memory import InMemoryProvider
from vidgate.providers.registry import ProviderRegistry
from vidgate.settings import Settings
from vidgate.storage.factory import build_file_store
from vidgate.tasks import cancel, repository, transitions
from vidgate.tasks.repository import TaskRecord
from vidgate.worker.claim import SqlClaimer
from vidgate.worker.runner import TaskRunner

PRICE = 7
CATALOGUE = Catalogue.from_dict(
    {
        "models": {
            "refunding": {
                "price": {"base": PRICE},
                "channels": [{"provider": "upstream"}],
            },
            "keeping": {  # an upstream that charges for what it started
                "price": {"base": PRICE},
                "channels": [{"provider": "upstream", "refund_on_cancel": False}],
            },
        }
    }
)
POLICY = FetchPolicy(max_bytes=1 << 20, timeout_s=5)


class NoProviders:
    """What an API process without the worker's providers can reach: nothing."""

    def provider(self, name: str) -> Provider | None:
        return None


class CancelRefused(InMemoryProvider):
    """An upstream whose cancel fails (it is best effort)."""

    async def cancel(self, upstream_id: str) -> None:
        await super().cancel(upstream_id)
        raise TechnicalError("upstream answered 502 to the cancel")


@dataclass
class Setup:
    db: Database
    caller: Caller
    upstream: InMemoryProvider
    registry: ProviderRegistry
    tmp: Path

    async def create(self, model: str = "refunding") -> str:
        outcome = await create_task_as(
            self.caller,
            self.db,
            catalogue=CATALOGUE,
            model=model,
            prompt="a heron",
        )
        return outcome.task.id

    def runner(self, owner: str = "w1") -> TaskRunner:
        return TaskRunner(
            db=self.db,
            catalogue=CATALOGUE,
            registry=self.registry,
            store=build_file_store(Settings(data_dir=self.tmp)),
            owner=owner,
            lease_s=30,
            default_poll_interval_s=0.01,
            input_policy=POLICY,
            result_policy=POLICY,
            work_dir=self.tmp / "work",
        )

    async def claim(self, owner: str = "w1") -> list[str]:
        # A high limit: on PostgreSQL the session's shared database holds other tests' tasks.
        return await SqlClaimer(self.db).claim(owner=owner, limit=10_000, lease_s=30)

    async def submit(self, task_id: str) -> TaskRecord:
        """Claim the task and run its submit step: the upstream accepts it."""
        assert task_id in await self.claim()
        await self.runner().run(task_id)
        task = await self.task(task_id)
        assert (task.status, task.upstream_id) == ("processing", "upstream-job-1")
        return task

    async def cancel(self, task_id: str, **kwargs: Any) -> TaskRecord:
        arguments: dict[str, Any] = {
            "account_id": self.caller.account_id,
            "task_id": task_id,
            "catalogue": CATALOGUE,
            "providers": self.registry,
            **kwargs,
        }
        return await cancel.cancel_task(self.db, **arguments)

    async def task(self, task_id: str) -> TaskRecord:
        task = await self.db.backend.run_read(lambda conn: repository.get(conn, task_id))
        assert task is not None
        return task

    async def events(self, task_id: str) -> list[tuple[str, dict[str, Any]]]:
        found = await self.db.backend.run_read(lambda conn: repository.events_of(conn, task_id))
        return [(event.kind, event.data) for event in found]

    async def balance(self) -> tuple[int, int]:
        async with self.db.read() as session:
            return (
                await billing.balance(session, self.caller.account_id),
                await billing.ledger_sum(session, self.caller.account_id),
            )


@pytest.fixture
async def setup(db: Database, tmp_path: Path) -> Setup:
    upstream = InMemoryProvider(name="upstream")
    return Setup(
        db=db,
        caller=await make_caller(db, credits=100),
        upstream=upstream,
        registry=ProviderRegistry(CATALOGUE, {"upstream": upstream}),
        tmp=tmp_path,
    )


# -- the rules, on both databases ---------------------------------------------------------


async def test_a_task_not_yet_submitted_is_refunded_in_full_and_never_reaches_a_provider(
    setup: Setup,
) -> None:
    task_id = await setup.create("keeping")  # its channel keeps credits, but nothing started
    assert await setup.balance() == (100 - PRICE, 100 - PRICE)
    task = await setup.cancel(task_id)
    assert (task.status, task.error_code) == ("cancelled", "cancelled")
    assert task.credits_refunded == PRICE
    assert task.completed_at is not None
    assert await setup.balance() == (100, 100)
    assert await setup.events(task_id) == [("created", {}), ("cancelled", {"refunded": True})]
    # No worker takes it any more, and no provider ever heard of it.
    assert task_id not in await setup.claim()
    assert (setup.upstream.submitted, setup.upstream.cancelled) == ([], [])


@pytest.mark.parametrize(("model", "refunded"), [("refunding", PRICE), ("keeping", 0)])
async def test_a_task_in_flight_is_cancelled_upstream_and_refunded_as_its_channel_says(
    setup: Setup, model: str, refunded: int
) -> None:
    task_id = await setup.create(model)
    await setup.submit(task_id)
    task = await setup.cancel(task_id)
    assert (task.status, task.credits_refunded) == ("cancelled", refunded)
    assert setup.upstream.cancelled == ["upstream-job-1"]
    balance = 100 - PRICE + refunded
    assert await setup.balance() == (balance, balance)
    assert (await setup.events(task_id))[-1] == ("cancelled", {"refunded": bool(refunded)})
    # The worker's next visit is refused: nobody polls a cancelled job.
    assert task_id not in await setup.claim()
    stale = await setup.db.backend.run_write(
        lambda conn: transitions.progressed(
            conn, task_id, "w1", at=utcnow(), previous=0, progress=50, run_after=utcnow()
        )
    )
    assert stale is False


async def test_an_upstream_that_fails_to_cancel_does_not_stop_the_cancel(
    db: Database, tmp_path: Path
) -> None:
    upstream = CancelRefused(name="upstream")
    setup = Setup(
        db=db,
        caller=await make_caller(db, credits=100),
        upstream=upstream,
        registry=ProviderRegistry(CATALOGUE, {"upstream": upstream}),
        tmp=tmp_path,
    )
    task_id = await setup.create()
    await setup.submit(task_id)
    task = await setup.cancel(task_id)
    assert (task.status, task.credits_refunded) == ("cancelled", PRICE)
    assert upstream.cancelled == ["upstream-job-1"]


async def test_an_ended_task_cannot_be_cancelled(setup: Setup) -> None:
    completed = await setup.create()
    await setup.submit(completed)
    result = setup.tmp / "out.mp4"
    result.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    setup.upstream.poll_script.append(
        JobStatus(state=JobState.SUCCEEDED, progress=100, result_file=result)
    )

    def due(conn: Connection) -> None:
        conn.execute(update(VideoTask).where(VideoTask.id == completed).values(run_after=utcnow()))

    await setup.db.backend.run_write(due)
    assert completed in await setup.claim()
    await setup.runner().run(completed)
    assert (await setup.task(completed)).status == "completed"
    with pytest.raises(TaskAlreadyEnded, match=r"has already ended \(completed\)"):
        await setup.cancel(completed)

    cancelled = await setup.create()
    await setup.cancel(cancelled)
    with pytest.raises(TaskAlreadyEnded, match=r"\(cancelled\)"):
        await setup.cancel(cancelled)
    assert await setup.balance() == (100 - PRICE, 100 - PRICE)  # one refund, the first cancel's


async def test_another_accounts_task_is_not_found(setup: Setup) -> None:
    task_id = await setup.create()
    stranger = await make_caller(setup.db, credits=1, title="stranger")
    with pytest.raises(NotFound):
        await setup.cancel(task_id, account_id=stranger.account_id)
    with pytest.raises(NotFound):
        await setup.cancel("vid_00000000000000000000000000")
    assert (await setup.task(task_id)).status == "pending"


async def test_a_local_job_stops_at_its_next_progress_report(setup: Setup) -> None:
    """Cancelled from a process that cannot reach the job (NoProviders): the worker rendering
    it learns at its next progress write, which is refused, and stops the job itself."""
    setup.upstream.runs_locally = True
    task_id = await setup.create()
    setup.upstream.poll_script.append(JobStatus(state=JobState.RUNNING, progress=30))
    assert task_id in await setup.claim()
    render = asyncio.create_task(setup.runner().run(task_id))
    try:
        for _ in range(500):
            if (await setup.task(task_id)).progress == 30:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the local job never reported its progress")
        await setup.cancel(task_id, providers=NoProviders())
        assert setup.upstream.cancelled == []  # not from here
        setup.upstream.poll_script.append(JobStatus(state=JobState.RUNNING, progress=60))
        await asyncio.wait_for(render, timeout=10)
    finally:
        render.cancel()
    assert setup.upstream.cancelled == ["upstream-job-1"]  # by the worker, once refused
    task = await setup.task(task_id)
    assert (task.status, task.progress, task.credits_refunded) == ("cancelled", 30, PRICE)


# -- over HTTP, real gateways -------------------------------------------------------------

RENDER = {"model": "sample", "duration": "5", "resolution": "480p"}


def generate(server: GatewayProcess, prompt: str, **fields: str) -> dict[str, Any]:
    response = httpx.post(
        f"{server.base_url}/api/v1/videos/generate",
        json={**RENDER, **fields, "prompt": prompt},
        headers=server.headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def cancel_over_http(server: GatewayProcess, task_id: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/api/v1/videos/{task_id}/cancel",
        headers=headers or server.headers,
        timeout=30,
    )


def get_task(server: GatewayProcess, task_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{server.base_url}/api/v1/videos/{task_id}", headers=server.headers, timeout=10
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def credits(server: GatewayProcess) -> int:
    response = httpx.get(
        f"{server.base_url}/api/v1/account/balances", headers=server.headers, timeout=10
    )
    balance: int = response.json()["data"]["credits"]
    return balance


def wait_until(check: Any, *, timeout_s: float = 60, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def renders_in(directory: Path) -> list[str]:
    """The sample renderer's files: `.part` while it renders, `.mp4` once a render finished."""
    return (
        sorted(p.name for p in directory.glob("*") if ".mp4" in p.name)
        if directory.exists()
        else []
    )


@pytest.fixture
def api_only(tmp_path: Path) -> Iterator[GatewayProcess]:
    """`serve --no-worker`: nothing ever submits its tasks."""
    server = GatewayProcess(tmp_path / "api", serve_args=("--no-worker",)).start()
    yield server
    server.stop()


def test_cancel_before_submit_over_http(api_only: GatewayProcess) -> None:
    before = credits(api_only)
    created = generate(api_only, "a paper boat")
    assert credits(api_only) == before - created["credits_used"]
    response = cancel_over_http(api_only, created["task_id"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert body["request_id"].startswith("req_")
    task = body["data"]
    # API Mall's clients know completed and failed only: a cancelled task reads failed.
    assert (task["status"], task["error_code"]) == ("failed", "cancelled")
    assert task["credits_refunded"] == task["credits_used"] == created["credits_used"]
    assert task["completed_at"] is not None
    assert credits(api_only) == before
    assert get_task(api_only, created["task_id"]) == task
    history = httpx.get(
        f"{api_only.base_url}/api/v1/videos/history", headers=api_only.headers, timeout=10
    ).json()["data"]["items"]
    assert (history[0]["status"], history[0]["error_code"]) == ("failed", "cancelled")

    again = cancel_over_http(api_only, created["task_id"])
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "task_ended"
    assert credits(api_only) == before  # refunded once

    stranger = create_key_with_cli(api_only.env, title="stranger", credits=5)
    hidden = cancel_over_http(api_only, created["task_id"], Authorization=f"Bearer {stranger}")
    assert hidden.status_code == 404
    assert hidden.json()["error"]["code"] == "not_found"
    assert cancel_over_http(api_only, "vid_nope").status_code == 404
    unauthorised = httpx.post(f"{api_only.base_url}/api/v1/videos/vid_x/cancel", timeout=10)
    assert unauthorised.status_code == 401


def test_cancel_in_flight_stops_the_sample_render(live_gateway: GatewayProcess) -> None:
    before = credits(live_gateway)
    created = generate(live_gateway, "a slow lighthouse [slow:2]")
    task_id = created["task_id"]
    wait_until(lambda: get_task(live_gateway, task_id)["status"] == "processing", what="the submit")
    response = cancel_over_http(live_gateway, task_id)
    assert response.status_code == 200, response.text
    task = response.json()["data"]
    assert (task["status"], task["error_code"]) == ("failed", "cancelled")
    assert task["credits_refunded"] == created["credits_used"]
    assert credits(live_gateway) == before
    # The render would start after 2 s; told to stop, it ends at once, leaving nothing.
    samples = live_gateway.data_dir / "work" / "sample"
    time.sleep(3)
    wait_until(lambda: not any(n.endswith(".part") for n in renders_in(samples)), what="render")
    assert renders_in(samples) == []
    assert not (live_gateway.data_dir / "files" / f"{task_id}.mp4").exists()
    assert get_task(live_gateway, task_id) == task
    assert f"task {task_id}: completed" not in live_gateway.log()


def test_a_worker_elsewhere_stops_its_render_once_the_task_is_cancelled(
    private_postgres_url: str, tmp_path: Path
) -> None:
    """Scale-out: the API process cannot reach the worker's render; the worker's refused
    progress write stops it."""
    env = {"VIDGATE_DATABASE_URL": private_postgres_url}
    api = GatewayProcess(tmp_path / "gw", env=env, serve_args=("--no-worker",))
    api.api_key = create_key_with_cli(api.env, title="scale-out", credits=100)
    api.start()
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "vidgate", "worker"],
            env=api.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # Long enough to be cancelled mid-render: 10 s of 720p.
        created = generate(api, "a long render", duration="10", resolution="720p")
        task_id = created["task_id"]
        wait_until(lambda: get_task(api, task_id)["progress"] > 0, what="the render to start")
        samples = api.data_dir / "work" / "sample"
        assert any(name.endswith(".part") for name in renders_in(samples))
        response = cancel_over_http(api, task_id)
        assert response.status_code == 200, response.text
        assert response.json()["data"]["error_code"] == "cancelled"
        wait_until(
            lambda: not any(n.endswith(".part") for n in renders_in(samples)),
            what="the render to stop",
        )
        assert renders_in(samples) == []  # stopped, not finished
        assert not (api.data_dir / "files" / f"{task_id}.mp4").exists()
        assert get_task(api, task_id)["error_code"] == "cancelled"
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        api.stop()
    assert f"task {task_id}: completed" not in log.read_text()
