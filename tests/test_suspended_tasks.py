"""A suspended account's queued tasks, on SQLite and PostgreSQL: VIDGATE_SUSPENDED_TASKS=fail
ends them as failed (account_suspended) with a refund when a worker picks them; `wait` leaves
them queued, unclaimed, until the account is active again. A task already sent upstream goes
on either way."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from sqlalchemy import select, update

from support import Caller, create_task_as, make_caller
from vidgate.billing import service as billing
from vidgate.db.engine import Database
from vidgate.db.models import Account, ApiKey
from vidgate.net.fetch import FetchPolicy
from vidgate.providers.base import JobState, JobStatus
from vidgate.providers.catalogue import Catalogue
from vidgate.providers.memory import InMemoryProvider
from vidgate.providers.registry import ProviderRegistry
from vidgate.settings import Settings
from vidgate.storage.factory import build_file_store
from vidgate.tasks import repository
from vidgate.tasks.repository import TaskRecord
from vidgate.worker.claim import SqlClaimer
from vidgate.worker.runner import TaskRunner

# A model of this module's own, so claims never touch other tests' tasks on the shared database.
MODEL = "suspension-test"
CATALOGUE = Catalogue.from_dict(
    {
        "models": {
            MODEL: {
                "price": {"base": 7},
                "time_limit_seconds": 600,
                "channels": [{"provider": "upstream"}],
            }
        }
    }
)
POLICY = FetchPolicy(max_bytes=1 << 20, timeout_s=5)


class Setup:
    def __init__(self, db: Database, caller: Caller, tmp_path: Path) -> None:
        self.db = db
        self.caller = caller
        self.provider = InMemoryProvider(name="upstream")
        self.registry = ProviderRegistry(CATALOGUE, {"upstream": self.provider})
        self.store = build_file_store(Settings(data_dir=tmp_path))
        self.tmp_path = tmp_path

    def runner(self, mode: Literal["fail", "wait"]) -> TaskRunner:
        return TaskRunner(
            db=self.db,
            catalogue=CATALOGUE,
            registry=self.registry,
            store=self.store,
            owner="w1",
            lease_s=30,
            default_poll_interval_s=0.01,
            input_policy=POLICY,
            result_policy=POLICY,
            work_dir=self.tmp_path / "work",
            suspended_tasks=mode,
        )

    async def create(self) -> str:
        outcome = await create_task_as(
            self.caller,
            self.db,
            catalogue=CATALOGUE,
            model=MODEL,
            prompt="a cat",
        )
        return outcome.task.id

    async def claim(self, *, skip_inactive_accounts: bool) -> list[str]:
        claimer = SqlClaimer(self.db, models=[MODEL], skip_inactive_accounts=skip_inactive_accounts)
        return await claimer.claim(owner="w1", limit=1000, lease_s=30)

    async def task(self, task_id: str) -> TaskRecord:
        task = await self.db.backend.run_read(lambda conn: repository.get(conn, task_id))
        assert task is not None
        return task

    async def set_status(self, status: str) -> None:
        async with self.db.write() as session:
            await session.execute(
                update(Account).where(Account.id == self.caller.account_id).values(status=status)
            )

    async def balance(self) -> int:
        async with self.db.read() as session:
            return await billing.balance(session, self.caller.account_id)

    async def in_flight(self) -> int:
        async with self.db.read() as session:
            count = await session.scalar(
                select(ApiKey.in_flight_jobs).where(ApiKey.id == self.caller.key_id)
            )
            return int(count or 0)

    async def started_upstream(self) -> str:
        """A task a worker already sent upstream (processing) before the suspension."""
        task_id = await self.create()
        assert task_id in await self.claim(skip_inactive_accounts=False)
        await self.runner("fail").run(task_id)
        assert (await self.task(task_id)).status == "processing"
        return task_id


async def setup(db: Database, tmp_path: Path) -> Setup:
    return Setup(db, await make_caller(db, credits=100), tmp_path)


async def test_fail_mode_fails_and_refunds_queued_tasks_but_lets_running_ones_go_on(
    db: Database, tmp_path: Path
) -> None:
    s = await setup(db, tmp_path)
    running = await s.started_upstream()
    queued = [await s.create(), await s.create()]
    assert await s.balance() == 100 - 3 * 7
    await s.set_status("suspended")

    claimed = await s.claim(skip_inactive_accounts=False)
    assert set(queued) <= set(claimed)
    for task_id in queued:
        assert await s.runner("fail").run(task_id) is None
        task = await s.task(task_id)
        assert (task.status, task.error_code) == ("failed", "account_suspended")
        assert task.credits_refunded == 7
        assert "suspended" in (task.error_message or "")
    assert len(s.provider.submitted) == 1  # only the task started before the suspension
    assert await s.balance() == 100 - 7
    assert await s.in_flight() == 1  # the running task's slot; the failed ones gave theirs back

    s.provider.poll_script.append(JobStatus(state=JobState.RUNNING, progress=50))
    if running in claimed:  # due again at once: its poll goes on as before
        await s.runner("fail").run(running)
    assert (await s.task(running)).status == "processing"


async def test_wait_mode_leaves_queued_tasks_unclaimed_until_the_account_is_active(
    db: Database, tmp_path: Path
) -> None:
    s = await setup(db, tmp_path)
    queued = [await s.create(), await s.create()]
    await s.set_status("suspended")

    assert not set(queued) & set(await s.claim(skip_inactive_accounts=True))
    for task_id in queued:
        task = await s.task(task_id)
        assert (task.status, task.attempts, task.credits_refunded) == ("pending", 0, 0)
    assert await s.balance() == 100 - 2 * 7

    await s.set_status("active")
    claimed = await s.claim(skip_inactive_accounts=True)
    assert set(queued) <= set(claimed)
    for task_id in queued:
        await s.runner("wait").run(task_id)
        assert (await s.task(task_id)).status == "processing"
    assert len(s.provider.submitted) == 2


async def test_wait_mode_hands_back_a_task_claimed_just_before_the_suspension(
    db: Database, tmp_path: Path
) -> None:
    s = await setup(db, tmp_path)
    task_id = await s.create()
    assert task_id in await s.claim(skip_inactive_accounts=True)
    await s.set_status("suspended")  # between the claim and the run

    assert await s.runner("wait").run(task_id) is not None  # due again later
    task = await s.task(task_id)
    assert (task.status, task.lease_owner, task.attempts) == ("pending", None, 0)
    assert s.provider.submitted == []
    assert task_id not in await s.claim(skip_inactive_accounts=True)
