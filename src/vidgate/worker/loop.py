"""The worker loop: claim due tasks, run each one step, repeat; woken early by new tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable

from ulid import ULID

from vidgate import metrics
from vidgate.db.engine import Database
from vidgate.db.types import utcnow
from vidgate.logs import current_task_id
from vidgate.tasks import repository, transitions
from vidgate.tasks.states import TaskErrorCode
from vidgate.worker.claim import Claimer
from vidgate.worker.runner import TaskRunner
from vidgate.worker.shutdown import drain_then_release

logger = logging.getLogger("vidgate.worker")

# Tasks past their deadline that nobody holds (no worker serves their queue) are failed and
# refunded by whichever worker looks first.
OVERDUE_SWEEP_INTERVAL_S = 30.0
OVERDUE_BATCH = 100


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{str(ULID())[-8:]}"


class Worker:
    def __init__(
        self,
        *,
        db: Database,
        claimer: Claimer,
        runner: TaskRunner,
        concurrency: int,
        poll_interval_s: float,
        lease_s: float,
        on_task_ended: Callable[[], None] | None = None,
    ) -> None:
        """`on_task_ended`: called when a step may have ended its task (the webhook delivery
        loop's wake-up, so an ending is sent at once rather than at its next look)."""
        self.db = db
        self.claimer = claimer
        self.runner = runner
        self.owner = runner.owner
        self.concurrency = concurrency
        self.poll_interval_s = poll_interval_s
        self.lease_s = lease_s
        self.on_task_ended = on_task_ended
        self._wake = asyncio.Event()
        self._stopping = False
        self._active: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """A task became due (e.g. just created): look now instead of at the next tick."""
        self._wake.set()

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="vidgate-worker")
        logger.info("worker %s started (concurrency %d)", self.owner, self.concurrency)

    async def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
        await drain_then_release(self._active, self._release, timeout_s=timeout_s)

    async def _sweep_overdue(self) -> None:
        now = utcnow()
        overdue = await self.db.backend.run_read(
            lambda conn: repository.overdue(conn, now=now, limit=OVERDUE_BATCH)
        )
        for task_id in overdue:
            if await self._fail_overdue(task_id):
                metrics.refunded(TaskErrorCode.TIMEOUT)
                self._task_ended()

    async def _release(self, task_id: str) -> bool:
        return await self.db.backend.run_write(
            lambda conn: transitions.release(conn, task_id, self.owner)
        )

    async def _fail_overdue(self, task_id: str) -> bool:
        now = utcnow()
        return await self.db.backend.run_write(
            lambda conn: transitions.failed(
                conn,
                task_id,
                at=now,
                code=TaskErrorCode.TIMEOUT,
                message="task timed out before any worker could run it",
            )
        )

    async def _run(self) -> None:
        last_sweep = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping:
            claimed: list[str] = []
            free = self.concurrency - len(self._active)
            try:
                claimed = await self.claimer.claim(
                    owner=self.owner, limit=free, lease_s=self.lease_s
                )
                for task_id in claimed:
                    self._active[task_id] = asyncio.create_task(self._run_one(task_id))
                if loop.time() - last_sweep > OVERDUE_SWEEP_INTERVAL_S:
                    last_sweep = loop.time()
                    await self._sweep_overdue()
            except Exception:
                logger.exception("worker loop error; continuing")
            if len(claimed) == free and len(self._active) < self.concurrency:
                continue  # a full batch, and slots freed meanwhile: there may be more due
            # A smaller batch took every task due then; whatever becomes due later sets the
            # wake (a notification, a step's timer, a slot freed while all were busy).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval_s)
            self._wake.clear()

    async def _run_one(self, task_id: str) -> None:
        current_task_id.set(task_id)  # on this step's log lines (its own asyncio task)
        try:
            due_again = await self.runner.run(task_id)
            if due_again is None:  # ended, or handed back: either way nothing more to do here
                self._task_ended()
            else:
                # Look again exactly when it is due rather than at the next poll tick.
                delay = max(0.0, (due_again - utcnow()).total_seconds())
                asyncio.get_running_loop().call_later(delay, self._wake.set)
        except Exception:
            logger.exception("task %s: runner crashed", task_id)
        finally:
            full = len(self._active) >= self.concurrency
            self._active.pop(task_id, None)
            if full:  # the loop skipped claiming for want of a slot: one is free now
                self._wake.set()

    def _task_ended(self) -> None:
        if self.on_task_ended is not None:
            self.on_task_ended()
