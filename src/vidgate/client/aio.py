"""The asyncio client: `AsyncVidgateClient`, twin of sync.py (the logic lives in _base.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, Unpack

import httpx

from vidgate.client import _base as base
from vidgate.client import _models as m
from vidgate.client import _stream as live

T = TypeVar("T")


class AsyncVidgateClient(base.BaseClient):
    """A vidgate gateway for asyncio: the API of VidgateClient, awaited."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = base.DEFAULT_TIMEOUT,
        max_retries: int = base.DEFAULT_MAX_RETRIES,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient()
        self.videos = Videos(self)
        self.account = Account(self)
        self.keys = Keys(self)
        self.models = Models(self)
        self.webhooks = Webhooks(self)

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncVidgateClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _send(self, call: base.APIRequest[Any], *, stream: bool = False) -> httpx.Response:
        """Async VidgateClient._send: one request, retried by the shared policy."""
        request = self._build_request(call)
        attempt = 0
        while True:
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = self.retry_policy.after_error(call, attempt, exc)
            else:
                retry_in = self.retry_policy.after_response(call, attempt, response)
                if retry_in is None:
                    if stream and response.is_error:
                        await response.aread()  # the error envelope, for the typed error
                    return response
                delay = retry_in
                await response.aclose()
            await asyncio.sleep(delay)
            attempt += 1

    async def _request(self, call: base.APIRequest[T]) -> T:
        return call.parse(await self._send(call))


class _Resource:
    def __init__(self, client: AsyncVidgateClient) -> None:
        self._client = client


class Videos(_Resource):
    async def generate(
        self,
        *,
        model: str,
        prompt: str | None = None,
        idempotency_key: str | None = None,
        **fields: Unpack[base.GenerateOptions],
    ) -> m.CreatedTask:
        """See the same method of VidgateClient (sync.py)."""
        return await self._client._request(
            base.generate_call(
                model=model, prompt=prompt, idempotency_key=idempotency_key, fields=fields
            )
        )

    async def get(self, task_id: str) -> m.Task:
        return await self._client._request(base.get_task_call(task_id))

    async def history(self, *, page: int = 1, limit: int = 20) -> m.HistoryPage:
        """This account's tasks, newest first (`limit` 1-50)."""
        return await self._client._request(base.history_call(page=page, limit=limit))

    async def cancel(self, task: str | m.Task | m.CreatedTask) -> m.Task:
        """See the same method of VidgateClient (sync.py)."""
        return await self._client._request(base.cancel_task_call(base.task_id_of(task)))

    def stream(
        self, task: str | m.Task | m.CreatedTask, *, last_event_id: int | str | None = None
    ) -> AsyncGenerator[m.TaskEvent, None]:
        """See the same method of VidgateClient (sync.py). To stop before the end, close it
        (`async with contextlib.aclosing(client.videos.stream(...)) as events:`)."""
        return self._events(
            live.EventStream(self._client, base.task_id_of(task), last_event_id=last_event_id)
        )

    async def _events(self, stream: live.EventStream) -> AsyncGenerator[m.TaskEvent, None]:
        while True:
            response = await self._client._send(stream.call(), stream=True)
            try:
                stream.opened(response)
                async for line in response.aiter_lines():
                    event = stream.on_line(line)
                    if event is not None:
                        yield event
                        if event.is_terminal:
                            return
                delay = stream.after_drop(None)
            except httpx.TransportError as exc:
                delay = stream.after_drop(exc)
            finally:
                await response.aclose()
            await asyncio.sleep(delay)

    async def wait(
        self,
        task: str | m.Task | m.CreatedTask,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the sync twin's signature
        on_update: base.UpdateCallback | None = None,
        raise_on_failure: bool = False,
    ) -> m.Task:
        """See the same method of VidgateClient (sync.py)."""
        task_id = base.task_id_of(task)
        schedule = base.PollSchedule(
            timeout=timeout, on_update=on_update, raise_on_failure=raise_on_failure
        )
        polled = await self._client._request(base.poll_task_call(task_id))
        delay = schedule.next_delay(polled)
        if delay is None:
            return polled.task
        following = live.StreamWait(self._client, schedule, polled.task)
        if following.possible:
            try:
                async with aclosing(self._events(following.stream)) as events:
                    async for event in events:
                        ended = following.apply(event)
                        if ended is not None:
                            return ended
            except live.StreamDeadline:
                raise following.timed_out() from None
            except live.PollInstead:
                pass
        while True:
            await asyncio.sleep(delay)
            polled = await self._client._request(base.poll_task_call(task_id))
            delay = schedule.next_delay(polled)
            if delay is None:
                return polled.task

    async def download(
        self,
        task: str | m.Task | m.CreatedTask,
        path: str | os.PathLike[str],
        *,
        on_progress: base.ProgressCallback | None = None,
    ) -> Path:
        """See the same method of VidgateClient (sync.py)."""
        task_id = base.task_to_fetch(task)
        url = base.video_url_of(await self.get(task_id) if task_id else task)
        with base.DownloadSink(path, on_progress=on_progress) as sink:
            attempt = 0
            while True:
                call = base.download_call(url, headers=sink.resume_headers())
                response = await self._client._send(call, stream=True)
                try:
                    sink.begin(call.parse(response))
                    async for chunk in response.aiter_bytes():
                        sink.write(chunk)
                    return sink.commit()
                except httpx.TransportError as exc:  # broken mid-body: resume from there
                    delay = self._client.retry_policy.after_error(call, attempt, exc)
                finally:
                    await response.aclose()
                await asyncio.sleep(delay)
                attempt += 1


class Account(_Resource):
    async def balances(self) -> m.Balances:
        return await self._client._request(base.balances_call())


class Keys(_Resource):
    async def create(self, title: str) -> m.CreatedApiKey:
        """A new key for this account; its plaintext (`api_key`) is shown only here."""
        return await self._client._request(base.create_key_call(title))

    async def list(self) -> list[m.ApiKey]:
        return await self._client._request(base.list_keys_call())

    async def revoke(self, key_id: int) -> m.RevokedApiKey:
        return await self._client._request(base.revoke_key_call(key_id))


class Models(_Resource):
    async def list(self) -> list[m.VideoModel]:
        """The model catalogue with options and prices (no API key needed)."""
        return await self._client._request(base.list_models_call())


class Webhooks(_Resource):
    """See Webhooks of VidgateClient (sync.py)."""

    async def create(
        self,
        url: str,
        *,
        events: Sequence[str] = ("job.completed", "job.failed"),
        secret_key: str | None = None,
        api_key_id: int | None = None,
    ) -> m.CreatedWebhook:
        return await self._client._request(
            base.create_webhook_call(
                url=url, events=events, secret_key=secret_key, api_key_id=api_key_id
            )
        )

    async def list(self) -> list[m.Webhook]:
        return await self._client._request(base.list_webhooks_call())

    async def delete(self, webhook_id: int) -> m.DeletedWebhook:
        return await self._client._request(base.delete_webhook_call(webhook_id))

    async def deliveries(
        self, webhook_id: int, *, page: int = 1, limit: int = 20
    ) -> m.WebhookDeliveryPage:
        return await self._client._request(
            base.webhook_deliveries_call(webhook_id, page=page, limit=limit)
        )

    async def redeliver(self, webhook_id: int, delivery_id: int) -> m.WebhookDelivery:
        return await self._client._request(base.redeliver_call(webhook_id, delivery_id))
