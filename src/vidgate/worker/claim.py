"""Claiming due tasks with a lease, for one worker pool.

A worker claims only from its own queues, and only tasks it can serve: models its registry
routes (for a submit) and providers it has (for a poll). The claim is one statement
(tasks/repository.py claim_due).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from vidgate.db.engine import Database
from vidgate.db.types import utcnow
from vidgate.tasks import repository


class Claimer(Protocol):
    async def claim(self, *, owner: str, limit: int, lease_s: float) -> list[str]: ...


class SqlClaimer:
    def __init__(
        self,
        db: Database,
        *,
        queues: Collection[str] | None = None,
        models: Collection[str] | None = None,
        channels: Collection[str] | None = None,
        skip_inactive_accounts: bool = False,
    ) -> None:
        """None: any queue, model or channel; an empty collection: none.
        `skip_inactive_accounts`: VIDGATE_SUSPENDED_TASKS=wait."""
        self.db = db
        self.skip_inactive_accounts = skip_inactive_accounts
        self.queues = None if queues is None else tuple(queues)
        self.models = None if models is None else tuple(models)
        self.channels = None if channels is None else tuple(channels)

    async def claim(self, *, owner: str, limit: int, lease_s: float) -> list[str]:
        if limit <= 0:
            return []
        now = utcnow()
        return await self.db.backend.run_write(
            lambda conn: repository.claim_due(
                conn,
                owner=owner,
                now=now,
                limit=limit,
                lease_s=lease_s,
                queues=self.queues,
                models=self.models,
                channels=self.channels,
                skip_inactive_accounts=self.skip_inactive_accounts,
            )
        )
