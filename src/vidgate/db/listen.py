"""Wake-ups from other processes: PostgreSQL LISTEN on one connection of its own.

A transaction that makes a task due (a create, a lease handed back) or queues a webhook
delivery sends `pg_notify` on its channel (db/backend.py notify_queue), delivered at commit.
Each worker process holds one dedicated connection that LISTENs on the channels it serves and
calls their wakes (the worker's and the delivery loop's `wake()`), so an idle loop looks at once
instead of at its next poll tick. The poll stays the safety net: a notification is a hint, and
one missed (the connection dropped) delays work by at most a poll interval. On a reconnect every
wake is called once, for what may have been sent meanwhile.

A dropped connection is noticed when the server closes it (a restart, pg_terminate_backend) or,
on a silent network, by a `SELECT 1` after each quiet spell; it is opened again with jittered
exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping
from typing import Protocol

import psycopg
from psycopg import sql

logger = logging.getLogger("vidgate.worker")

RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 10.0
QUIET_CHECK_S = 30.0  # a connection silent this long is asked SELECT 1
CONNECT_TIMEOUT_S = 5
APPLICATION_NAME = "vidgate-listen"  # how the connection shows in pg_stat_activity


class Listener(Protocol):
    def start(self) -> None: ...

    async def stop(self) -> None: ...


class NoListener:
    """SQLite: one process works off the database file, so its wakes are in-process only."""

    def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class PgListener:
    def __init__(
        self,
        dsn: str,
        wakes: Mapping[str, Callable[[], None]],
        *,
        quiet_check_s: float = QUIET_CHECK_S,
    ) -> None:
        """`dsn`: a libpq URL (postgresql://...); `wakes`: what to call per channel."""
        self.dsn = dsn
        self.wakes = dict(wakes)
        self.quiet_check_s = quiet_check_s
        self.connects = 0  # connections made so far (the first and every reconnect)
        self.listening = asyncio.Event()  # set while a connection is listening
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None and self.wakes:
            self._task = asyncio.create_task(self._run(), name="vidgate-listen")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = RECONNECT_MIN_S
        while True:
            connects, reason = self.connects, "closed"
            try:
                await self._listen()
            except Exception as error:  # psycopg.Error, OSError: down, refused, dropped
                text = str(error).strip()
                reason = text.splitlines()[0] if text else type(error).__name__
            self.listening.clear()
            if self.connects > connects:  # it was listening until now: try again soon
                delay = RECONNECT_MIN_S
            logger.warning("wake-up connection lost (%s); reconnecting in %.1f s", reason, delay)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(RECONNECT_MAX_S, delay * 2)

    async def _listen(self) -> None:
        async with await psycopg.AsyncConnection.connect(
            self.dsn,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name=APPLICATION_NAME,
        ) as conn:
            for channel in self.wakes:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            self.connects += 1
            self.listening.set()
            logger.info("listening for wake-ups on %s", ", ".join(self.wakes))
            for wake in self.wakes.values():  # whatever was notified while we were away
                wake()
            while True:
                async for note in conn.notifies(timeout=self.quiet_check_s):
                    woken = self.wakes.get(note.channel)
                    if woken is not None:
                        woken()
                await conn.execute("SELECT 1")  # raises if the connection died silently
