"""Idempotency-Key semantics at the service level, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select, text

from support import AcceptAll, Caller, make_caller
from vidgate.db.engine import Database, open_database
from vidgate.db.models import IdempotencyRecord, VideoTask
from vidgate.db.types import utcnow
from vidgate.errors import ContentBlocked, IdempotencyKeyInUse, UpstreamUnavailable
from vidgate.keys.service import Principal
from vidgate.moderation.base import Moderator
from vidgate.providers.catalogue import Catalogue
from vidgate.tasks import idempotency, service
from vidgate.tasks.commands import CreateTask
from vidgate.tasks.service import Routing

CATALOGUE = Catalogue.load()
COMMAND = CreateTask(
    surface="apimall", model="sora2", prompt="a lighthouse", options={"n_frames": "10"}
)


class BlockEverything:
    async def check(self, *, model: str, prompt: str) -> None:
        raise ContentBlocked("blocked by a policy changed since the first request")


class NothingRoutes:
    def check_routable(self, model: object) -> None:
        raise UpstreamUnavailable("every channel is open")


async def create(
    db: Database,
    caller: Caller,
    key: str,
    *,
    lock_timeout_ms: int = 10_000,
    moderator: Moderator | None = None,
    routing: Routing | None = None,
) -> service.CreateOutcome:
    return await service.create_task(
        db,
        principal=Principal(
            key_id=caller.key_id,
            account_id=caller.account_id,
            rate_limit_per_second=None,
            max_concurrent_jobs=None,
        ),
        command=COMMAND,
        request_id="req_first",
        idempotency_key=key,
        catalogue=CATALOGUE,
        routing=routing or AcceptAll(),
        default_max_concurrent_jobs=100,
        lock_timeout_ms=lock_timeout_ms,
        moderator=moderator,
    )


async def test_a_replay_returns_the_first_answer_whatever_moderation_and_routing_say_now(
    db: Database,
) -> None:
    caller = await make_caller(db, credits=300)
    first = await create(db, caller, "k-judged")
    again = await create(
        db, caller, "k-judged", moderator=BlockEverything(), routing=NothingRoutes()
    )
    assert again.replayed
    assert again.task.id == first.task.id
    with pytest.raises(ContentBlocked):  # a new key is judged by today's policy
        await create(db, caller, "k-new", moderator=BlockEverything())


async def test_concurrent_creates_with_one_key_charge_once(db: Database) -> None:
    caller = await make_caller(db, credits=300)
    outcomes = await asyncio.gather(*(create(db, caller, "k-1") for _ in range(20)))
    assert len({outcome.task.id for outcome in outcomes}) == 1
    assert sum(not outcome.replayed for outcome in outcomes) == 1
    async with db.read() as session:
        tasks = await session.scalar(
            select(func.count())
            .select_from(VideoTask)
            .where(VideoTask.account_id == caller.account_id)
        )
        record = await session.get(IdempotencyRecord, (caller.account_id, "k-1"))
    assert tasks == 1
    assert record is not None
    assert record.task_id == outcomes[0].task.id
    assert record.status_code == 200
    assert record.request_id == "req_first"
    assert {outcome.request_id for outcome in outcomes} == {"req_first"}
    assert record.expires_at - record.created_at >= idempotency.RETENTION


async def test_expired_key_is_reusable(db: Database) -> None:
    caller = await make_caller(db, credits=300)
    first = await create(db, caller, "k-old")
    async with db.write() as session:
        record = await session.get(IdempotencyRecord, (caller.account_id, "k-old"))
        assert record is not None
        record.expires_at = utcnow()
    second = await create(db, caller, "k-old")
    assert second.task.id != first.task.id
    assert not second.replayed


async def test_key_held_by_a_running_request_is_in_use(private_postgres_url: str) -> None:
    """PostgreSQL: a retry waits for the original's transaction, then gives up with 409."""
    db = open_database(private_postgres_url)
    try:
        caller = await make_caller(db, credits=300)
        async with db.engine.begin() as holder:
            # The original request: its key row is written but not yet committed.
            await holder.run_sync(
                lambda conn: idempotency.claim(
                    conn,
                    account_id=caller.account_id,
                    key="k-busy",
                    surface="apimall",
                    body_fingerprint=COMMAND.fingerprint(),
                    now=utcnow(),
                )
            )
            with pytest.raises(IdempotencyKeyInUse):
                await create(db, caller, "k-busy", lock_timeout_ms=300)
            await holder.execute(text("SELECT 1"))
    finally:
        await db.dispose()
