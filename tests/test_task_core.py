"""The task core on SQLite and PostgreSQL: the state table, the events outbox, worker pools."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, select

from support import AcceptAll, make_caller
from vidgate.db.engine import Database
from vidgate.db.models import TaskEvent
from vidgate.db.types import utcnow
from vidgate.errors import TooManyConcurrentJobs
from vidgate.keys.service import Principal
from vidgate.net.fetch import FetchPolicy
from vidgate.providers.base import Provider
from vidgate.providers.catalogue import Catalogue
from vidgate.providers.memory import InMemoryProvider
from vidgate.providers.registry import ProviderRegistry
from vidgate.settings import Settings
from vidgate.storage.factory import build_file_store
from vidgate.tasks import repository, service, transitions
from vidgate.tasks.commands import CreateTask
from vidgate.tasks.states import (
    IllegalTransition,
    TaskErrorCode,
    TaskStatus,
    check_move,
)
from vidgate.worker.claim import SqlClaimer
from vidgate.worker.runner import TaskRunner

CATALOGUE = Catalogue.from_dict(
    {
        "models": {
            "cloud": {"price": {"base": 5}, "channels": [{"provider": "remote"}]},
            "local-gpu": {
                "price": {"base": 9},
                "channels": [{"provider": "gpu", "queue": "gpu"}],
            },
        }
    }
)


async def create(db: Database, model: str) -> tuple[str, int]:
    caller = await make_caller(db, credits=100)
    outcome = await service.create_task(
        db,
        principal=Principal(
            key_id=caller.key_id,
            account_id=caller.account_id,
            rate_limit_per_second=None,
            max_concurrent_jobs=None,
        ),
        command=CreateTask(surface="apimall", model=model, prompt="a heron"),
        request_id="req_x",
        idempotency_key=None,
        catalogue=CATALOGUE,
        routing=AcceptAll(),
        default_max_concurrent_jobs=10,
    )
    return outcome.task.id, caller.account_id


async def events_of(db: Database, task_id: str) -> list[str]:
    found = await db.backend.run_read(lambda conn: repository.events_of(conn, task_id))
    return [event.kind for event in found]


async def claim(db: Database, owner: str, **pool: list[str] | None) -> list[str]:
    return await SqlClaimer(db, **pool).claim(owner=owner, limit=10_000, lease_s=30)


def test_the_state_table_refuses_moves_out_of_an_end_or_backwards() -> None:
    check_move("vid_1", "pending", TaskStatus.PROCESSING)
    check_move("vid_1", "processing", TaskStatus.COMPLETED)
    for source, target in [
        ("completed", TaskStatus.FAILED),
        ("failed", TaskStatus.COMPLETED),
        ("processing", TaskStatus.PENDING),
        ("pending", TaskStatus.COMPLETED),
        ("cancelled", TaskStatus.PROCESSING),
    ]:
        with pytest.raises(IllegalTransition):
            check_move("vid_1", source, target)


async def test_an_illegal_transition_is_refused_by_the_database(db: Database) -> None:
    task_id, _ = await create(db, "cloud")
    assert task_id in await claim(db, "w1")
    # pending -> completed skips processing: refused, nothing written.
    done = await db.backend.run_write(
        lambda conn: transitions.completed(conn, task_id, "w1", at=utcnow(), file_key="x.mp4")
    )
    assert done is False
    task = await db.backend.run_read(lambda conn: repository.get(conn, task_id))
    assert task is not None
    assert (task.status, task.file_key) == ("pending", None)
    assert await events_of(db, task_id) == ["created"]


async def test_every_transition_writes_exactly_one_event(db: Database) -> None:
    task_id, _ = await create(db, "cloud")
    assert await events_of(db, task_id) == ["created"]
    await claim(db, "w1")
    now = utcnow()
    assert await db.backend.run_write(
        lambda conn: transitions.submitted(
            conn, task_id, "w1", at=now, upstream_id="up-1", channel="remote", run_after=now
        )
    )
    await claim(db, "w1")
    # Progress events are throttled: 3 -> 8 stays in the first tenth, 8 -> 41 passes three marks
    # but makes one event.
    for previous, progress in [(0, 3), (3, 8), (8, 41)]:
        assert await db.backend.run_write(
            lambda conn, p=previous, q=progress: transitions.progressed(
                conn, task_id, "w1", at=now, previous=p, progress=q, run_after=now, keep_lease=True
            )
        )
    assert await db.backend.run_write(
        lambda conn: transitions.completed(conn, task_id, "w1", at=now, file_key="out.mp4")
    )
    assert await events_of(db, task_id) == ["created", "submitted", "progress", "completed"]
    # An ended task moves no more, and writes no event for the attempt.
    assert not await db.backend.run_write(
        lambda conn: transitions.failed(
            conn, task_id, at=now, code=TaskErrorCode.INTERNAL_ERROR, message="late"
        )
    )
    assert await events_of(db, task_id) == ["created", "submitted", "progress", "completed"]


async def test_a_rolled_back_transition_leaves_no_event(db: Database) -> None:
    task_id, _ = await create(db, "cloud")

    class Abort(Exception):
        pass

    def fail_then_abort(conn: Connection) -> None:
        assert transitions.failed(
            conn, task_id, at=utcnow(), code=TaskErrorCode.INTERNAL_ERROR, message="boom"
        )
        raise Abort

    with pytest.raises(Abort):
        await db.backend.run_write(fail_then_abort)
    task = await db.backend.run_read(lambda conn: repository.get(conn, task_id))
    assert task is not None
    assert (task.status, task.credits_refunded) == ("pending", 0)
    assert await events_of(db, task_id) == ["created"]


async def test_failure_event_carries_the_code_and_refund_happens_in_its_transaction(
    db: Database,
) -> None:
    task_id, account_id = await create(db, "cloud")
    assert await db.backend.run_write(
        lambda conn: transitions.failed(
            conn, task_id, at=utcnow(), code=TaskErrorCode.TIMEOUT, message="too slow"
        )
    )
    found = await db.backend.run_read(lambda conn: repository.events_of(conn, task_id))
    assert [(e.kind, e.status) for e in found] == [("created", "pending"), ("failed", "failed")]
    assert found[-1].data == {"error_code": "timeout", "error_message": "too slow"}

    def count_events(conn: Connection) -> int:
        return int(
            conn.scalar(
                select(func.count())
                .select_from(TaskEvent)
                .where(TaskEvent.account_id == account_id)
            )
            or 0
        )

    assert await db.backend.run_read(count_events) == 2


async def test_a_task_is_queued_by_its_models_channels(db: Database) -> None:
    cloud_id, _ = await create(db, "cloud")
    gpu_id, _ = await create(db, "local-gpu")
    cloud = await db.backend.run_read(lambda conn: repository.get(conn, cloud_id))
    gpu = await db.backend.run_read(lambda conn: repository.get(conn, gpu_id))
    assert cloud is not None
    assert gpu is not None
    assert (cloud.queue, gpu.queue) == ("default", "gpu")


async def test_a_worker_for_one_queue_never_claims_another_queues_task(db: Database) -> None:
    cloud_id, _ = await create(db, "cloud")
    gpu_id, _ = await create(db, "local-gpu")
    gpu_claims = await claim(db, "gpu-worker", queues=["gpu"])
    assert gpu_id in gpu_claims
    assert cloud_id not in gpu_claims
    default_claims = await claim(db, "cloud-worker", queues=["default"])
    assert cloud_id in default_claims
    assert gpu_id not in default_claims


async def test_a_worker_claims_only_models_and_channels_it_can_serve(db: Database) -> None:
    cloud_id, _ = await create(db, "cloud")
    assert cloud_id not in await claim(db, "w-none", models=[], channels=[])
    assert cloud_id not in await claim(db, "w-other", models=["local-gpu"])
    assert cloud_id in await claim(db, "w-cloud", models=["cloud"])


async def test_a_worker_without_the_tasks_provider_releases_it_untouched(
    db: Database, tmp_path: Path
) -> None:
    task_id, _ = await create(db, "cloud")
    assert task_id in await claim(db, "w-gpu")  # a worker that claims anything...
    providers: dict[str, Provider] = {"gpu": InMemoryProvider(name="gpu")}
    policy = FetchPolicy(max_bytes=1024, timeout_s=1)
    runner = TaskRunner(  # ...but has only the GPU provider
        db=db,
        catalogue=CATALOGUE,
        registry=ProviderRegistry(CATALOGUE, providers),
        store=build_file_store(Settings(data_dir=tmp_path)),
        owner="w-gpu",
        lease_s=30,
        default_poll_interval_s=0.01,
        input_policy=policy,
        result_policy=policy,
        work_dir=tmp_path / "work",
    )
    assert await runner.run(task_id) is None
    task = await db.backend.run_read(lambda conn: repository.get(conn, task_id))
    assert task is not None
    assert (task.status, task.step, task.attempts, task.lease_owner, task.error_code) == (
        "pending",
        "submit",
        0,
        None,
        None,
    )
    assert await events_of(db, task_id) == ["created"]
    assert task_id in await claim(db, "w-cloud", models=["cloud"])  # free for the right pool


async def test_a_keys_in_flight_slots_are_taken_at_create_and_given_back_at_the_end(
    db: Database,
) -> None:
    caller = await make_caller(db, credits=1000)
    principal = Principal(
        key_id=caller.key_id,
        account_id=caller.account_id,
        rate_limit_per_second=None,
        max_concurrent_jobs=3,
    )

    async def create_one() -> str | None:
        try:
            outcome = await service.create_task(
                db,
                principal=principal,
                command=CreateTask(surface="apimall", model="cloud", prompt="p"),
                request_id="req_x",
                idempotency_key=None,
                catalogue=CATALOGUE,
                routing=AcceptAll(),
                default_max_concurrent_jobs=100,
            )
        except TooManyConcurrentJobs:
            return None
        return outcome.task.id

    created = await asyncio.gather(*(create_one() for _ in range(10)))
    started = [task_id for task_id in created if task_id is not None]
    assert len(started) == 3

    def slots(conn: Connection) -> int:
        return repository.in_flight_jobs(conn, api_key_id=caller.key_id)

    assert await db.backend.run_read(slots) == 3
    ended = started[0]
    for _ in range(2):  # the second failure is refused: the slot comes back once
        await db.backend.run_write(
            lambda conn: transitions.failed(
                conn, ended, at=utcnow(), code=TaskErrorCode.INTERNAL_ERROR, message="x"
            )
        )
    assert await db.backend.run_read(slots) == 2
    assert await create_one() is not None
    assert await create_one() is None
