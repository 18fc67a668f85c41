"""Retention (worker/reaper.py) on SQLite and PostgreSQL: old result files and expired
Idempotency-Keys go, recent ones stay, in bounded batches, harmlessly twice at once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, select, update

from support import AcceptAll, Caller, create_task_as, make_caller
from vidgate.db.engine import Database
from vidgate.db.models import IdempotencyRecord, VideoTask
from vidgate.db.types import utcnow
from vidgate.keys.service import Principal
from vidgate.providers.catalogue import Catalogue
from vidgate.settings import Settings
from vidgate.storage.base import StorageError
from vidgate.storage.local import LocalFileStore
from vidgate.tasks import repository, service, transitions
from vidgate.tasks.commands import CreateTask
from vidgate.worker.reaper import Reaper

CATALOGUE = Catalogue.from_dict(
    {"models": {"m": {"price": {"base": 1}, "channels": [{"provider": "primary"}]}}}
)
RETENTION = timedelta(days=30)
OLD = timedelta(days=40)


class FlakyStore(LocalFileStore):
    """The local store, with deletes of chosen keys failing (a bucket that refuses them)."""

    refused: set[str]

    async def delete(self, key: str) -> None:
        if key in self.refused:
            raise StorageError(f"access denied deleting {key}")
        await super().delete(key)


@dataclass
class Setup:
    db: Database
    caller: Caller
    store: FlakyStore

    async def completed(
        self, key: str | None = None, *, ago: timedelta, key_expired: bool = False
    ) -> str:
        """A completed task, its MP4 and a thumbnail stored, ended `ago`; `key_expired`: its
        Idempotency-Key expired 24 h after."""
        outcome = await create_task_as(
            self.caller,
            self.db,
            catalogue=CATALOGUE,
            model="m",
            prompt=f"kept? {key}",
            idempotency_key=key,
        )
        task_id = outcome.task.id
        await self.db.backend.run_write(
            lambda conn: self._set(conn, task_id, lease_owner="w1", status="processing")
        )
        for name in (f"{task_id}.mp4", f"{task_id}.thumbnail.webp"):
            (self.store.root / name).write_bytes(b"video")
        ended = utcnow() - ago
        assert await self.db.backend.run_write(
            lambda conn: transitions.completed(
                conn, task_id, "w1", at=ended, file_key=f"{task_id}.mp4"
            )
        )
        if key is not None and key_expired:
            await self.db.backend.run_write(lambda conn: self._expire_key(conn, key, ended))
        return task_id

    def _set(self, conn: Connection, task_id: str, **values: object) -> None:
        conn.execute(update(VideoTask).where(VideoTask.id == task_id).values(**values))

    def _expire_key(self, conn: Connection, key: str, ended: datetime) -> None:
        conn.execute(
            update(IdempotencyRecord)
            .where(
                IdempotencyRecord.account_id == self.caller.account_id,
                IdempotencyRecord.key == key,
            )
            .values(expires_at=ended + timedelta(hours=24))
        )

    async def keys_kept(self, keys: list[str]) -> set[str]:
        def work(conn: Connection) -> set[str]:
            rows = conn.execute(
                select(IdempotencyRecord.key).where(
                    IdempotencyRecord.account_id == self.caller.account_id,
                    IdempotencyRecord.key.in_(keys),
                )
            )
            return {key for (key,) in rows}

        return await self.db.backend.run_read(work)

    def files_of(self, task_id: str) -> list[str]:
        return sorted(path.name for path in self.store.root.glob(f"{task_id}.*"))

    async def expired_at(self, task_id: str) -> datetime | None:
        task = await self.db.backend.run_read(lambda conn: repository.get(conn, task_id))
        assert task is not None
        return task.files_expired_at

    async def create_again(self, key: str) -> str:
        outcome = await service.create_task(
            self.db,
            principal=Principal(
                key_id=self.caller.key_id,
                account_id=self.caller.account_id,
                rate_limit_per_second=None,
                max_concurrent_jobs=None,
            ),
            command=CreateTask(surface="apimall", model="m", prompt=f"kept? {key}"),
            request_id="req_again",
            idempotency_key=key,
            catalogue=CATALOGUE,
            routing=AcceptAll(),
            default_max_concurrent_jobs=1000,
        )
        return outcome.task.id

    def reaper(self, batch: int = 100) -> Reaper:
        return Reaper(db=self.db, store=self.store, result_retention=RETENTION, result_batch=batch)


@pytest.fixture
async def setup(db: Database, tmp_path: Path) -> Setup:
    settings = Settings(data_dir=tmp_path)
    store = FlakyStore(settings.files_dir, secret=b"s", public_url="http://gw", url_ttl_s=3600)
    store.refused = set()
    return Setup(db=db, caller=await make_caller(db, credits=100), store=store)


async def test_old_results_and_keys_go_in_batches_recent_ones_stay(setup: Setup) -> None:
    old = [
        await setup.completed(f"old-{n}-{setup.caller.key_id}", ago=OLD, key_expired=True)
        for n in range(3)
    ]
    recent_key = f"recent-{setup.caller.key_id}"
    recent = await setup.completed(recent_key, ago=timedelta(days=2))
    reaper = setup.reaper(batch=2)

    first = await reaper.tick()
    assert (first.results, first.full) == (2, True)  # a bounded batch, and more to do
    await reaper.tick()
    for task_id in old:
        assert setup.files_of(task_id) == [], task_id
        assert await setup.expired_at(task_id) is not None
    assert setup.files_of(recent) == [f"{recent}.mp4", f"{recent}.thumbnail.webp"]
    assert await setup.expired_at(recent) is None
    old_keys = [f"old-{n}-{setup.caller.key_id}" for n in range(3)]
    assert await setup.keys_kept([*old_keys, recent_key]) == {recent_key}
    # What a client sees of the keys: an expired one is forgotten (a new task), a live one
    # still answers with its task.
    assert await setup.create_again(recent_key) == recent
    assert await setup.create_again(f"old-0-{setup.caller.key_id}") != old[0]


async def test_two_reapers_at_once_expire_each_result_once(setup: Setup) -> None:
    old = [await setup.completed(ago=OLD) for _ in range(6)]
    first, second = await asyncio.gather(setup.reaper().tick(), setup.reaper().tick())
    assert first.results + second.results >= len(old)  # other tests' old tasks may add to it
    stamps = [await setup.expired_at(task_id) for task_id in old]
    assert None not in stamps
    assert all(setup.files_of(task_id) == [] for task_id in old)


async def test_a_refused_delete_is_tried_again_on_the_next_tick(setup: Setup) -> None:
    task_id = await setup.completed(ago=OLD)
    setup.store.refused = {f"{task_id}.thumbnail.webp"}
    await setup.reaper().tick()
    assert await setup.expired_at(task_id) is None  # still points at what is left
    setup.store.refused = set()
    await setup.reaper().tick()
    assert await setup.expired_at(task_id) is not None
    assert setup.files_of(task_id) == []


async def test_no_retention_keeps_results(setup: Setup) -> None:
    task_id = await setup.completed(ago=timedelta(days=3650))
    reaped = await Reaper(db=setup.db, store=setup.store, result_retention=None).tick()
    assert reaped.results == 0
    assert setup.files_of(task_id) == [f"{task_id}.mp4", f"{task_id}.thumbnail.webp"]
