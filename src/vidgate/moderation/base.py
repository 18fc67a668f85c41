"""The moderation seam: a policy consulted before a task is charged or queued."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from vidgate.errors import ContentBlocked


class Moderator(Protocol):
    async def check(self, *, model: str, prompt: str) -> None:
        """Raise vidgate.errors.ContentBlocked (451) when the prompt may not be generated."""
        ...

    async def close(self) -> None:
        """Release connections (the gateway is shutting down)."""
        ...


class AllowAll:
    """No policy configured: every prompt passes."""

    async def check(self, *, model: str, prompt: str) -> None:
        return None

    async def close(self) -> None:
        return None


def blocked(message: str) -> ContentBlocked:
    """The 451 a policy raises. A 451 is cacheable by default (RFC 7725), and a verdict on one
    prompt must not be replayed by a cache for another, hence no-store."""
    return ContentBlocked(message, headers={"Cache-Control": "no-store"})


class ModerationChain:
    """Policies consulted in order; the first to refuse decides (the cheap local ones go first,
    so a prompt they block never reaches a network call)."""

    def __init__(self, policies: Sequence[Moderator]) -> None:
        self.policies = tuple(policies)

    async def check(self, *, model: str, prompt: str) -> None:
        for policy in self.policies:
            await policy.check(model=model, prompt=prompt)

    async def close(self) -> None:
        for policy in self.policies:
            await policy.close()
