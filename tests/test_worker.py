"""The worker's claim, leases, state transitions and runner, on SQLite and PostgreSQL.

Providers here are InMemoryProvider (the package's scripted implementation of the provider
interface); the sample renderer and real processes are covered end to end elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from ipaddress import ip_network
from pathlib import Path

import pytest
from sqlalchemy import Connection, update

from support import Caller, create_task_as, make_caller, static_http_server
from vidgate.billing import service as billing
from vidgate.db.engine import Database
from vidgate.db.models import VideoTask
from vidgate.db.types import utcnow
from vidgate.net.fetch import FetchPolicy
from vidgate.providers.base import (
    JobLost,
    JobState,
    JobStatus,
    LogicalError,
    Provider,
    TechnicalError,
)
from vidgate.providers.catalogue import Catalogue
from vidgate.providers.memory import InMemoryProvider
from vidgate.providers.registry import ProviderRegistry
from vidgate.settings import Settings
from vidgate.storage.base import FileStore
from vidgate.storage.factory import build_file_store
from vidgate.tasks import repository, transitions
from vidgate.tasks.repository import TaskRecord
from vidgate.tasks.states import TaskErrorCode
from vidgate.worker.claim import SqlClaimer
from vidgate.worker.retry import RetryPolicy
from vidgate.worker.runner import TaskRunner

LOOPBACK = FetchPolicy(
    max_bytes=1 << 20, timeout_s=5, allowed_private_networks=(ip_network("127.0.0.0/8"),)
)


CATALOGUE = Catalogue.from_dict(
    {
        "models": {
            "m": {
                "options": {"duration": {"values": ["1", "2"], "default": "1"}},
                "price": {"base": 7},
                "time_limit_seconds": 60,
                "channels": [{"provider": "primary"}, {"provider": "backup"}],
            }
        }
    }
)


@dataclass
class Harness:
    db: Database
    caller: Caller
    primary: InMemoryProvider
    backup: InMemoryProvider
    registry: ProviderRegistry
    store: FileStore
    tmp: Path
    catalogue: Catalogue = CATALOGUE

    def runner(self, owner: str = "w1") -> TaskRunner:
        return TaskRunner(
            db=self.db,
            catalogue=self.catalogue,
            registry=self.registry,
            store=self.store,
            owner=owner,
            lease_s=30,
            default_poll_interval_s=0.01,
            input_policy=LOOPBACK,
            result_policy=LOOPBACK,
            work_dir=self.tmp / "work",
            retry=RetryPolicy(base_s=0.01, max_delay_s=0.01, max_attempts=3),
        )

    async def create(self, prompt: str = "a cat") -> str:
        outcome = await create_task_as(
            self.caller,
            self.db,
            catalogue=self.catalogue,
            model="m",
            prompt=prompt,
        )
        return outcome.task.id

    async def claim(self, owner: str = "w1", lease_s: float = 30) -> list[str]:
        # A high limit: on PostgreSQL the session's shared database holds other tests' tasks.
        return await SqlClaimer(self.db).claim(owner=owner, limit=10_000, lease_s=lease_s)

    async def task(self, task_id: str) -> TaskRecord:
        task = await self.db.backend.run_read(lambda conn: repository.get(conn, task_id))
        assert task is not None
        return task

    async def set(self, task_id: str, **values: object) -> None:
        def work(conn: Connection) -> None:
            conn.execute(update(VideoTask).where(VideoTask.id == task_id).values(**values))

        await self.db.backend.run_write(work)

    async def make_due(self, task_id: str) -> None:
        await self.set(task_id, run_after=utcnow())

    async def step(self, task_id: str, owner: str = "w1") -> TaskRecord:
        """Make the task due, claim it and run one step."""
        await self.make_due(task_id)
        assert task_id in await self.claim(owner)
        await self.runner(owner).run(task_id)
        return await self.task(task_id)

    async def fail(self, task_id: str, message: str) -> bool:
        return await self.db.backend.run_write(
            lambda conn: transitions.failed(
                conn, task_id, at=utcnow(), code=TaskErrorCode.INTERNAL_ERROR, message=message
            )
        )

    async def balance(self) -> tuple[int, int]:
        async with self.db.read() as session:
            return (
                await billing.balance(session, self.caller.account_id),
                await billing.ledger_sum(session, self.caller.account_id),
            )


@pytest.fixture
async def harness(db: Database, tmp_path: Path) -> Harness:
    primary, backup = InMemoryProvider(name="primary"), InMemoryProvider(name="backup")
    providers: dict[str, Provider] = {"primary": primary, "backup": backup}
    return Harness(
        db=db,
        caller=await make_caller(db, credits=100),
        primary=primary,
        backup=backup,
        registry=ProviderRegistry(CATALOGUE, providers),
        store=build_file_store(Settings(data_dir=tmp_path)),
        tmp=tmp_path,
    )


def finished(path: Path) -> JobStatus:
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    return JobStatus(state=JobState.SUCCEEDED, progress=100, result_file=path)


async def test_claims_are_exclusive(harness: Harness) -> None:
    created = {await harness.create() for _ in range(12)}
    first, second = await asyncio.gather(harness.claim("a"), harness.claim("b"))
    assert not set(first) & set(second)
    assert created <= set(first) | set(second)
    assert not created & set(await harness.claim("c"))


async def test_expired_lease_is_reclaimed_and_the_old_owner_is_fenced(harness: Harness) -> None:
    task_id = await harness.create()
    assert task_id in await harness.claim("a", lease_s=0.05)
    assert task_id not in await harness.claim("b")
    await asyncio.sleep(0.1)
    assert task_id in await harness.claim("b")
    stale = await harness.db.backend.run_write(
        lambda conn: transitions.progressed(
            conn, task_id, "a", at=utcnow(), previous=0, progress=50, run_after=utcnow()
        )
    )
    assert stale is False
    assert (await harness.task(task_id)).lease_owner == "b"


async def test_happy_path_submits_once_and_completes(harness: Harness) -> None:
    task_id = await harness.create()
    harness.primary.poll_script.extend(
        [
            JobStatus(state=JobState.RUNNING, progress=40),
            finished(harness.tmp / "out.mp4"),
        ]
    )
    task = await harness.step(task_id)
    assert (task.status, task.step, task.channel) == ("processing", "poll", "primary")
    assert task.upstream_id == "primary-job-1"
    assert task.lease_owner is None
    task = await harness.step(task_id)
    assert (task.status, task.progress) == ("processing", 40)
    task = await harness.step(task_id)
    assert (task.status, task.file_key, task.progress) == ("completed", f"{task_id}.mp4", 100)
    assert task.completed_at is not None
    assert harness.store.path_of(f"{task_id}.mp4") is not None
    assert len(harness.primary.submitted) == 1
    assert await harness.balance() == (93, 93)


async def test_technical_error_at_submit_fails_over_to_the_next_channel(
    harness: Harness,
) -> None:
    task_id = await harness.create()
    harness.primary.submit_script.append(TechnicalError("503 from primary"))
    task = await harness.step(task_id)
    assert (task.channel, task.upstream_id) == ("backup", "backup-job-1")
    assert harness.primary.submitted == []


async def test_technical_error_while_polling_retries_without_resubmitting(
    harness: Harness,
) -> None:
    task_id = await harness.create()
    await harness.step(task_id)
    harness.primary.poll_script.extend(
        [TechnicalError("timeout"), finished(harness.tmp / "out.mp4")]
    )
    task = await harness.step(task_id)
    assert (task.status, task.attempts, task.upstream_id) == ("processing", 1, "primary-job-1")
    task = await harness.step(task_id)
    assert task.status == "completed"
    assert len(harness.primary.submitted) == 1


async def test_retries_give_up_and_refund(harness: Harness) -> None:
    task_id = await harness.create()
    harness.primary.submit_script.extend([TechnicalError("down")] * 10)
    harness.backup.submit_script.extend([TechnicalError("down too")] * 10)
    for _ in range(3):
        task = await harness.step(task_id)
    assert task.status == "failed"
    assert task.error_message == "down too (gave up after 3 tries)"
    assert task.credits_refunded == 7
    assert await harness.balance() == (100, 100)


async def test_provider_failure_fails_and_refunds_once(harness: Harness) -> None:
    task_id = await harness.create()
    await harness.step(task_id)
    harness.primary.poll_script.append(JobStatus(state=JobState.FAILED, error="nsfw input"))
    task = await harness.step(task_id)
    assert (task.status, task.error_code, task.error_message) == (
        "failed",
        "generation_failed",
        "nsfw input",
    )
    assert (task.credits_used, task.credits_refunded) == (7, 7)
    assert await harness.balance() == (100, 100)


async def test_logical_error_at_submit_fails(harness: Harness) -> None:
    task_id = await harness.create()
    harness.primary.submit_script.append(LogicalError("prompt rejected upstream"))
    task = await harness.step(task_id)
    assert (task.status, task.error_message) == ("failed", "prompt rejected upstream")
    assert harness.backup.submitted == []


async def test_lost_remote_job_fails_and_refunds(harness: Harness) -> None:
    task_id = await harness.create()
    await harness.step(task_id)
    harness.primary.poll_script.append(JobLost("gone"))
    task = await harness.step(task_id)
    assert (task.status, task.error_code) == ("failed", "upstream_lost")
    assert await harness.balance() == (100, 100)


async def test_local_job_runs_to_its_end_inside_one_lease(harness: Harness) -> None:
    harness.primary.runs_locally = True  # a local provider: its jobs live in this process
    task_id = await harness.create()
    harness.primary.poll_script.extend(
        [
            JobStatus(state=JobState.RUNNING, progress=30),
            JobStatus(state=JobState.RUNNING, progress=70),
            finished(harness.tmp / "out.mp4"),
        ]
    )
    task = await harness.step(task_id)
    assert (task.status, task.upstream_id) == ("completed", "primary-job-1")
    # Every poll came from this one step, with the lease held: no other worker saw the job.
    assert len(harness.primary.polled) == 3
    assert len(harness.primary.submitted) == 1


async def test_a_dead_workers_local_job_is_rendered_again(harness: Harness) -> None:
    harness.primary.runs_locally = True
    task_id = await harness.create()
    # As a worker that died mid-render leaves it: submitted, lease expired, job gone with it.
    await harness.set(
        task_id, status="processing", step="poll", channel="primary", upstream_id="dead-job"
    )
    harness.primary.poll_script.append(JobLost("sample job dead-job is not running here"))
    task = await harness.step(task_id)
    assert (task.status, task.step, task.upstream_id) == ("processing", "submit", None)
    harness.primary.poll_script.clear()
    harness.primary.poll_script.append(finished(harness.tmp / "out.mp4"))
    task = await harness.step(task_id)
    assert (task.status, task.upstream_id) == ("completed", "primary-job-1")


async def test_deadline_fails_refunds_and_cancels_upstream(harness: Harness) -> None:
    task_id = await harness.create()
    await harness.step(task_id)
    await harness.set(task_id, deadline_at=utcnow() - timedelta(seconds=1))
    task = await harness.step(task_id)
    assert (task.status, task.error_code) == ("failed", "timeout")
    assert task.error_message == "task timed out after 60 s (the limit of model m)"
    assert harness.primary.cancelled == ["primary-job-1"]
    assert await harness.balance() == (100, 100)


async def test_concurrent_failures_refund_exactly_once(harness: Harness) -> None:
    task_id = await harness.create()
    results = await asyncio.gather(*(harness.fail(task_id, "boom") for _ in range(10)))
    assert results.count(True) == 1
    assert await harness.balance() == (100, 100)
    assert (await harness.task(task_id)).credits_refunded == 7


async def test_completed_task_cannot_fail_afterwards(harness: Harness) -> None:
    task_id = await harness.create()
    await harness.step(task_id)
    harness.primary.poll_script.append(finished(harness.tmp / "out.mp4"))
    assert (await harness.step(task_id)).status == "completed"
    assert not await harness.fail(task_id, "late")
    task = await harness.task(task_id)
    assert (task.status, task.credits_refunded) == ("completed", 0)
    assert await harness.balance() == (93, 93)


@pytest.fixture
def mp4_server() -> Iterator[str]:
    payload = b"\x00\x00\x00\x18ftypisom" + b"\x01" * 4096
    # Served as octet-stream on purpose: the kind is judged by magic bytes.
    files = {"/result.mp4": ("application/octet-stream", payload)}
    with static_http_server(files) as base_url:
        yield f"{base_url}/result.mp4"


async def test_remote_result_urls_are_downloaded_into_the_store(
    harness: Harness, mp4_server: str
) -> None:
    task_id = await harness.create()
    await harness.step(task_id)
    harness.primary.poll_script.append(
        JobStatus(state=JobState.SUCCEEDED, progress=100, result_urls=(mp4_server,))
    )
    task = await harness.step(task_id)
    assert task.status == "completed"
    stored = harness.store.path_of(f"{task_id}.mp4")
    assert stored is not None
    assert stored.read_bytes().startswith(b"\x00\x00\x00\x18ftypisom")


async def test_an_upstreams_retry_after_is_a_floor_under_the_backoff(harness: Harness) -> None:
    task_id = await harness.create()
    await harness.step(task_id)
    harness.primary.poll_script.append(TechnicalError("429 from upstream", retry_after_s=30))
    await harness.make_due(task_id)
    assert task_id in await harness.claim()
    before = utcnow()
    await harness.runner().run(task_id)
    task = await harness.task(task_id)
    assert task.attempts == 1
    assert task.run_after >= before + timedelta(seconds=29)  # the policy alone says 0.01 s


async def test_a_channels_own_retry_policy_from_the_catalogue_wins(
    db: Database, tmp_path: Path
) -> None:
    catalogue = Catalogue.from_dict(
        {
            "models": {
                "m": {
                    "price": {"base": 7},
                    "channels": [{"provider": "primary", "retry": {"max_attempts": 1}}],
                }
            }
        }
    )
    primary = InMemoryProvider(name="primary")
    primary.submit_script.append(TechnicalError("down"))
    harness = Harness(
        db=db,
        caller=await make_caller(db, credits=100),
        primary=primary,
        backup=InMemoryProvider(name="backup"),
        registry=ProviderRegistry(catalogue, {"primary": primary}),
        store=build_file_store(Settings(data_dir=tmp_path)),
        tmp=tmp_path,
        catalogue=catalogue,
    )
    task = await harness.step(await harness.create())
    assert (task.status, task.error_code) == ("failed", "upstream_error")
    assert task.error_message == "down (gave up after 1 tries)"
