"""Retry policy as data: exponential backoff with jitter, bounded by attempts and the deadline."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    base_s: float = 2.0
    factor: float = 2.0
    max_delay_s: float = 60.0
    jitter: float = 0.2  # +/- fraction of the delay
    max_attempts: int = 8

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        raw = min(self.max_delay_s, self.base_s * self.factor ** max(0, attempt - 1))
        return raw * (1 + random.uniform(-self.jitter, self.jitter))

    def gives_up(self, attempt: int) -> bool:
        return attempt >= self.max_attempts
