"""A circuit breaker per channel (provider instance), kept in each process.

Closed: work flows; `failure_threshold` faults in a row open it (a ChannelFault opens it at
once). Open: the channel is skipped for `open_s`, then one probe is let through (half-open);
its success closes the breaker, its failure opens it again for twice as long, up to
`max_open_s`. Like Envoy's outlier detection, each process judges on what it sees itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    failure_threshold: int = 5
    open_s: float = 30.0
    max_open_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _failures: int = 0
    _opened_for: float = 0.0
    _open_until: float | None = None
    # When the current half-open probe was let through; a probe that never reports back (its
    # worker died) stops blocking others after open_s.
    _probe_since: float | None = field(default=None)

    @property
    def state(self) -> BreakerState:
        if self._open_until is None:
            return BreakerState.CLOSED
        if self.clock() < self._open_until:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def allows(self) -> bool:
        """Whether work may go to the channel now; in half-open, only one probe at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        now = self.clock()
        if self._probe_since is not None and now - self._probe_since < self.open_s:
            return False
        self._probe_since = now
        return True

    def would_allow(self) -> bool:
        """Like allows(), without taking the probe (the create path only asks)."""
        return self.state is not BreakerState.OPEN

    def retry_after_s(self) -> float:
        if self._open_until is None:
            return 0.0
        return max(0.0, self._open_until - self.clock())

    def record_success(self) -> None:
        self._failures = 0
        self._opened_for = 0.0
        self._open_until = None
        self._probe_since = None

    def record_failure(self) -> None:
        self._failures += 1
        if self.state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
            self.trip()

    def trip(self) -> None:
        """Open now: the channel itself is broken (or the half-open probe failed)."""
        self._opened_for = min(self.max_open_s, self._opened_for * 2 or self.open_s)
        self._open_until = self.clock() + self._opened_for
        self._probe_since = None
