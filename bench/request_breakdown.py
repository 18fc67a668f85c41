"""Where a status poll and a create spend their time, in-process (no sockets, no load generator).

Builds the gateway's app on a real SQLite data dir (one completed task rendered by a real
`vidgate serve` first), then times, on a uvloop loop, the pieces of the request paths:
wall time and CPU time of the event-loop thread per call (the aiosqlite threads do the SQLite
work itself; the loop thread is the one a single-process server saturates). It also counts the
aiosqlite round trips (one thread hop each) per request and lists the SQL statements sent.

    .venv/bin/python bench/request_breakdown.py [--calls 500]

It complements gateway_bench.py: that one says how far the gateway is from a bare endpoint,
this one says which part of the path the difference is in. Not run by `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import httpx
from sqlalchemy import event, select, text

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent / "tests"))
sys.path.insert(0, str(BENCH_DIR))

import bare_app  # noqa: E402
from gateway_bench import CREATE_BODY, THROUGHPUT_ENV, time_to_completed  # noqa: E402

from support import GatewayProcess  # noqa: E402
from vidgate.api.apimall import presenters  # noqa: E402
from vidgate.api.envelope import Envelope  # noqa: E402
from vidgate.app import create_app  # noqa: E402
from vidgate.db.models import ApiKey  # noqa: E402
from vidgate.gateway import Gateway  # noqa: E402
from vidgate.keys.service import lookup  # noqa: E402
from vidgate.settings import Settings  # noqa: E402
from vidgate.tasks import service  # noqa: E402

Step = Callable[[], Awaitable[object]]


class HopCounter:
    """Counts aiosqlite round trips by wrapping its (private) per-call dispatcher."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._original: Any = getattr(aiosqlite.Connection, "_execute", None)

    def install(self) -> bool:
        original = self._original
        if original is None:
            return False
        calls = self.calls

        async def counted(conn: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
            calls[getattr(fn, "__name__", "call")] += 1
            return await original(conn, fn, *args, **kwargs)

        setattr(aiosqlite.Connection, "_execute", counted)  # noqa: B010
        return True

    def uninstall(self) -> None:
        if self._original is not None:
            setattr(aiosqlite.Connection, "_execute", self._original)  # noqa: B010


ROUNDS = 3


async def measure(step: Step, calls: int) -> tuple[float, float]:
    """Mean wall and loop-thread CPU µs per call over `calls` calls."""
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(calls):
        await step()
    return (
        (time.perf_counter() - wall) / calls * 1e6,
        (time.thread_time() - cpu) / calls * 1e6,
    )


async def timed(label: str, step: Step, calls: int, rows: list[tuple[str, float, float]]) -> None:
    """Best of ROUNDS rounds of calls/ROUNDS calls each (other processes on a small machine only
    ever add time, so the fastest round is the least disturbed one)."""
    for _ in range(min(50, calls)):
        await step()
    per_round = max(10, calls // ROUNDS)
    results = [await measure(step, per_round) for _ in range(ROUNDS)]
    rows.append((label, min(r[0] for r in results), min(r[1] for r in results)))


async def breakdown(data_dir: Path, api_key: str, task_id: str, calls: int) -> str:
    settings = Settings(
        data_dir=data_dir,
        worker_enabled=False,
        rate_limit_per_second=100_000,
        rate_limit_burst=100_000,
        max_concurrent_jobs=1_000_000,
    )
    gateway = Gateway.build(settings)
    db = gateway.db
    app = create_app(settings, gateway=gateway)
    headers = {"Authorization": f"Bearer {api_key}"}
    key_hash = hashlib.sha256(api_key.encode()).hexdigest()
    statements: list[str] = []

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def _record(*args: Any) -> None:
        statements.append(" ".join(str(args[2]).split()[:4]))

    rows: list[tuple[str, float, float]] = []
    raw = await aiosqlite.connect(str(data_dir / "vidgate.db"))
    blocking = sqlite3.connect(str(data_dir / "vidgate.db"))
    transport_g = httpx.ASGITransport(app=app)
    transport_b = httpx.ASGITransport(app=bare_app.app)
    try:
        async with (
            httpx.AsyncClient(transport=transport_g, base_url="http://gw") as gw,
            httpx.AsyncClient(transport=transport_b, base_url="http://bare") as bare,
        ):

            async def gw_status() -> object:
                response = await gw.get(f"/api/v1/videos/{task_id}", headers=headers)
                assert response.status_code == 200, response.text
                return response

            async def gw_create() -> object:
                response = await gw.post(
                    "/api/v1/videos/generate", headers=headers, json=CREATE_BODY
                )
                assert response.status_code == 200, response.text
                return response

            async def auth() -> object:
                return await lookup(db, key_hash)

            async def load() -> object:
                return await service.get_task(db, account_id=1, task_id=task_id)

            task = await service.get_task(db, account_id=1, task_id=task_id)

            async def view() -> object:
                data = presenters.task_view(task, gateway.url_for)
                return Envelope(data=data, request_id="req_x").model_dump_json()

            key_query = select(ApiKey).where(ApiKey.key_hash == key_hash)

            async def orm_select() -> object:
                async with db.read() as session:
                    return await session.scalar(key_query)

            async def core_select() -> object:
                async with db.engine.connect() as conn:
                    return (await conn.execute(text("SELECT 1"))).first()

            sql = "SELECT id, account_id, status FROM api_keys WHERE key_hash = ?"

            async def raw_select() -> object:
                async with raw.execute(sql, (key_hash,)) as cursor:
                    return await cursor.fetchone()

            async def inline_select() -> object:
                return blocking.execute(sql, (key_hash,)).fetchone()

            steps: list[tuple[str, Step, int]] = [
                (
                    "bare app: GET /bare/status (framework floor)",
                    lambda: bare.get("/bare/status"),
                    1,
                ),
                ("gateway: GET /healthz (middleware, no DB)", lambda: gw.get("/healthz"), 1),
                ("gateway: GET /api/v1/videos/{id} (whole poll)", gw_status, 1),
                ("  keys.lookup(): a principal-cache miss (key read)", auth, 1),
                ("  service.get_task(): the backend's hot read", load, 1),
                ("  presenters.task_view() + Envelope JSON (no DB)", view, 1),
                (
                    "bare app: POST /bare/create",
                    lambda: bare.post("/bare/create", json=CREATE_BODY),
                    1,
                ),
                ("gateway: POST /api/v1/videos/generate (whole create)", gw_create, 4),
                ("reference: db.read() ORM SELECT api_keys", orm_select, 1),
                ("reference: engine.connect() Core SELECT 1", core_select, 1),
                ("reference: raw aiosqlite SELECT (one connection)", raw_select, 1),
                ("reference: sqlite3 SELECT in the loop thread", inline_select, 1),
            ]
            for label, step, divisor in steps:
                await timed(label, step, max(20, calls // divisor), rows)

            hops = HopCounter()
            hop_lines: list[str] = []
            if hops.install():
                try:
                    for label, step in (("status poll", gw_status), ("create", gw_create)):
                        await step()
                        hops.calls.clear()
                        statements.clear()
                        await step()
                        detail = ", ".join(f"{k} {v}" for k, v in sorted(hops.calls.items()))
                        hop_lines.append(
                            f"- {label}: {sum(hops.calls.values())} aiosqlite round trips "
                            f"({detail}); SQL: {'; '.join(statements)}"
                        )
                finally:
                    hops.uninstall()

    finally:
        await raw.close()
        blocking.close()
        await db.dispose()

    lines = [
        "| Step (in-process, per call) | Wall µs | Loop-thread CPU µs |",
        "|---|--:|--:|",
        *(f"| {label} | {wall:,.0f} | {cpu:,.0f} |" for label, wall, cpu in rows),
        "",
        *hop_lines,
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="In-process cost breakdown of poll and create")
    parser.add_argument("--calls", type=int, default=500, help="timed calls per step")
    args = parser.parse_args(argv)
    if not 20 <= args.calls <= 20_000:
        parser.error("--calls must be 20..20000")
    with tempfile.TemporaryDirectory(prefix="vidgate-breakdown-") as tmp:
        data_dir = Path(tmp) / "gateway"
        server = GatewayProcess(data_dir, embedded_defaults=True, env=THROUGHPUT_ENV)
        try:
            server.start()
            body = {**CREATE_BODY, "duration": "1", "resolution": "240p"}
            _elapsed, task_id, _url = time_to_completed(server, body)
        finally:
            server.stop()
        assert server.api_key is not None
        try:
            import uvloop

            report = uvloop.run(breakdown(data_dir, server.api_key, task_id, args.calls))
        except ImportError:
            report = asyncio.run(breakdown(data_dir, server.api_key, task_id, args.calls))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
