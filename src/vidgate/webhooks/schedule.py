"""When a delivery is tried: the operator's delays (VIDGATE_WEBHOOK_RETRY_DELAYS), jittered."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta

JITTER = 0.1  # each delay is stretched or shrunk by up to 10 %, so retries do not arrive in step


def jittered(delay_s: float, rng: random.Random | None = None) -> timedelta:
    spread = (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return timedelta(seconds=delay_s * spread)


def first_attempt_at(
    created_at: datetime, delays: Sequence[float], rng: random.Random | None = None
) -> datetime:
    """The first delay applies to the first try (0 by default: at once)."""
    return created_at + jittered(delays[0], rng)


def next_attempt_at(
    now: datetime, *, attempts: int, delays: Sequence[float], rng: random.Random | None = None
) -> datetime | None:
    """After `attempts` failed tries, when to try again; None once every delay is used."""
    if attempts >= len(delays):
        return None
    return now + jittered(delays[attempts], rng)
