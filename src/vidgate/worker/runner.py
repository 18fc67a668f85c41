"""Drives one claimed task one step forward through its provider.

Each call handles the step the task row says it is at (submit or poll), persists the outcome, and
gives the lease back with the time of the next visit. A worker that dies mid-step leaves the row
as it was; its lease expires and another worker repeats that step. The provider's job id is
written the moment submit returns, so an accepted job is never submitted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from vidgate.db.engine import Database
from vidgate.db.models import VideoTask
from vidgate.db.types import utcnow
from vidgate.net.fetch import FetchError, FetchPolicy, UnsafeURLError, fetch_url
from vidgate.providers.base import (
    GenerationRequest,
    JobLost,
    JobState,
    JobStatus,
    LogicalError,
    Provider,
    TechnicalError,
)
from vidgate.providers.catalogue import DEFAULT_RESOLUTION, Catalogue, frame_size
from vidgate.providers.registry import ProviderRegistry
from vidgate.settings import Settings
from vidgate.storage.local import LocalFileStore
from vidgate.tasks import transitions
from vidgate.tasks.states import TERMINAL, TaskStep
from vidgate.worker.retry import RetryPolicy

logger = logging.getLogger("vidgate.worker")

RESULT_MAX_BYTES = 2 * 1024 * 1024 * 1024


class _TaskFailed(Exception):
    """Ends the task as failed (and refunded) with a message for the user."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TaskRunner:
    def __init__(
        self,
        *,
        db: Database,
        settings: Settings,
        catalogue: Catalogue,
        registry: ProviderRegistry,
        store: LocalFileStore,
        owner: str,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.catalogue = catalogue
        self.registry = registry
        self.store = store
        self.owner = owner
        self.retry = retry or RetryPolicy()
        networks = tuple(
            ipaddress.ip_network(n, strict=False) for n in settings.fetch_allowed_private_networks
        )
        self.input_policy = FetchPolicy(
            max_bytes=settings.fetch_max_bytes,
            timeout_s=settings.fetch_timeout_s,
            allowed_private_networks=networks,
        )
        self.result_policy = FetchPolicy(
            max_bytes=RESULT_MAX_BYTES, timeout_s=600.0, allowed_private_networks=networks
        )

    async def run(self, task_id: str) -> datetime | None:
        """Run the task's current step; returns when it is due again (None: it ended)."""
        async with self.db.read() as session:
            task = await session.get(VideoTask, task_id)
        if task is None or task.status in TERMINAL or task.lease_owner != self.owner:
            return None
        if utcnow() >= task.deadline_at:
            await self._fail_timed_out(task)
            return None
        try:
            async with self._heartbeat(task_id):
                if task.step == TaskStep.SUBMIT:
                    return await self._submit(task)
                return await self._poll(task)
        except _TaskFailed as failure:
            await self._fail(task, failure.code, failure.message)
        except LogicalError as error:
            await self._fail(task, "provider_rejected", error.message)
        except TechnicalError as error:
            return await self._retry_or_fail(task, error.message)
        except Exception as error:
            logger.exception("task %s: unexpected error in step %s", task.id, task.step)
            return await self._retry_or_fail(task, f"internal error: {type(error).__name__}")
        return None

    # -- steps ---------------------------------------------------------------------------

    async def _submit(self, task: VideoTask) -> datetime:
        model = self.catalogue.get(task.model)
        routes = self.registry.routes_for(task.model)
        if not routes:
            raise _TaskFailed("no_provider", f"no provider is configured for model {task.model}")
        options: dict[str, Any] = task.params.get("options", {})
        width, height = frame_size(
            aspect_ratio=str(options.get("aspect_ratio", "landscape")),
            resolution=str(options.get("resolution", DEFAULT_RESOLUTION)),
        )
        images = await self._fetch_images(task.params.get("image_urls", []))
        last_error: TechnicalError | None = None
        for route in routes:  # fail over only while nothing has been accepted upstream
            request = GenerationRequest(
                task_id=task.id,
                model=task.model,
                upstream_model=route.channel.upstream_model,
                type=task.type,
                prompt=task.prompt or "",
                options=options,
                seconds=model.clip_seconds(options),
                width=width,
                height=height,
                images=images,
            )
            try:
                submission = await route.provider.submit(request)
            except TechnicalError as error:
                logger.warning("task %s: %s refused: %s", task.id, route.provider.name, error)
                last_error = error
                continue
            next_poll = self._next_poll(task, route.provider)
            await transitions.record_submission(
                self.db,
                task.id,
                self.owner,
                upstream_id=submission.upstream_id,
                channel=route.provider.name,
                run_after=next_poll,
            )
            logger.info("task %s: submitted to %s", task.id, route.provider.name)
            return next_poll
        assert last_error is not None
        raise last_error

    async def _poll(self, task: VideoTask) -> datetime | None:
        provider = self.registry.provider(task.channel or "")
        if provider is None or task.upstream_id is None:
            raise _TaskFailed("no_provider", f"provider {task.channel} is no longer configured")
        try:
            status = await provider.poll(task.upstream_id)
        except JobLost as lost:
            if not provider.resubmit_lost_jobs:
                raise _TaskFailed("upstream_lost", lost.message) from lost
            logger.info("task %s: %s; submitting again", task.id, lost.message)
            now = utcnow()
            await transitions.schedule_retry(
                self.db,
                task.id,
                self.owner,
                run_after=now,
                step=TaskStep.SUBMIT,
                clear_upstream=True,
            )
            return now
        if status.state == JobState.RUNNING:
            next_poll = self._next_poll(task, provider)
            await transitions.record_progress(
                self.db, task.id, self.owner, progress=status.progress, run_after=next_poll
            )
            return next_poll
        if status.state == JobState.FAILED:
            raise _TaskFailed("generation_failed", status.error or "generation failed")
        await self._store_and_complete(task, provider, status)
        return None

    async def _store_and_complete(
        self, task: VideoTask, provider: Provider, status: JobStatus
    ) -> None:
        key = f"{task.id}.mp4"
        if status.result_file is not None:
            self.store.put_file(key, status.result_file)
        elif status.result_urls:
            try:
                fetched = await fetch_url(
                    status.result_urls[0], policy=self.result_policy, expect="video"
                )
            except (FetchError, UnsafeURLError) as error:
                raise TechnicalError(f"could not download the result: {error}") from error
            self.store.put_bytes(key, fetched.data)
        else:
            raise LogicalError(f"{provider.name} reported success without a result")
        if await transitions.complete(self.db, task.id, self.owner, file_key=key):
            logger.info("task %s: completed", task.id)
        else:  # it ended meanwhile (timed out): the file has no owner
            path = self.store.path_of(key)
            if path is not None:
                path.unlink(missing_ok=True)

    # -- helpers -------------------------------------------------------------------------

    async def _fetch_images(self, urls: list[str]) -> tuple[bytes, ...]:
        images = []
        for index, url in enumerate(urls[:1]):  # the renderers use the first image
            try:
                fetched = await fetch_url(url, policy=self.input_policy, expect="image")
            except UnsafeURLError as error:
                raise _TaskFailed("invalid_input", f"image_urls[{index}]: {error}") from error
            except FetchError as error:
                raise _TaskFailed("input_fetch_failed", f"image_urls[{index}]: {error}") from error
            images.append(fetched.data)
        return tuple(images)

    def _next_poll(self, task: VideoTask, provider: Provider) -> datetime:
        interval = provider.poll_interval_s
        if interval is None:
            interval = self.settings.provider_poll_interval_s
        return min(utcnow() + timedelta(seconds=interval), task.deadline_at)

    async def _retry_or_fail(self, task: VideoTask, message: str) -> datetime | None:
        attempt = task.attempts + 1
        if self.retry.gives_up(attempt):
            await self._fail(task, "upstream_error", f"{message} (gave up after {attempt} tries)")
            return None
        run_after = min(utcnow() + timedelta(seconds=self.retry.delay(attempt)), task.deadline_at)
        logger.warning("task %s: %s; retry %d at %s", task.id, message, attempt, run_after)
        await transitions.schedule_retry(self.db, task.id, self.owner, run_after=run_after)
        return run_after

    async def _fail_timed_out(self, task: VideoTask) -> None:
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
            task, "timeout", f"task timed out after {limit} s (the limit of model {task.model})"
        )

    async def _fail(self, task: VideoTask, code: str, message: str) -> None:
        if await transitions.fail(self.db, task.id, error_code=code, error_message=message):
            logger.info("task %s: failed (%s): %s; credits refunded", task.id, code, message)

    @contextlib.asynccontextmanager
    async def _heartbeat(self, task_id: str) -> AsyncIterator[None]:
        """Keep the lease alive while a step runs (downloads can take a while)."""
        lease_s = self.settings.worker_lease_s

        async def beat() -> None:
            while True:
                await asyncio.sleep(lease_s / 3)
                if not await transitions.extend_lease(
                    self.db, task_id, self.owner, lease_s=lease_s
                ):
                    return

        beater = asyncio.create_task(beat())
        try:
            yield
        finally:
            beater.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beater
