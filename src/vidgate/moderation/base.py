"""The moderation seam: a policy consulted before a task is charged or queued."""

from __future__ import annotations

from typing import Protocol


class Moderator(Protocol):
    async def check(self, *, model: str, prompt: str) -> None:
        """Raise vidgate.errors.ContentBlocked (451) when the prompt may not be generated."""
        ...


class AllowAll:
    """No policy configured: every prompt passes."""

    async def check(self, *, model: str, prompt: str) -> None:
        return None
