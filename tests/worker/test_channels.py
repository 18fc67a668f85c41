"""Channels: order (priority, weight), circuit breakers, per-provider caps and the failover
rules, driven through the real runner and database (SQLite and PostgreSQL) with scripted
in-memory providers."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from pathlib import Path

import pytest

from support import make_caller
from test_worker import Harness, finished
from vidgate.db.engine import Database
from vidgate.errors import UpstreamUnavailable
from vidgate.providers.base import (
    ChannelFault,
    JobState,
    JobStatus,
    Provider,
    SubmitUncertain,
    TechnicalError,
)
from vidgate.providers.breaker import BreakerState, CircuitBreaker
from vidgate.providers.catalogue import Catalogue
from vidgate.providers.memory import InMemoryProvider
from vidgate.providers.registry import ProviderRegistry
from vidgate.settings import Settings
from vidgate.storage.factory import build_file_store
from vidgate.tasks import repository
from vidgate.worker.schedule import poll_delay


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def unique(name: str) -> str:
    # Slot rows are per provider name, and PostgreSQL's test database is shared by the session.
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def channel_harness(
    db: Database,
    tmp_path: Path,
    *,
    primary: InMemoryProvider,
    backup: InMemoryProvider,
    channels: list[dict[str, object]] | None = None,
    threshold: int = 2,
) -> Harness:
    catalogue = Catalogue.from_dict(
        {
            "models": {
                "m": {
                    "price": {"base": 7},
                    "time_limit_seconds": 60,
                    "channels": channels or [{"provider": primary.name}, {"provider": backup.name}],
                }
            }
        }
    )
    providers: dict[str, Provider] = {primary.name: primary, backup.name: backup}
    return Harness(
        db=db,
        caller=await make_caller(db, credits=1000),
        primary=primary,
        backup=backup,
        registry=ProviderRegistry(
            catalogue, providers, new_breaker=lambda: CircuitBreaker(failure_threshold=threshold)
        ),
        store=build_file_store(Settings(data_dir=tmp_path)),
        tmp=tmp_path,
        catalogue=catalogue,
    )


@pytest.fixture
async def channels(db: Database, tmp_path: Path) -> Harness:
    return await channel_harness(
        db,
        tmp_path,
        primary=InMemoryProvider(name=unique("primary")),
        backup=InMemoryProvider(name=unique("backup")),
    )


async def slots(harness: Harness) -> dict[str, int]:
    counts = await harness.db.backend.run_read(repository.channel_in_flight)
    return {name: counts.get(name, 0) for name in (harness.primary.name, harness.backup.name)}


# -- failover -------------------------------------------------------------------------------


async def test_a_refusal_fails_over_and_gives_the_first_channels_slot_back(
    channels: Harness,
) -> None:
    channels.primary.submit_script.append(TechnicalError("503 busy"))
    task = await channels.step(await channels.create())
    assert (task.status, task.channel) == ("processing", channels.backup.name)
    assert await slots(channels) == {channels.primary.name: 0, channels.backup.name: 1}


async def test_a_channel_fault_opens_the_breaker_and_later_tasks_skip_that_channel(
    channels: Harness,
) -> None:
    channels.primary.submit_script.append(ChannelFault("402 out of credit upstream"))
    first = await channels.step(await channels.create())
    assert first.channel == channels.backup.name
    breaker = channels.registry.breaker(channels.primary.name)
    assert breaker is not None
    assert breaker.state is BreakerState.OPEN
    second = await channels.step(await channels.create())
    assert second.channel == channels.backup.name
    assert len(channels.primary.submitted) == 0  # not even asked the second time


async def test_a_lost_answer_is_asked_again_on_the_same_channel_only(channels: Harness) -> None:
    channels.primary.submit_script.extend(
        [SubmitUncertain("read timeout"), SubmitUncertain("connection reset")]
    )
    task_id = await channels.create()
    after_first = await channels.step(task_id)
    assert (after_first.status, after_first.channel) == ("pending", channels.primary.name)
    await channels.step(task_id)
    done = await channels.step(task_id)
    assert (done.status, done.channel) == ("processing", channels.primary.name)
    assert channels.backup.submitted == []  # never failed over
    assert [r.task_id for r in channels.primary.submitted] == [task_id]
    assert await slots(channels) == {channels.primary.name: 1, channels.backup.name: 0}


async def test_a_fault_after_a_lost_answer_still_does_not_fail_over(channels: Harness) -> None:
    channels.primary.submit_script.extend([SubmitUncertain("timeout"), ChannelFault("401")])
    task_id = await channels.create()
    await channels.step(task_id)
    task = await channels.step(task_id)
    assert (task.status, task.channel) == ("pending", channels.primary.name)
    assert channels.backup.submitted == []


async def test_polling_faults_open_the_breaker_and_a_healthy_poll_closes_it(
    db: Database, tmp_path: Path
) -> None:
    harness = await channel_harness(
        db,
        tmp_path,
        primary=InMemoryProvider(name=unique("primary")),
        backup=InMemoryProvider(name=unique("backup")),
        threshold=2,
    )
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, open_s=5, clock=clock)
    harness.registry.breakers[harness.primary.name] = breaker
    task_id = await harness.create()
    await harness.step(task_id)  # submitted to primary
    harness.primary.poll_script.extend(
        [TechnicalError("502"), TechnicalError("502"), JobStatus(state=JobState.RUNNING)]
    )
    await harness.step(task_id)
    await harness.step(task_id)
    assert breaker.state is BreakerState.OPEN
    clock.now += 6
    await harness.step(task_id)  # the half-open probe succeeds
    assert breaker.state is BreakerState.CLOSED


# -- caps: tasks wait their turn ------------------------------------------------------------


async def test_a_full_channel_makes_tasks_wait_their_turn_not_fail(
    db: Database, tmp_path: Path
) -> None:
    primary = InMemoryProvider(name=unique("capped"), max_concurrent=2)
    harness = await channel_harness(
        db,
        tmp_path,
        primary=primary,
        backup=InMemoryProvider(name=unique("unused")),
        channels=[{"provider": primary.name}],
    )
    ids = [await harness.create() for _ in range(3)]
    assert set(ids) <= set(await harness.claim())
    runner = harness.runner()
    for task_id in ids:
        await runner.run(task_id)
    after = [await harness.task(task_id) for task_id in ids]
    assert [t.status for t in after] == ["processing", "processing", "pending"]
    waiting = after[2]
    assert waiting.attempts == 0
    assert waiting.channel is None
    assert (await slots(harness))[primary.name] == 2

    primary.poll_script.append(finished(tmp_path / "out.mp4"))
    assert (await harness.step(ids[0])).status == "completed"
    assert (await slots(harness))[primary.name] == 1
    assert (await harness.step(ids[2])).status == "processing"
    assert (await slots(harness))[primary.name] == 2
    assert await harness.balance() == (1000 - 3 * 7, 1000 - 3 * 7)


async def test_slots_are_given_back_when_tasks_fail(channels: Harness) -> None:
    task_id = await channels.create()
    await channels.step(task_id)
    assert (await slots(channels))[channels.primary.name] == 1
    assert await channels.fail(task_id, "operator")
    assert (await slots(channels))[channels.primary.name] == 0


# -- every channel open: the create is refused, nothing charged -----------------------------


async def test_every_breaker_open_means_the_model_is_unavailable(channels: Harness) -> None:
    registry = channels.registry
    assert registry.unavailable_for("m") is None
    for name in (channels.primary.name, channels.backup.name):
        breaker = registry.breaker(name)
        assert breaker is not None
        breaker.trip()
    wait = registry.unavailable_for("m")
    assert wait is not None
    assert 0 < wait <= 30


async def test_the_gateway_answers_503_with_retry_after_when_every_channel_is_open(
    settings: Settings,
) -> None:
    from vidgate.gateway import Gateway

    gateway = Gateway.build(settings)
    try:
        sora = gateway.catalogue.get("sample")
        gateway.check_routable(sora)  # the sample renderer is healthy
        breaker = gateway.registry.breaker("sample")
        assert breaker is not None
        breaker.trip()
        with pytest.raises(UpstreamUnavailable) as refused:
            gateway.check_routable(sora)
        assert int(refused.value.headers["Retry-After"]) >= 1
    finally:
        await gateway.close()


# -- order ----------------------------------------------------------------------------------


def test_priority_first_then_weighted_shares() -> None:
    names = ["a", "b", "c"]
    catalogue = Catalogue.from_dict(
        {
            "models": {
                "m": {
                    "channels": [
                        {"provider": "a", "priority": 1, "weight": 3},
                        {"provider": "b", "priority": 1, "weight": 1},
                        {"provider": "c", "priority": 0},
                    ]
                }
            }
        }
    )
    providers: dict[str, Provider] = {n: InMemoryProvider(name=n) for n in names}
    registry = ProviderRegistry(catalogue, providers, rng=random.Random(7))
    orders = [tuple(r.channel.provider for r in registry.in_order("m")) for _ in range(4000)]
    assert all(order[0] == "c" for order in orders)
    seconds = Counter(order[1] for order in orders)
    assert 0.70 < seconds["a"] / len(orders) < 0.80  # weight 3 of 4


def test_listed_order_is_the_default_priority() -> None:
    catalogue = Catalogue.from_dict(
        {"models": {"m": {"channels": [{"provider": "x"}, {"provider": "y"}]}}}
    )
    providers: dict[str, Provider] = {n: InMemoryProvider(name=n) for n in ("x", "y")}
    registry = ProviderRegistry(catalogue, providers)
    assert all(
        [r.channel.provider for r in registry.in_order("m")] == ["x", "y"] for _ in range(50)
    )


# -- the breaker itself and the poll schedule -----------------------------------------------


def test_breaker_opens_probes_once_and_backs_off() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, open_s=10, max_open_s=25, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.allows()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allows()
    clock.now += 10
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allows()
    assert not breaker.allows()
    breaker.record_failure()  # the probe failed: open twice as long
    assert breaker.retry_after_s() == 20
    clock.now += 20
    assert breaker.allows()
    breaker.record_failure()
    assert breaker.retry_after_s() == 25  # capped
    clock.now += 25
    assert breaker.allows()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allows()
    assert breaker.allows()


def test_a_probe_that_never_reports_stops_blocking_after_a_while() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, open_s=10, clock=clock)
    breaker.trip()
    clock.now += 10
    assert breaker.allows()
    assert not breaker.allows()
    clock.now += 10
    assert breaker.allows()


def test_polls_back_off_with_age_and_are_jittered() -> None:
    young = [poll_delay(base_s=2, max_s=30, age_s=1) for _ in range(200)]
    old = [poll_delay(base_s=2, max_s=30, age_s=1000) for _ in range(200)]
    assert all(1.6 <= d <= 2.4 for d in young)
    assert all(24 <= d <= 36 for d in old)
    assert len(set(old)) > 100  # not in lockstep
    assert poll_delay(base_s=2, max_s=None, age_s=1000) == 2
