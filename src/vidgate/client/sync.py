"""The blocking client: `VidgateClient` (its async twin is aio.py; the logic lives in _base.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Sequence
from contextlib import closing
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, Unpack

import httpx

from vidgate.client import _base as base
from vidgate.client import _models as m
from vidgate.client import _stream as live

T = TypeVar("T")


class VidgateClient(base.BaseClient):
    """A vidgate (API Mall-compatible) gateway.

    `base_url` and `api_key` default to $VIDGATE_BASE_URL (else http://127.0.0.1:8000) and
    $VIDGATE_API_KEY. Failed calls are retried `max_retries` times (connection errors, 429, 5xx).
    Use it as a context manager, or call `close()`.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = base.DEFAULT_TIMEOUT,
        max_retries: int = base.DEFAULT_MAX_RETRIES,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client()
        self.videos = Videos(self)
        self.account = Account(self)
        self.keys = Keys(self)
        self.models = Models(self)
        self.webhooks = Webhooks(self)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> VidgateClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, call: base.APIRequest[Any], *, stream: bool = False) -> httpx.Response:
        """Send `call`, retrying as the policy says; the same request (and Idempotency-Key)
        goes out each time."""
        request = self._build_request(call)
        attempt = 0
        while True:
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = self.retry_policy.after_error(call, attempt, exc)
            else:
                retry_in = self.retry_policy.after_response(call, attempt, response)
                if retry_in is None:
                    if stream and response.is_error:
                        response.read()  # the error envelope, for the typed error
                    return response
                delay = retry_in
                response.close()
            time.sleep(delay)
            attempt += 1

    def _request(self, call: base.APIRequest[T]) -> T:
        return call.parse(self._send(call))


class _Resource:
    def __init__(self, client: VidgateClient) -> None:
        self._client = client


class Videos(_Resource):
    def generate(
        self,
        *,
        model: str,
        prompt: str | None = None,
        idempotency_key: str | None = None,
        **fields: Unpack[base.GenerateOptions],
    ) -> m.CreatedTask:
        """Create a task (its price is debited at once). Model options go in `options`, e.g.
        `options={"seed": 42, "negative_prompt": "blur"}` (see `models.list()`). Without
        `idempotency_key` one is made for this call, so its retries cannot create (and charge)
        a second task. ValueError: contradictory arguments (nothing is sent)."""
        return self._client._request(
            base.generate_call(
                model=model, prompt=prompt, idempotency_key=idempotency_key, fields=fields
            )
        )

    def get(self, task_id: str) -> m.Task:
        return self._client._request(base.get_task_call(task_id))

    def history(self, *, page: int = 1, limit: int = 20) -> m.HistoryPage:
        """This account's tasks, newest first (`limit` 1-50)."""
        return self._client._request(base.history_call(page=page, limit=limit))

    def cancel(self, task: str | m.Task | m.CreatedTask) -> m.Task:
        """Cancel a pending or processing task; returns it ended (status "failed", error_code
        "cancelled"), refunded in full unless an upstream had accepted it and its channel keeps
        the credits. ConflictError (code task_ended) if it had ended already."""
        return self._client._request(base.cancel_task_call(base.task_id_of(task)))

    def stream(
        self, task: str | m.Task | m.CreatedTask, *, last_event_id: int | str | None = None
    ) -> Generator[m.TaskEvent, None, None]:
        """The task's events as they happen (Server-Sent Events), from the first one or after
        `last_event_id`, ending with the terminal event (completed, failed or cancelled), which
        carries the task. A dropped connection is made again with Last-Event-ID: no event is
        missed or repeated."""
        return self._events(
            live.EventStream(self._client, base.task_id_of(task), last_event_id=last_event_id)
        )

    def _events(self, stream: live.EventStream) -> Generator[m.TaskEvent, None, None]:
        while True:
            response = self._client._send(stream.call(), stream=True)
            try:
                stream.opened(response)
                for line in response.iter_lines():
                    event = stream.on_line(line)
                    if event is not None:
                        yield event
                        if event.is_terminal:
                            return
                delay = stream.after_drop(None)
            except httpx.TransportError as exc:
                delay = stream.after_drop(exc)
            finally:
                response.close()
            time.sleep(delay)

    def wait(
        self,
        task: str | m.Task | m.CreatedTask,
        *,
        timeout: float | None = None,
        on_update: base.UpdateCallback | None = None,
        raise_on_failure: bool = False,
    ) -> m.Task:
        """Wait until the task is completed or failed and return it: following its event
        stream where the gateway has one, else polling it as the server's X-Poll-After-Ms
        hint says. `on_update` gets every state seen. A failed task is returned (status
        "failed", `error_message` set) unless `raise_on_failure`, which raises
        TaskFailedError. Raises WaitTimeoutError after `timeout` seconds (None: no limit)."""
        task_id = base.task_id_of(task)
        schedule = base.PollSchedule(
            timeout=timeout, on_update=on_update, raise_on_failure=raise_on_failure
        )
        polled = self._client._request(base.poll_task_call(task_id))
        delay = schedule.next_delay(polled)
        if delay is None:
            return polled.task
        following = live.StreamWait(self._client, schedule, polled.task)
        if following.possible:
            try:
                with closing(self._events(following.stream)) as events:
                    for event in events:
                        ended = following.apply(event)
                        if ended is not None:
                            return ended
            except live.StreamDeadline:
                raise following.timed_out() from None
            except live.PollInstead:
                pass
        while True:
            time.sleep(delay)
            polled = self._client._request(base.poll_task_call(task_id))
            delay = schedule.next_delay(polled)
            if delay is None:
                return polled.task

    def download(
        self,
        task: str | m.Task | m.CreatedTask,
        path: str | os.PathLike[str],
        *,
        on_progress: base.ProgressCallback | None = None,
    ) -> Path:
        """Stream a completed task's MP4 (a Task, a task id or a file URL) to `path`, via a
        temporary file renamed into place when complete. `on_progress(done_bytes, total_bytes)`;
        total is None when unknown. Returns the path."""
        task_id = base.task_to_fetch(task)
        url = base.video_url_of(self.get(task_id) if task_id else task)
        with base.DownloadSink(path, on_progress=on_progress) as sink:
            attempt = 0
            while True:
                call = base.download_call(url, headers=sink.resume_headers())
                response = self._client._send(call, stream=True)
                try:
                    sink.begin(call.parse(response))
                    for chunk in response.iter_bytes():
                        sink.write(chunk)
                    return sink.commit()
                except httpx.TransportError as exc:  # broken mid-body: resume from there
                    delay = self._client.retry_policy.after_error(call, attempt, exc)
                finally:
                    response.close()
                time.sleep(delay)
                attempt += 1


class Account(_Resource):
    def balances(self) -> m.Balances:
        return self._client._request(base.balances_call())


class Keys(_Resource):
    def create(self, title: str) -> m.CreatedApiKey:
        """A new key for this account; its plaintext (`api_key`) is shown only here."""
        return self._client._request(base.create_key_call(title))

    def list(self) -> list[m.ApiKey]:
        return self._client._request(base.list_keys_call())

    def revoke(self, key_id: int) -> m.RevokedApiKey:
        return self._client._request(base.revoke_key_call(key_id))


class Models(_Resource):
    def list(self) -> list[m.VideoModel]:
        """The model catalogue with options and prices (no API key needed)."""
        return self._client._request(base.list_models_call())


class Webhooks(_Resource):
    """Webhook endpoints of this account: signed deliveries of job.completed, job.failed and
    job.cancelled (verify them with `vidgate.client.verify_webhook`)."""

    def create(
        self,
        url: str,
        *,
        events: Sequence[str] = ("job.completed", "job.failed"),
        secret_key: str | None = None,
        api_key_id: int | None = None,
    ) -> m.CreatedWebhook:
        """A new endpoint; its `secret_key` (generated unless given) is shown only here.
        `api_key_id`: only tasks created with that key."""
        return self._client._request(
            base.create_webhook_call(
                url=url, events=events, secret_key=secret_key, api_key_id=api_key_id
            )
        )

    def list(self) -> list[m.Webhook]:
        return self._client._request(base.list_webhooks_call())

    def delete(self, webhook_id: int) -> m.DeletedWebhook:
        return self._client._request(base.delete_webhook_call(webhook_id))

    def deliveries(
        self, webhook_id: int, *, page: int = 1, limit: int = 20
    ) -> m.WebhookDeliveryPage:
        """The endpoint's deliveries, newest first."""
        return self._client._request(
            base.webhook_deliveries_call(webhook_id, page=page, limit=limit)
        )

    def redeliver(self, webhook_id: int, delivery_id: int) -> m.WebhookDelivery:
        """Send a delivery once more."""
        return self._client._request(base.redeliver_call(webhook_id, delivery_id))
