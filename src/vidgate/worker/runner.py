"""Drives one claimed task forward through its provider.

A call handles the step the task row is at (submit or poll) and persists the outcome in one
transaction through tasks/transitions.py. Remote jobs live upstream: after each step the lease
goes back with the time of the next visit, so any worker of the queue may take the next step.
Local jobs (the sample renderer, later GPU models) live in this process: they run to their end
inside one held lease, so no other worker polls a job it cannot see. A worker that dies
mid-step leaves the row as it was; its lease expires and another worker repeats that step.
The provider's job id is written the moment submit returns, so an accepted remote job is never
submitted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from sqlalchemy import Connection

from vidgate import metrics
from vidgate.db.engine import Database
from vidgate.db.types import utcnow
from vidgate.net.fetch import FetchPolicy
from vidgate.providers.base import (
    ChannelFault,
    JobLost,
    JobState,
    JobStatus,
    LogicalError,
    Provider,
    SubmitUncertain,
    TechnicalError,
)
from vidgate.providers.catalogue import Catalogue
from vidgate.providers.registry import ProviderRegistry, Route
from vidgate.storage.base import FileStore
from vidgate.tasks import repository, transitions
from vidgate.tasks.repository import TaskRecord
from vidgate.tasks.states import TaskErrorCode, TaskStatus, TaskStep, error_code_of
from vidgate.worker import media
from vidgate.worker.retry import RetryPolicy
from vidgate.worker.schedule import (
    WAIT_TURN_S,
    poll_delay,
    provider_request,
    retry_policy_for,
)

logger = logging.getLogger("vidgate.worker")


def _remove(paths: tuple[Path, ...]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


class _TaskFailed(Exception):
    """Ends the task as failed (and refunded) with a message for the user."""

    def __init__(
        self, code: TaskErrorCode, message: str, *, channel_cost: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.channel_cost = channel_cost


class TaskRunner:
    def __init__(
        self,
        *,
        db: Database,
        catalogue: Catalogue,
        registry: ProviderRegistry,
        store: FileStore,
        owner: str,
        lease_s: float,
        default_poll_interval_s: float,
        input_policy: FetchPolicy,
        result_policy: FetchPolicy,
        work_dir: Path,
        retry: RetryPolicy | None = None,
        suspended_tasks: Literal["fail", "wait"] = "fail",
    ) -> None:
        self.db = db
        self.catalogue = catalogue
        self.registry = registry
        self.store = store
        self.owner = owner
        self.lease_s = lease_s
        self.default_poll_interval_s = default_poll_interval_s
        self.input_policy = input_policy
        self.result_policy = result_policy
        self.work_dir = work_dir
        self.default_retry = retry or RetryPolicy()
        self.suspended_tasks = suspended_tasks

    async def run(self, task_id: str) -> datetime | None:
        """Run the task's current step; returns when it is due again (None: not by us)."""
        task = await self.db.backend.run_read(lambda conn: repository.get(conn, task_id))
        if task is None or task.is_terminal or task.lease_owner != self.owner:
            return None
        metrics.task_claimed(task.queue, (utcnow() - task.run_after).total_seconds())
        if utcnow() >= task.deadline_at:
            await self._time_out(task)
            return None
        routes = self.registry.routes_for(task.model)
        provider = self.registry.provider(task.channel) if task.channel else None
        if (task.step == TaskStep.SUBMIT and not routes) or (
            task.step == TaskStep.POLL and provider is None
        ):
            # Another pool's worker may serve it: hand it back untouched.
            logger.warning("task %s: no provider here for %s; released", task.id, task.model)
            await self._write(lambda conn: transitions.release(conn, task.id, self.owner))
            return None
        # Not sent to any channel yet (so surely not running upstream): its account decides.
        not_started = task.status == TaskStatus.PENDING and task.channel is None
        if not_started and not await self._account_active(task):
            return await self._hold_for_inactive_account(task)
        try:
            async with self._heartbeat(task.id):
                if task.step == TaskStep.SUBMIT:
                    return await self._submit(task, routes)
                assert provider is not None
                return await self._poll(task, provider)
        except _TaskFailed as failure:
            await self._fail(task, failure.code, failure.message, channel_cost=failure.channel_cost)
        except LogicalError as error:
            code = error_code_of(error.code, TaskErrorCode.PROVIDER_REJECTED)
            await self._fail(task, code, error.message)
        except TechnicalError as error:
            return await self._retry_or_fail(task, error)
        except Exception as error:
            logger.exception("task %s: unexpected error in step %s", task.id, task.step)
            return await self._retry_or_fail(
                task, TechnicalError(f"internal error: {type(error).__name__}")
            )
        return None

    async def _account_active(self, task: TaskRecord) -> bool:
        status = await self.db.backend.run_read(
            lambda conn: repository.account_status(conn, account_id=task.account_id)
        )
        return status == "active"

    async def _hold_for_inactive_account(self, task: TaskRecord) -> datetime | None:
        """A task not started yet whose account was suspended: failed and refunded, or
        (VIDGATE_SUSPENDED_TASKS=wait) handed back; the claim then skips it until the account
        is active again."""
        if self.suspended_tasks == "fail":
            await self._fail(
                task,
                TaskErrorCode.ACCOUNT_SUSPENDED,
                "the account is suspended: the task was not started and its credits were refunded",
            )
            return None
        now = utcnow()
        run_after = now + timedelta(seconds=WAIT_TURN_S)
        await self._write(
            lambda conn: transitions.retry_later(
                conn, task.id, self.owner, at=now, run_after=run_after, count_attempt=False
            )
        )
        return run_after

    # -- steps ---------------------------------------------------------------------------

    async def _submit(self, task: TaskRecord, routes: tuple[Route, ...]) -> datetime | None:
        images = await self._fetch_inputs(task)
        try:
            if task.channel is not None:
                return await self._submit_again(task, routes, images)
            return await self._submit_to_first_taker(task, images)
        finally:  # providers read their inputs during submit (and keep copies they need)
            await asyncio.to_thread(_remove, images)

    async def _submit_to_first_taker(
        self, task: TaskRecord, images: tuple[Path, ...]
    ) -> datetime | None:
        """Try the model's channels in order; fail over only while no upstream accepted it."""
        last_error: TechnicalError | None = None
        for route in self.registry.in_order(task.model):
            name = route.channel.provider
            breaker = self.registry.breaker(name)
            if breaker is not None and not breaker.allows():
                continue
            if not await self._route(task, route):
                continue  # full: another channel may have room, or the task waits its turn
            try:
                submission = await route.provider.submit(provider_request(task, route, images))
            except SubmitUncertain:
                self.registry.record(name, ok=False)
                raise  # it stays routed here: the retry asks the same channel, same key
            except ChannelFault as fault:
                self.registry.record(name, fault=True)
                logger.warning(
                    "task %s: channel %s is faulty, failing over: %s", task.id, name, fault
                )
                last_error = fault
            except TechnicalError as error:
                self.registry.record(name, ok=False)
                logger.warning("task %s: channel %s refused it: %s", task.id, name, error)
                last_error = error
            except LogicalError:
                self.registry.record(name, ok=True)  # the channel works; it judged the input
                raise
            else:
                self.registry.record(name, ok=True)
                return await self._submitted(task, route.provider, submission.upstream_id)
            await self._unroute(task, name)
        if last_error is not None:
            raise last_error
        return await self._wait_turn(task)

    async def _submit_again(
        self, task: TaskRecord, routes: tuple[Route, ...], images: tuple[Path, ...]
    ) -> datetime | None:
        """A routed task whose submit may have reached its channel (the answer was lost, or the
        worker died): only that channel is asked again, with the same idempotency key."""
        route = next((r for r in routes if r.channel.provider == task.channel), None)
        if route is None:
            raise _TaskFailed(
                TaskErrorCode.NO_PROVIDER,
                f"channel {task.channel} of this task is no longer configured",
            )
        name = route.channel.provider
        try:
            submission = await route.provider.submit(provider_request(task, route, images))
        except ChannelFault:
            self.registry.record(name, fault=True)
            raise
        except TechnicalError:
            self.registry.record(name, ok=False)
            raise
        self.registry.record(name, ok=True)
        return await self._submitted(task, route.provider, submission.upstream_id)

    async def _route(self, task: TaskRecord, route: Route) -> bool:
        name, cap = route.channel.provider, route.provider.max_concurrent
        return await self._write(
            lambda conn: transitions.routed(conn, task.id, self.owner, channel=name, cap=cap)
        )

    async def _unroute(self, task: TaskRecord, channel: str) -> None:
        await self._write(
            lambda conn: transitions.unrouted(conn, task.id, self.owner, channel=channel)
        )

    async def _wait_turn(self, task: TaskRecord) -> datetime:
        """Every channel is full or open: wait, without counting a failed try."""
        waits = [
            breaker.retry_after_s()
            for route in self.registry.routes_for(task.model)
            if (breaker := self.registry.breaker(route.channel.provider)) is not None
        ]
        delay = max(WAIT_TURN_S, min(waits, default=0.0)) * random.uniform(0.75, 1.25)
        now = utcnow()
        run_after = min(now + timedelta(seconds=delay), task.deadline_at)
        await self._write(
            lambda conn: transitions.retry_later(
                conn, task.id, self.owner, at=now, run_after=run_after, count_attempt=False
            )
        )
        return run_after

    async def _submitted(
        self, task: TaskRecord, provider: Provider, upstream_id: str
    ) -> datetime | None:
        local = provider.runs_locally
        now = utcnow()
        next_poll = self._next_poll(task, provider)
        accepted = await self._write(
            lambda conn: transitions.submitted(
                conn,
                task.id,
                self.owner,
                at=now,
                upstream_id=upstream_id,
                channel=provider.name,
                run_after=next_poll,
                keep_lease=local,
            )
        )
        logger.info("task %s: submitted to %s", task.id, provider.name)
        if not accepted:  # we lost the lease meanwhile; the successor takes over
            return None
        if local:
            await self._run_local(task, provider, upstream_id)
            return None
        return next_poll

    async def _run_local(self, task: TaskRecord, provider: Provider, upstream_id: str) -> None:
        """Follow a job of this process to its end, holding the lease all along."""
        progress = 0
        interval = provider.poll_interval_s or self.default_poll_interval_s
        while True:
            status = await provider.poll(upstream_id)
            if status.state != JobState.RUNNING:
                await self._finish(task, provider, status)
                return
            if status.progress > progress:
                previous, progress = progress, status.progress
                if not await self._report_local_progress(task, previous, progress):
                    # Timed out or taken over: stop the render.
                    with contextlib.suppress(Exception):
                        await provider.cancel(upstream_id)
                    return
            if utcnow() >= task.deadline_at:
                # `task` was read before the submit, so _time_out knows no job id to cancel.
                with contextlib.suppress(Exception):
                    await provider.cancel(upstream_id)
                await self._time_out(task)
                return
            await asyncio.sleep(interval)

    async def _report_local_progress(self, task: TaskRecord, previous: int, progress: int) -> bool:
        now = utcnow()
        return await self._write(
            lambda conn: transitions.progressed(
                conn,
                task.id,
                self.owner,
                at=now,
                previous=previous,
                progress=progress,
                run_after=now,
                keep_lease=True,
            )
        )

    async def _poll(self, task: TaskRecord, provider: Provider) -> datetime | None:
        assert task.upstream_id is not None
        try:
            status = await provider.poll(task.upstream_id)
        except ChannelFault:
            self.registry.record(provider.name, fault=True)
            raise
        except JobLost as lost:
            if not provider.runs_locally:
                raise _TaskFailed(TaskErrorCode.UPSTREAM_LOST, lost.message) from lost
            # Only a dead worker's local job gets here: render it again, it costs nobody.
            logger.info("task %s: %s; submitting again", task.id, lost.message)
            now = utcnow()
            await self._write(
                lambda conn: transitions.retry_later(
                    conn,
                    task.id,
                    self.owner,
                    at=now,
                    run_after=now,
                    step=TaskStep.SUBMIT,
                    clear_upstream=True,
                )
            )
            return now
        except TechnicalError:
            self.registry.record(provider.name, ok=False)
            raise
        self.registry.record(provider.name, ok=True)
        if status.state == JobState.RUNNING:
            now = utcnow()
            next_poll = self._next_poll(task, provider)
            await self._write(
                lambda conn: transitions.progressed(
                    conn,
                    task.id,
                    self.owner,
                    at=now,
                    previous=task.progress,
                    progress=status.progress,
                    run_after=next_poll,
                )
            )
            return next_poll
        await self._finish(task, provider, status)
        return None

    async def _finish(self, task: TaskRecord, provider: Provider, status: JobStatus) -> None:
        if status.state == JobState.FAILED:
            raise _TaskFailed(
                error_code_of(status.error_code, TaskErrorCode.GENERATION_FAILED),
                status.error or "generation failed",
                channel_cost=status.upstream_credits,
            )
        key = f"{task.id}.mp4"
        await media.store_result(
            self.store,
            key,
            status,
            policy=dataclasses.replace(self.result_policy, trusted_hosts=provider.trusted_hosts),
            work_dir=self.work_dir,
            provider=provider.name,
        )
        now = utcnow()
        cost = status.upstream_credits
        if await self._write(
            lambda conn: transitions.completed(
                conn, task.id, self.owner, at=now, file_key=key, channel_cost=cost
            )
        ):
            logger.info("task %s: completed", task.id)
            metrics.task_ended(task, TaskStatus.COMPLETED, at=now)
        else:  # it ended meanwhile (timed out): the file has no owner
            await self.store.delete(key)

    # -- helpers -------------------------------------------------------------------------

    async def _fetch_inputs(self, task: TaskRecord) -> tuple[Path, ...]:
        try:
            stored = task.params.get("input_file_keys")
            if stored:  # uploads: read from our own store
                return await media.copy_stored_inputs(self.store, stored, work_dir=self.work_dir)
            return await media.fetch_inputs(
                task.params.get("image_urls", []),
                policy=self.input_policy,
                work_dir=self.work_dir,
            )
        except media.InputRejected as rejected:
            raise _TaskFailed(TaskErrorCode(rejected.code), rejected.message) from rejected

    def _next_poll(self, task: TaskRecord, provider: Provider) -> datetime:
        now = utcnow()
        delay = poll_delay(
            base_s=provider.poll_interval_s or self.default_poll_interval_s,
            max_s=provider.max_poll_interval_s,
            age_s=(now - (task.started_at or now)).total_seconds(),
        )
        return min(now + timedelta(seconds=delay), task.deadline_at)

    async def _retry_or_fail(self, task: TaskRecord, error: TechnicalError) -> datetime | None:
        attempt = task.attempts + 1
        policy = retry_policy_for(task, self.catalogue, self.registry, self.default_retry)
        if policy.gives_up(attempt):
            await self._fail(
                task,
                TaskErrorCode.UPSTREAM_ERROR,
                f"{error.message} (gave up after {attempt} tries)",
            )
            return None
        # An upstream's own Retry-After (a 429) is a floor under our backoff.
        delay = max(policy.delay(attempt), error.retry_after_s or 0.0)
        now = utcnow()
        run_after = min(now + timedelta(seconds=delay), task.deadline_at)
        logger.warning("task %s: %s; retry %d at %s", task.id, error.message, attempt, run_after)
        await self._write(
            lambda conn: transitions.retry_later(
                conn, task.id, self.owner, at=now, run_after=run_after
            )
        )
        return run_after

    async def _time_out(self, task: TaskRecord) -> None:
        model = self.catalogue.models.get(task.model)
        limit = (
            model.time_limit_seconds
            if model
            else int((task.deadline_at - task.created_at).total_seconds())
        )
        if task.upstream_id and task.channel:
            provider = self.registry.provider(task.channel)
            if provider is not None:
                with contextlib.suppress(Exception):
                    await provider.cancel(task.upstream_id)
        await self._fail(
            task,
            TaskErrorCode.TIMEOUT,
            f"task timed out after {limit} s (the limit of model {task.model})",
        )

    async def _fail(
        self,
        task: TaskRecord,
        code: TaskErrorCode,
        message: str,
        *,
        channel_cost: int | None = None,
    ) -> None:
        now = utcnow()
        if await self._write(
            lambda conn: transitions.failed(
                conn, task.id, at=now, code=code, message=message, channel_cost=channel_cost
            )
        ):
            logger.info("task %s: failed (%s): %s; credits refunded", task.id, code, message)
            metrics.task_ended(task, TaskStatus.FAILED, at=now, refund=code)

    async def _write(self, work: Callable[[Connection], bool]) -> bool:
        return await self.db.backend.run_write(work)

    async def _extend_lease(self, task_id: str) -> bool:
        until = transitions.lease_until(utcnow(), self.lease_s)
        return await self._write(
            lambda conn: transitions.extend_lease(conn, task_id, self.owner, until=until)
        )

    @contextlib.asynccontextmanager
    async def _heartbeat(self, task_id: str) -> AsyncIterator[None]:
        """Keep the lease alive while a step runs (downloads and local renders take a while)."""

        async def beat() -> None:
            while True:
                await asyncio.sleep(self.lease_s / 3)
                if not await self._extend_lease(task_id):
                    return

        beater = asyncio.create_task(beat())
        try:
            yield
        finally:
            beater.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beater
