"""A task's events as they happen, read from the outbox (task_events): what the live status
streams of every surface are made of.

Reading "every event after the last one seen" never skips one: each move of a task updates its
row (taking the row's lock) before inserting its event in the same transaction, so a later
move's event gets a larger id and commits after the earlier one. The id a client saw last is
therefore a complete bookmark, which is what makes a reconnect with Last-Event-ID exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial

from vidgate.db.engine import Database
from vidgate.tasks import repository
from vidgate.tasks.repository import EventRecord, TaskRecord
from vidgate.tasks.states import TERMINAL

# How often a stream looks for new events: well under a progress step of a fast render, and a
# single indexed read (task_id, id) per stream each time.
POLL_INTERVAL_S = 0.5


def is_terminal(event: EventRecord) -> bool:
    return event.status in TERMINAL


async def follow(
    db: Database,
    task: TaskRecord,
    *,
    after_id: int = 0,
    poll_interval_s: float = POLL_INTERVAL_S,
) -> AsyncIterator[EventRecord]:
    """Every event of `task` after the one `after_id` names, then each new one as it is
    written, ending with the terminal event.

    An `after_id` that is not one of this task's events (0, or a bookmark from another
    stream) starts from the first event: skipping to it could skip events of this task, the
    terminal one included, and the stream would then never end. For a task that had ended
    already when the stream began, the events left are all there is: none means the client
    has seen the end."""
    ended_before = task.is_terminal
    # A task has a dozen events at most (progress is throttled), so the first read takes them
    # all and finds the bookmark among them.
    events = await db.backend.run_read(partial(repository.events_of, task_id=task.id))
    last_id = after_id if any(event.id == after_id for event in events) else 0
    events = [event for event in events if event.id > last_id]
    while True:
        for event in events:
            yield event
            last_id = event.id
            if is_terminal(event):
                return
        if ended_before:
            return
        await asyncio.sleep(poll_interval_s)
        events = await db.backend.run_read(
            partial(repository.events_of, task_id=task.id, after_id=last_id)
        )
