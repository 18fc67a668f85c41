"""Stopping a loop that works off leased rows (tasks, webhook deliveries)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


async def drain_then_release(
    active: dict[K, asyncio.Task[None]],
    release: Callable[[K], Awaitable[object]],
    *,
    timeout_s: float,
) -> None:
    """Let the running steps finish for up to `timeout_s`, cancel the rest, then hand every
    lease this loop held back, so a restart resumes them at once, not after the lease."""
    held = list(active)
    if active:
        _done, pending = await asyncio.wait(active.values(), timeout=timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    for key in held:
        with contextlib.suppress(Exception):
            await release(key)
