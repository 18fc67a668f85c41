"""Retention: the reaper deletes what is kept only for a while.

- Result files of tasks that completed more than VIDGATE_RESULT_RETENTION_DAYS ago (0: kept),
  with the previews derived from them, through the FileStore (a local directory or the bucket);
  the task is then stamped `files_expired_at`: it still reads, with no video URL.
- Idempotency keys past their `expires_at` (VIDGATE_IDEMPOTENCY_RETENTION_HOURS after use).

It runs in every worker process, each tick a bounded batch. No lock between processes: every
step is idempotent (deleting a missing key is no error, the stamp is conditional), so two
reapers on one database at once do some work twice and no harm. Files are deleted before the
stamp, so a crash between the two leaves a stamp to do on the next tick, never a file that no
task points at any more. Expired leases need no reaper: a claim takes any task whose lease has
expired (db/leases.py claim_leased), so a dead worker's tasks resume at their next claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from vidgate.api.openai.library import PREVIEWS, preview_key
from vidgate.db.engine import Database
from vidgate.db.types import utcnow
from vidgate.storage.base import FileStore
from vidgate.tasks import idempotency, repository

logger = logging.getLogger("vidgate.worker")

INTERVAL_S = 60.0  # between ticks (jittered), when the last one found less than a batch
BUSY_PAUSE_S = 1.0  # after a full batch: there is more, but leave the database room
RESULT_BATCH = 100
KEY_BATCH = 1000
DELETE_CONCURRENCY = 8


@dataclass(frozen=True)
class Reaped:
    results: int  # tasks whose files this tick deleted and stamped
    idempotency_keys: int
    full: bool  # a batch was full: more is due


def stored_keys(task_id: str, file_key: str) -> list[str]:
    """Every file the store may hold for a task's result: the video and its previews."""
    return [file_key, *(preview_key(task_id, variant) for variant in PREVIEWS)]


class Reaper:
    def __init__(
        self,
        *,
        db: Database,
        store: FileStore,
        result_retention: timedelta | None,
        on_expired: Callable[[str], None] | None = None,
        interval_s: float = INTERVAL_S,
        result_batch: int = RESULT_BATCH,
        key_batch: int = KEY_BATCH,
    ) -> None:
        """`result_retention`: None keeps result files until the user deletes them.
        `on_expired`: called with each task whose files went (this process's render cache)."""
        self.db = db
        self.store = store
        self.result_retention = result_retention
        self.on_expired = on_expired
        self.interval_s = interval_s
        self.result_batch = result_batch
        self.key_batch = key_batch
        self._task: asyncio.Task[None] | None = None

    async def tick(self, *, now: datetime | None = None) -> Reaped:
        now = utcnow() if now is None else now
        results, full = 0, False
        if self.result_retention is not None:
            before = now - self.result_retention
            expired = await self.db.backend.run_read(
                lambda conn: repository.results_to_expire(
                    conn, before=before, limit=self.result_batch
                )
            )
            full = len(expired) == self.result_batch
            gone = await self._delete_files(expired)
            results = await self.db.backend.run_write(
                lambda conn: repository.mark_files_expired(conn, gone, at=now)
            )
            if self.on_expired is not None:
                for task_id in gone:
                    self.on_expired(task_id)
        keys = await self.db.backend.run_write(
            lambda conn: idempotency.purge_expired(conn, now=now, limit=self.key_batch)
        )
        if results or keys:
            logger.info("reaper: %d results expired, %d idempotency keys deleted", results, keys)
        return Reaped(results=results, idempotency_keys=keys, full=full or keys == self.key_batch)

    async def _delete_files(self, expired: list[tuple[str, str]]) -> list[str]:
        """The ids of the tasks whose files are all gone now; one that failed (the bucket
        unreachable) is left for a later tick."""
        limit = asyncio.Semaphore(DELETE_CONCURRENCY)

        async def delete(task_id: str, file_key: str) -> str | None:
            async with limit:
                try:
                    for key in stored_keys(task_id, file_key):
                        await self.store.delete(key)
                except Exception as error:  # StorageError, OSError: try again next tick
                    logger.warning("reaper: task %s: files not deleted: %s", task_id, error)
                    return None
            return task_id

        done = await asyncio.gather(*(delete(task_id, key) for task_id, key in expired))
        return [task_id for task_id in done if task_id is not None]

    # -- the loop ------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="vidgate-reaper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            pause = self.interval_s
            try:
                if (await self.tick()).full:
                    pause = BUSY_PAUSE_S
            except Exception:
                logger.exception("reaper tick failed; trying again later")
            await asyncio.sleep(pause * random.uniform(0.8, 1.2))
