"""The worker loop's scheduling: it claims when there is room and work, and not otherwise.

A scripted claimer (the Claimer protocol) hands out task ids; the runner stand-in takes a
while per step and ends each task. The poll interval is far longer than the test, so whatever
happens in time happened because the loop looked by itself, not because a poll came round.
"""

import asyncio
from pathlib import Path

from conftest import sqlite_url
from vidgate.db import migrate
from vidgate.db.engine import open_database
from vidgate.worker.loop import Worker

POLL_S = 60.0
STEP_S = 0.05


class ScriptedClaimer:
    def __init__(self, due: list[str]) -> None:
        self.due = list(due)
        self.limits: list[int] = []  # one per claim the loop made

    def add(self, *task_ids: str) -> None:
        self.due.extend(task_ids)

    async def claim(self, *, owner: str, limit: int, lease_s: float) -> list[str]:
        if limit <= 0:
            return []
        self.limits.append(limit)
        await asyncio.sleep(0.01)  # a claim is a round trip: steps may end meanwhile
        taken, self.due = self.due[:limit], self.due[limit:]
        return taken


class SteppingRunner:
    owner = "w1"

    def __init__(self, until: int) -> None:
        self.ran: list[str] = []
        self.until = until
        self.all_ran = asyncio.Event()

    async def run(self, task_id: str) -> None:
        await asyncio.sleep(STEP_S)
        self.ran.append(task_id)
        if len(self.ran) >= self.until:
            self.all_ran.set()
        return None  # ended


async def run_worker(tmp_path: Path, claimer: ScriptedClaimer, until: int) -> SteppingRunner:
    url = sqlite_url(tmp_path)
    migrate.upgrade(url)  # the loop's overdue sweep reads the (empty) task table
    db = open_database(url)
    runner = SteppingRunner(until)
    worker = Worker(
        db=db,
        claimer=claimer,
        runner=runner,  # type: ignore[arg-type]
        concurrency=2,
        poll_interval_s=POLL_S,
        lease_s=30,
    )
    worker.start()
    try:
        await asyncio.wait_for(runner.all_ran.wait(), timeout=5)
        await asyncio.sleep(0.3)  # room for any claim still to come
    finally:
        await worker.stop()
        await db.dispose()
    return runner


async def test_a_backlog_runs_through_freed_slots_without_waiting_for_the_poll(
    tmp_path: Path,
) -> None:
    claimer = ScriptedClaimer([f"t{n}" for n in range(7)])
    runner = await run_worker(tmp_path, claimer, until=7)
    assert sorted(runner.ran) == sorted(f"t{n}" for n in range(7))
    assert claimer.due == []


async def test_one_task_costs_one_claim(tmp_path: Path) -> None:
    # The claim that found one task with room for two took all there was: no second look
    # right after it, and none when the step ends with slots to spare.
    claimer = ScriptedClaimer(["t0"])
    runner = await run_worker(tmp_path, claimer, until=1)
    assert runner.ran == ["t0"]
    assert claimer.limits == [2]
