"""The live status stream (GET /api/v1/videos/{task_id}/events) for both clients: decoding
Server-Sent Events, where a stream stands across reconnects, and `wait` over a stream.

A sibling of _base.py with the same rule: every decision is made here, once; sync.py and aio.py
only move the bytes (iterate lines, sleep).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from vidgate.client._base import APIRequest, BaseClient, PollSchedule, RetryPolicy, _segment
from vidgate.client._errors import (
    APIConnectionError,
    VidgateError,
    WaitTimeoutError,
    status_error,
)
from vidgate.client._models import STATUS_ORDER, Task, TaskEvent

STREAM_MEDIA_TYPE = "text/event-stream"
# Answers of a gateway that has no event stream (older than it): `wait` polls instead.
NO_STREAM_STATUSES = frozenset({404, 405})


class PollInstead(Exception):
    """`wait` cannot follow this stream (no stream on the server, an answer that is not one, a
    terminal event without its task): it polls the task instead."""


class StreamDeadline(Exception):
    """`wait`'s time ran out while it followed the stream."""


@dataclass(frozen=True)
class RawEvent:
    id: str | None
    event: str
    data: str


class EventDecoder:
    """Lines of a text/event-stream body to events, as the WHATWG parsing rules say: `field:
    value` lines (one optional space after the colon), a blank line ends an event, a line
    starting with `:` is a comment (the keep-alives), data lines join with newlines. The last
    id seen stays the event id until another comes, as the rules say."""

    def __init__(self) -> None:
        self._event: str | None = None
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> RawEvent | None:
        """The event a blank line completes, else None."""
        if not line:
            if not self._data:
                self._event = None
                return None
            event = RawEvent(
                id=self._id, event=self._event or "message", data="\n".join(self._data)
            )
            self._event, self._data = None, []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        # `retry` and unknown fields are ignored: reconnects follow the client's retry policy.
        return None


def parse_event(raw: RawEvent) -> TaskEvent:
    try:
        payload: Any = json.loads(raw.data)
        if not isinstance(payload, dict):
            raise ValueError("not a JSON object")
        return TaskEvent.model_validate({**payload, "id": raw.id, "kind": raw.event})
    except (ValueError, ValidationError) as exc:
        raise VidgateError(
            f"unexpected {raw.event!r} event from the gateway: {exc}".splitlines()[0],
            code="invalid_response",
        ) from exc


def _as_is(response: httpx.Response) -> httpx.Response:
    return response  # EventStream.opened judges it


class EventStream:
    """One task's stream of events, across the connections it takes.

    A connection that drops (or ends before the terminal event) is made again with
    Last-Event-ID, so the events resume after the last one received, none missed and none
    repeated. Each event received resets the count of reconnects; past `policy.max_retries`
    drops in a row without one, the stream gives up with APIConnectionError.

    `fall_back`: a gateway without the stream (404/405) raises PollInstead instead of the
    error (and the client remembers it). `until`: a time.monotonic() deadline, past which the
    stream raises StreamDeadline; it is checked at each line, events and keep-alives alike (a
    keep-alive comes at least every 15 s), and bounds each read.
    """

    def __init__(
        self,
        client: BaseClient,
        task_id: str,
        *,
        last_event_id: int | str | None = None,
        fall_back: bool = False,
        until: float | None = None,
    ) -> None:
        self.client = client
        self.task_id = task_id
        self.last_event_id = None if last_event_id is None else str(last_event_id)
        self.fall_back = fall_back
        self.until = until
        self.policy: RetryPolicy = client.retry_policy
        self.drops = 0
        self.received = 0
        self._decoder = EventDecoder()

    def call(self) -> APIRequest[httpx.Response]:
        """The request of the next connection (a fresh decoder: a half-read event is dropped
        with the connection that carried it, and comes again after Last-Event-ID)."""
        self._check_deadline()
        self._decoder = EventDecoder()
        headers = {"Accept": STREAM_MEDIA_TYPE, "Cache-Control": "no-cache"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        read_timeout = None if self.until is None else max(0.05, self.until - time.monotonic())
        return APIRequest(
            method="GET",
            path=f"/api/v1/videos/{_segment(self.task_id)}/events",
            headers=headers,
            parse=_as_is,
            read_timeout=read_timeout,
        )

    def opened(self, response: httpx.Response) -> None:
        """Check the answer before reading it as a stream (its body is read if an error)."""
        media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if self.fall_back and self.received == 0:
            if response.status_code in NO_STREAM_STATUSES:
                self.client.event_stream_missing = True
                raise PollInstead
            if not response.is_error and media_type != STREAM_MEDIA_TYPE:
                raise PollInstead
        if response.is_error:
            raise status_error(response)
        if media_type != STREAM_MEDIA_TYPE:
            raise VidgateError(
                f"the gateway answered {media_type or 'no content type'} where an event stream "
                f"was expected (HTTP {response.status_code})",
                status_code=response.status_code,
                code="invalid_response",
                request_id=response.headers.get("x-request-id"),
            )

    def on_line(self, line: str) -> TaskEvent | None:
        """The event this line completes, if any."""
        self._check_deadline()
        raw = self._decoder.feed(line)
        if raw is None:
            return None
        event = parse_event(raw)
        self.last_event_id = raw.id
        self.received += 1
        self.drops = 0
        return event

    def after_drop(self, error: httpx.TransportError | None) -> float:
        """Seconds to wait before connecting again, after the connection broke (`error`) or
        ended before the terminal event (None). Raises when out of reconnects."""
        self._check_deadline()
        if self.drops >= self.policy.max_retries:
            reason = f": {error}" if error is not None else " before the task ended"
            raise APIConnectionError(
                f"the event stream of task {self.task_id} kept dropping{reason}"
            ) from error
        self.drops += 1
        return self.policy.backoff(self.drops - 1)

    def _check_deadline(self) -> None:
        if self.until is not None and time.monotonic() >= self.until:
            raise StreamDeadline


def advanced(task: Task, event: TaskEvent) -> Task:
    """The task as a non-terminal event leaves it: only forward, so an event older than the
    state we hold (a replay from the stream's start) changes nothing."""
    updates: dict[str, Any] = {}
    if STATUS_ORDER.get(event.status, 0) > STATUS_ORDER.get(task.status, 0):
        updates["status"] = event.status
    progress = event.progress
    if progress is not None and progress > task.progress:
        updates["progress"] = progress
    if updates and event.created_at > task.updated_at:
        updates["updated_at"] = event.created_at
    return task.model_copy(update=updates) if updates else task


class StreamWait:
    """`wait` over the stream: each event moves the last known state of the task on, which is
    reported as polling would report it, until the terminal event's task."""

    def __init__(self, client: BaseClient, schedule: PollSchedule, task: Task) -> None:
        self.schedule = schedule
        self.task = task
        remaining = schedule.remaining()
        self.possible = not client.event_stream_missing
        self.stream = EventStream(
            client,
            task.task_id,
            fall_back=True,
            until=None if remaining is None else time.monotonic() + remaining,
        )

    def apply(self, event: TaskEvent) -> Task | None:
        """The task once it has ended, else None."""
        if event.is_terminal:
            if event.task is None:
                raise PollInstead
            self.task = event.task
        else:
            self.task = advanced(self.task, event)
        return self.task if self.schedule.report(self.task) else None

    def timed_out(self) -> WaitTimeoutError:
        return self.schedule.timed_out(self.task)
