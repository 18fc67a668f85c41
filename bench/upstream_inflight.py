"""Many tasks in flight at once against a slow upstream: what the worker costs while it waits.

One run per configuration (worker concurrency x upstream answer time), one table (DESIGN.md,
"Performance, measured, not guessed"):

- A fake API Mall upstream runs in its own process (Starlette under uvicorn on 127.0.0.1, this
  file with --serve-upstream), so its CPU never shows up in the worker's figures. It takes
  creates (POST /api/v1/videos/generate, Bearer key, Idempotency-Key) and answers every poll
  of a task with "processing", its progress climbing to 99 over --hold-s; it never answers
  "completed", so every task is still in flight when the run stops. It counts what it
  receives and reports the counts and timestamps on GET /stats.
- The worker runs in this process: Gateway.build(settings) on a temporary data dir (embedded
  SQLite), a providers file naming `apimall` at the fake upstream (poll_interval_s = 5,
  max_poll_interval_s = 30), `await gateway.start()`. The built-in `sora2` model then routes to
  `apimall`. The tasks are created through vidgate.tasks.service.create_task, the API's create
  path without the HTTP layer (validation, routing check, in-flight count, insert, debit).
- Measured in this process: the event loop's lag (a coroutine sleeps 10 ms and records how
  late it wakes), RSS from /proc/self/status before the creates and with every task in flight,
  and CPU. Measured by the upstream: creates (exactly one per task), polls per second, the gap
  between two polls of one task.

--upstream-latency-ms makes the upstream wait before each answer, as a real one does (default
0: at once). Each --concurrency and --upstream-latency-ms pair is one configuration, run on a
fresh data dir against a fresh upstream process.

Bounded: at most 5,000 tasks and 150 s of measuring per configuration, 4 configurations;
only 127.0.0.1 is used; the upstream process is stopped at the end (and stops itself after
a deadline should this process die first).

    .venv/bin/python bench/upstream_inflight.py [--tasks 1000] [--hold-s 30]
        [--concurrency 4 [--concurrency 32]] [--upstream-latency-ms 0 [...]]
        [--duration-s 40] [--loop asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import json
import logging
import math
import os
import platform
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_PATH = BENCH_DIR / "results" / "upstream_inflight.md"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
KEY_ENV = "VIDGATE_BENCH_APIMALL_KEY"
MODEL = "sora2"
POLL_INTERVAL_S = 5.0
MAX_POLL_INTERVAL_S = 30.0
LAG_SLEEP_S = 0.010
RSS_SAMPLE_S = 1.0
STATS_POLL_S = 0.25
MAX_TASKS = 5_000
MAX_DURATION_S = 150.0
MAX_CONFIGS = 4
SCHEDULE_RUNS = 20


# -- the fake upstream: its own process -------------------------------------------------------


def upstream_app(*, api_key: str, hold_s: float, latency_s: float = 0.0) -> Any:
    """API Mall's create and poll, each answered after `latency_s` (0: at once), with counters.
    One event loop, no locks."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    state: dict[str, Any] = {
        "by_key": {},  # Idempotency-Key -> upstream task id
        "created_at": {},  # upstream task id -> monotonic time of its create
        "last_poll": {},  # upstream task id -> monotonic time of its last poll
        "create_times": [],
        "poll_times": [],
        "gaps": [],  # seconds between two polls of one task
        "posts": 0,
        "replays": 0,
        "unauthorized": 0,
        "unknown_polls": 0,
    }
    expected = f"Bearer {api_key}"

    def refused() -> JSONResponse:
        state["unauthorized"] += 1
        error = {"code": "unauthorized", "message": "invalid API key"}
        return JSONResponse({"success": False, "error": error}, status_code=401)

    async def generate(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != expected:
            return refused()
        state["posts"] += 1
        body = await request.json()
        if latency_s:
            await asyncio.sleep(latency_s)
        key = request.headers.get("idempotency-key") or secrets.token_hex(8)
        task_id = state["by_key"].get(key)
        if task_id is None:
            task_id = f"up_{len(state['by_key']) + 1:06d}"
            now = time.monotonic()
            state["by_key"][key] = task_id
            state["created_at"][task_id] = now
            state["create_times"].append(now)
        else:
            state["replays"] += 1
        data = {"task_id": task_id, "status": "pending", "model": body.get("model")}
        return JSONResponse({"success": True, "data": data, "request_id": f"req_{task_id}"})

    async def poll(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != expected:
            return refused()
        task_id = request.path_params["task_id"]
        created = state["created_at"].get(task_id)
        if created is None:
            state["unknown_polls"] += 1
            error = {"code": "not_found", "message": "no such task"}
            return JSONResponse({"success": False, "error": error}, status_code=404)
        if latency_s:
            await asyncio.sleep(latency_s)
        now = time.monotonic()
        previous = state["last_poll"].get(task_id)
        if previous is not None:
            state["gaps"].append(now - previous)
        state["last_poll"][task_id] = now
        state["poll_times"].append(now)
        # "processing" for hold_s after the create, progress climbing; then still processing at
        # 99 %: the run stops with every task in flight.
        progress = min(99, int(100 * (now - created) / hold_s))
        data = {"task_id": task_id, "status": "processing", "progress": progress}
        return JSONResponse({"success": True, "data": data, "request_id": f"req_{task_id}"})

    async def stats(request: Request) -> JSONResponse:
        body: dict[str, Any] = {
            "creates": len(state["create_times"]),
            "posts": state["posts"],
            "polls": len(state["poll_times"]),
            "replays": state["replays"],
            "unauthorized": state["unauthorized"],
            "unknown_polls": state["unknown_polls"],
        }
        if request.query_params.get("full"):
            body |= {
                "create_times": state["create_times"],
                "poll_times": state["poll_times"],
                "gaps": state["gaps"],
            }
        return JSONResponse(body)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/api/v1/videos/generate", generate, methods=["POST"]),
            Route("/api/v1/videos/{task_id}", poll, methods=["GET"]),
            Route("/stats", stats, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def serve_upstream(port: int, hold_s: float, latency_s: float, lifetime_s: float) -> None:
    import uvicorn

    api_key = os.environ[KEY_ENV]
    config = uvicorn.Config(
        upstream_app(api_key=api_key, hold_s=hold_s, latency_s=latency_s),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        async def deadline() -> None:  # never outlive a bench that died without stopping us
            await asyncio.sleep(lifetime_s)
            server.should_exit = True

        stopper = asyncio.create_task(deadline())
        try:
            await server.serve()
        finally:
            stopper.cancel()

    asyncio.run(run())


class UpstreamProcess:
    def __init__(
        self, *, hold_s: float, latency_s: float, lifetime_s: float, log_path: Path, api_key: str
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.hold_s = hold_s
        self.latency_s = latency_s
        self.lifetime_s = lifetime_s
        self.log_path = log_path
        self.api_key = api_key
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> UpstreamProcess:
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve-upstream",
            str(self.port),
            "--hold-s",
            str(self.hold_s),
            "--upstream-latency-ms",
            str(self.latency_s * 1000),
            "--lifetime-s",
            str(self.lifetime_s),
        ]
        env = {**os.environ, KEY_ENV: self.api_key}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"upstream exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("upstream did not become ready")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stats(self, *, full: bool = False) -> dict[str, Any]:
        url = f"{self.base_url}/stats" + ("?full=1" if full else "")
        response = httpx.get(url, timeout=30)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


# -- measuring in this process ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread: loop and aiosqlite's
    return usage.ru_utime + usage.ru_stime


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class LagSampler:
    """Sleeps LAG_SLEEP_S again and again and records how late each wake-up is."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (monotonic time woken, lag in s)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(LAG_SLEEP_S)
            woken = time.monotonic()
            self.samples.append((woken, max(0.0, woken - before - LAG_SLEEP_S)))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def between(self, start: float, end: float) -> list[float]:
        return [lag for woken, lag in self.samples if start <= woken < end]


class GcWatch:
    """Every garbage collection of this process: when it ended, its generation, its length."""

    def __init__(self) -> None:
        self.collections: list[tuple[float, int, float]] = []
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        now = time.monotonic()
        if phase == "start":
            self._started = now
        else:
            self.collections.append((now, info["generation"], now - self._started))

    def start(self) -> None:
        gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def between(self, start: float, end: float) -> list[tuple[int, float]]:
        return [(gen, length) for at, gen, length in self.collections if start <= at < end]


class RssSampler:
    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic(), rss_kib()))
            await asyncio.sleep(RSS_SAMPLE_S)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def nearest_rank(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1))
    return ordered[index]


def scheduled_polls(create_times: list[float], start: float, end: float) -> float:
    """Polls in [start, end) if every task were polled exactly when the worker's schedule says
    (its own poll_delay, jitter included; SCHEDULE_RUNS simulated runs averaged) after its actual
    upstream create: what the worker would send with no queueing of its own."""
    from vidgate.worker import runner

    poll_delay = runner.poll_delay  # type: ignore[attr-defined]  # what the runner calls

    count = 0
    for _run in range(SCHEDULE_RUNS):
        for submitted in create_times:
            at = submitted
            while True:
                at += poll_delay(
                    base_s=POLL_INTERVAL_S, max_s=MAX_POLL_INTERVAL_S, age_s=at - submitted
                )
                if at >= end:
                    break
                if at >= start:
                    count += 1
    return count / SCHEDULE_RUNS


# -- one configuration ------------------------------------------------------------------------


@dataclass
class RunResult:
    concurrency: int
    latency_ms: float  # the upstream's delay before each answer
    tasks: int
    duration_s: float
    creates_s: float  # the create loop: first create -> last create returned
    dispatch_s: float | None  # first create -> the upstream's tasks-th create
    upstream: dict[str, Any]
    steady: tuple[float, float]  # the window, seconds after the first create
    steady_polls: int
    steady_scheduled: float
    per_second: list[int]  # polls per whole second of the steady window
    lag_dispatch_ms: list[float]
    lag_steady_ms: list[float]
    lag_all_ms: list[float]
    lag_worst: list[tuple[float, float]]  # (s after the first create, ms), the longest lags
    gc_dispatch: list[tuple[int, float]]  # (generation, s) of each collection
    gc_steady: list[tuple[int, float]]
    rss_before_kib: int
    rss_dispatched_kib: int | None
    rss_end_kib: int
    rss_peak_kib: int
    worker_cpu_share: float  # steady window, share of one core
    upstream_cpu_share: float
    statuses: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def write_providers_file(path: Path, base_url: str) -> None:
    path.write_text(
        "[providers.apimall]\n"
        'kind = "apimall"\n'
        f'base_url = "{base_url}"\n'
        f'api_key_env = "{KEY_ENV}"\n'
        f"poll_interval_s = {POLL_INTERVAL_S:g}\n"
        f"max_poll_interval_s = {MAX_POLL_INTERVAL_S:g}\n"
    )


async def measure(
    args: argparse.Namespace,
    concurrency: int,
    latency_ms: float,
    scratch: Path,
    upstream: UpstreamProcess,
) -> RunResult:
    from sqlalchemy import func, select

    from vidgate.billing import service as billing
    from vidgate.db.models import VideoTask
    from vidgate.gateway import Gateway
    from vidgate.keys import service as keys
    from vidgate.keys.service import Principal
    from vidgate.settings import Settings
    from vidgate.tasks import service
    from vidgate.tasks.commands import CreateTask

    settings = Settings(
        data_dir=scratch / "data",
        database_url=None,
        storage_url=None,
        catalogue_path=None,
        moderation_path=None,
        providers_path=scratch / "providers.toml",
        worker_enabled=True,
        worker_concurrency=concurrency,
        worker_queues=[],
        worker_models=[],
        log_level="WARNING",
    )
    gateway = Gateway.build(settings)
    notes: list[str] = []
    try:
        routes = gateway.registry.routes_for(MODEL)
        if not routes or routes[0].channel.provider != "apimall":
            raise RuntimeError(f"{MODEL} does not route to apimall here: {routes}")
        async with gateway.db.write() as session:
            account = await billing.create_account(session, name="bench", credits=args.tasks * 100)
            key, _plaintext = await keys.create_key(session, account_id=account.id, title="bench")
        principal = Principal(
            key_id=key.id,
            account_id=account.id,
            rate_limit_per_second=None,
            max_concurrent_jobs=None,
        )
        await gateway.start()
        if args.gc_freeze:
            gc.collect()
            gc.freeze()  # what exists now is never traversed by a collection again
        lag, rss, gcs = LagSampler(), RssSampler(), GcWatch()
        lag.start()
        gcs.start()
        rss.start()
        gc.collect()
        await asyncio.sleep(1.0)  # the worker's first empty claims, the samplers settled
        rss_before = rss_kib()

        first_create = time.monotonic()
        end_at = first_create + args.duration_s
        for index in range(args.tasks):
            await service.create_task(
                gateway.db,
                principal=principal,
                command=CreateTask(
                    surface="apimall",
                    model=MODEL,
                    prompt=f"a lighthouse at dusk, in-flight bench task {index}",
                ),
                request_id=f"req_bench_{index}",
                idempotency_key=None,
                catalogue=gateway.catalogue,
                routing=gateway,
                default_max_concurrent_jobs=args.tasks * 2,
            )
            gateway.wake_worker()  # as the API's create does
            # A create never waits on SQLite here (its write runs on the loop thread when the
            # lock is free), so let the loop run between two, as between two API requests.
            await asyncio.sleep(0)
        creates_s = time.monotonic() - first_create

        # Until the upstream has every task (it is asked for a count only, a few times a second).
        dispatched_seen: float | None = None
        rss_dispatched: int | None = None
        async with httpx.AsyncClient(base_url=upstream.base_url, timeout=10) as client:
            while time.monotonic() < end_at:
                response = await client.get("/stats")
                if response.json()["creates"] >= args.tasks:
                    dispatched_seen = time.monotonic()
                    rss_dispatched = rss_kib()
                    break
                await asyncio.sleep(STATS_POLL_S)
        if dispatched_seen is None:
            notes.append(f"not every task reached the upstream within {args.duration_s:g} s")

        cpu_mark: tuple[float, float, float] | None = None
        while (left := end_at - time.monotonic()) > 0:
            steady_start = (dispatched_seen or end_at) + POLL_INTERVAL_S * 1.2
            if cpu_mark is None and time.monotonic() >= steady_start:
                cpu_mark = (time.monotonic(), self_cpu_s(), process_cpu_s(upstream.pid))
            await asyncio.sleep(min(left, 0.2))
        stopped = time.monotonic()
        rss_end = rss_kib()
        if cpu_mark is not None:
            wall = stopped - cpu_mark[0]
            worker_cpu = (self_cpu_s() - cpu_mark[1]) / wall
            upstream_cpu = (process_cpu_s(upstream.pid) - cpu_mark[2]) / wall
        else:
            worker_cpu = upstream_cpu = float("nan")
        await lag.stop()
        await rss.stop()
        gcs.stop()

        async with gateway.db.read() as session:
            rows = await session.execute(
                select(VideoTask.status, func.count()).group_by(VideoTask.status)
            )
            statuses = {str(status): int(count) for status, count in rows.all()}
    finally:
        await gateway.close()

    stats = upstream.stats(full=True)
    create_times: list[float] = stats["create_times"]
    dispatch_s = None
    if len(create_times) >= args.tasks:
        dispatch_s = sorted(create_times)[args.tasks - 1] - first_create
        window_start = sorted(create_times)[args.tasks - 1] + POLL_INTERVAL_S * 1.2
    else:
        window_start = stopped
    poll_times: list[float] = stats["poll_times"]
    steady_polls = sum(1 for t in poll_times if window_start <= t < stopped)
    seconds = int(stopped - window_start)
    buckets = Counter(int(t - window_start) for t in poll_times if window_start <= t < stopped)
    per_second = [buckets.get(second, 0) for second in range(seconds)]
    dispatch_end = window_start - POLL_INTERVAL_S * 1.2 if dispatch_s is not None else stopped
    return RunResult(
        concurrency=concurrency,
        latency_ms=latency_ms,
        tasks=args.tasks,
        duration_s=stopped - first_create,
        creates_s=creates_s,
        dispatch_s=dispatch_s,
        upstream=stats,
        steady=(window_start - first_create, stopped - first_create),
        steady_polls=steady_polls,
        steady_scheduled=scheduled_polls(create_times, window_start, stopped),
        per_second=per_second,
        lag_dispatch_ms=[lag_s * 1000 for lag_s in lag.between(first_create, dispatch_end)],
        lag_steady_ms=[lag_s * 1000 for lag_s in lag.between(window_start, stopped)],
        lag_all_ms=[lag_s * 1000 for lag_s in lag.between(first_create, stopped)],
        lag_worst=sorted(
            ((woken - first_create, lag_s * 1000) for woken, lag_s in lag.samples),
            key=lambda item: -item[1],
        )[:3],
        gc_dispatch=gcs.between(first_create, dispatch_end),
        gc_steady=gcs.between(window_start, stopped),
        rss_before_kib=rss_before,
        rss_dispatched_kib=rss_dispatched,
        rss_end_kib=rss_end,
        rss_peak_kib=max([rss_end, *(kib for _t, kib in rss.samples)]),
        worker_cpu_share=worker_cpu,
        upstream_cpu_share=upstream_cpu,
        statuses=statuses,
        notes=notes,
    )


def run_in_child(
    args: argparse.Namespace, concurrency: int, latency_ms: float, scratch: Path
) -> RunResult:
    """One configuration in a fresh interpreter, so that no run's RSS starts where another's
    left the allocator."""
    scratch.mkdir(parents=True)
    result_path = scratch / "result.json"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--tasks",
        str(args.tasks),
        "--hold-s",
        str(args.hold_s),
        "--duration-s",
        str(args.duration_s),
        "--concurrency",
        str(concurrency),
        "--upstream-latency-ms",
        str(latency_ms),
        "--loop",
        args.loop,
        "--result-json",
        str(result_path),
    ]
    if args.gc_freeze:
        command.append("--gc-freeze")
    subprocess.run(command, timeout=args.duration_s + 240, check=True)
    return RunResult(**json.loads(result_path.read_text()))


def run_config(
    args: argparse.Namespace, concurrency: int, latency_ms: float, scratch: Path
) -> RunResult:
    from vidgate.db import migrate

    scratch.mkdir(parents=True)
    api_key = f"bench-{secrets.token_hex(16)}"
    os.environ[KEY_ENV] = api_key  # the providers file names this variable
    upstream = UpstreamProcess(
        hold_s=args.hold_s,
        latency_s=latency_ms / 1000,
        lifetime_s=args.duration_s + 180,
        log_path=scratch / "upstream.log",
        api_key=api_key,
    )
    try:
        upstream.start()
        write_providers_file(scratch / "providers.toml", upstream.base_url)
        (scratch / "data").mkdir()
        url = f"sqlite+aiosqlite:///{(scratch / 'data' / 'vidgate.db').resolve()}"
        migrate.upgrade(url)
        coroutine = asyncio.wait_for(
            measure(args, concurrency, latency_ms, scratch, upstream), timeout=args.duration_s + 90
        )
        if args.loop == "uvloop":
            import uvloop

            return uvloop.run(coroutine)
        return asyncio.run(coroutine)
    finally:
        upstream.stop()


# -- report -----------------------------------------------------------------------------------


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_line() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"- Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}"


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None or value != value:  # None or NaN
        return "n/a"
    return f"{value:,.{digits}f}"


def lag_cell(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (
        f"{nearest_rank(values, 0.5):.2f} / {nearest_rank(values, 0.99):.2f} / "
        f"{max(values):.1f} ({len(values):,} samples)"
    )


def gc_cell(collections: list[tuple[int, float]]) -> str:
    counts = Counter(gen for gen, _length in collections)
    longest = max((length for _gen, length in collections), default=0.0)
    return f"{counts[0]} / {counts[1]} / {counts[2]}, {longest * 1000:.1f}"


def rows_for(result: RunResult, goal_kb: float) -> list[tuple[str, str]]:
    up = result.upstream
    window = result.steady[1] - result.steady[0]
    measured = result.steady_polls / window if window > 0 else float("nan")
    scheduled = result.steady_scheduled / window if window > 0 else float("nan")
    share = result.steady_polls / result.steady_scheduled if result.steady_scheduled else 0.0
    gaps: list[float] = up["gaps"]
    growth_bytes = (result.rss_end_kib - result.rss_before_kib) * 1024 / result.tasks
    peak_bytes = (result.rss_peak_kib - result.rss_before_kib) * 1024 / result.tasks
    in_flight = sum(
        count for status, count in result.statuses.items() if status in ("pending", "processing")
    )
    statuses = ", ".join(f"{status} {count:,}" for status, count in sorted(result.statuses.items()))
    mib = 1024
    return [
        (
            "Upstream creates received (distinct Idempotency-Keys / POSTs)",
            f"{up['creates']:,} / {up['posts']:,}"
            + (" ok" if up["creates"] == up["posts"] == result.tasks else " **MISMATCH**"),
        ),
        ("Creates through service.create_task, s (all tasks)", fmt(result.creates_s, 2)),
        ("Dispatch: first create -> last upstream create, s", fmt(result.dispatch_s, 2)),
        ("Upstream polls, total (whole run)", f"{up['polls']:,}"),
        (
            "Steady window, s after the first create",
            f"{result.steady[0]:.1f} - {result.steady[1]:.1f}",
        ),
        ("Polls/s in the steady window, measured", fmt(measured, 1)),
        ("Polls/s the poll schedule asks for (simulated)", fmt(scheduled, 1)),
        ("Measured / scheduled", f"{share:.2f}" + (" (keeps up)" if share >= 0.95 else "")),
        (
            "Polls per second, min / max of the window's seconds",
            f"{min(result.per_second, default=0):,} / {max(result.per_second, default=0):,}",
        ),
        (
            "Gap between two polls of one task, p50 / p99 / max s",
            f"{fmt(nearest_rank(gaps, 0.5), 2)} / {fmt(nearest_rank(gaps, 0.99), 2)} / "
            f"{fmt(max(gaps, default=None), 2)}",
        ),
        ("Loop lag p50 / p99 / max ms, creates + dispatch", lag_cell(result.lag_dispatch_ms)),
        ("Loop lag p50 / p99 / max ms, steady window", lag_cell(result.lag_steady_ms)),
        (
            "Three longest lags, ms (at s after the first create)",
            ", ".join(f"{ms:.0f} ({at:.1f})" for at, ms in result.lag_worst),
        ),
        ("GC runs, creates + dispatch: gen 0/1/2, longest ms", gc_cell(result.gc_dispatch)),
        ("GC runs, steady window: gen 0/1/2, longest ms", gc_cell(result.gc_steady)),
        ("RSS before the creates, MiB", fmt(result.rss_before_kib / mib, 1)),
        (
            "RSS when the last task reached the upstream, MiB",
            fmt(None if result.rss_dispatched_kib is None else result.rss_dispatched_kib / mib, 1),
        ),
        (
            "RSS at the stop (all tasks in flight) / peak, MiB",
            f"{result.rss_end_kib / mib:,.1f} / {result.rss_peak_kib / mib:,.1f}",
        ),
        (
            f"RSS growth per in-flight task, KB (goal < {goal_kb:g})",
            f"{growth_bytes / 1000:.1f} (peak {peak_bytes / 1000:.1f})"
            + (" met" if peak_bytes / 1000 < goal_kb else " **not met**"),
        ),
        ("Worker process CPU in the steady window, cores", fmt(result.worker_cpu_share, 2)),
        ("Upstream process CPU in the steady window, cores", fmt(result.upstream_cpu_share, 2)),
        (
            "Our tasks at the stop",
            f"{statuses} ({in_flight:,} in flight)",
        ),
        (
            "Upstream refusals (401 / 404) and replays",
            f"{up['unauthorized']} / {up['unknown_polls']} / {up['replays']}",
        ),
    ]


def render_table(args: argparse.Namespace, results: list[RunResult], started: datetime) -> str:
    command = "bench/upstream_inflight.py " + " ".join(args.argv)
    first = results[0]
    lines = [
        "# Upstream in flight: many tasks against a slow loopback upstream",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC with `{command.strip()}`.",
        "",
        machine_line(),
        f"- Python {platform.python_version()}, event loop {args.loop} in the worker's process"
        f" ({'as `vidgate worker` runs' if args.loop == 'asyncio' else 'as `vidgate serve`'});"
        f" SQLAlchemy {version('sqlalchemy')}, aiosqlite {version('aiosqlite')},"
        f" httpx {version('httpx')}; upstream: Starlette {version('starlette')} under"
        f" uvicorn {version('uvicorn')} in its own process; each configuration in a fresh"
        " interpreter and data dir"
        + ("; gc.freeze() once the gateway had started (an experiment)" if args.gc_freeze else ""),
        f"- {first.tasks:,} `{MODEL}` tasks created through `vidgate.tasks.service.create_task`"
        " (the API's create path without HTTP) in the worker's process, one after another;"
        " worker: `Gateway.build` + `start()` on embedded SQLite in a temporary data dir",
        f"- Providers file: `[providers.apimall]`, kind apimall, poll_interval_s ="
        f" {POLL_INTERVAL_S:g}, max_poll_interval_s = {MAX_POLL_INTERVAL_S:g}, no max_concurrent;"
        " polls back off with the job's age (`poll_delay`: a quarter of the job's age, between"
        " the two, +-20 % jitter)",
        "- Upstream: answers each request after the column's upstream latency (0: at once);"
        " answers every poll `processing`, progress climbing to 99 over"
        f" {args.hold_s:g} s after the create, and never `completed`: the run stops"
        f" {args.duration_s:g} s after the first create with every task still in flight",
        "- Steady window: from 6 s after the last upstream create (the first poll interval"
        " with its largest jitter: every task has been polled once) to the stop",
        "- Scheduled polls: what the worker's own `poll_delay` asks for, from the actual upstream"
        f" create times ({SCHEDULE_RUNS} simulated runs averaged): a worker that never queues"
        " would send that many; measured / scheduled >= 0.95 is read as keeping up",
        "- Loop lag: a coroutine in the worker's loop sleeps 10 ms again and again; the lag is"
        " how late it wakes. RSS: VmRSS of /proc/self/status; growth per task = (RSS at the stop"
        " - RSS before the first create) / tasks, KB = 1,000 bytes. CPU: user + system of the"
        " process, all threads, over the steady window, in cores (1.00 = one core busy)",
        "",
        "| Metric | "
        + " | ".join(f"concurrency {r.concurrency}, upstream {r.latency_ms:g} ms" for r in results)
        + " |",
        "|---|" + "--:|" * len(results),
    ]
    columns = [rows_for(result, args.goal_kb) for result in results]
    for index, (label, _value) in enumerate(columns[0]):
        lines.append(f"| {label} | " + " | ".join(col[index][1] for col in columns) + " |")
    for result in results:
        for note in result.notes:
            lines.append(
                f"\nConcurrency {result.concurrency}, upstream {result.latency_ms:g} ms: {note}."
            )
    return "\n".join(lines) + "\n"


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="many tasks in flight against a slow upstream")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks in flight")
    parser.add_argument(
        "--hold-s", type=float, default=30.0, help="upstream's processing time per task"
    )
    parser.add_argument(
        "--duration-s", type=float, default=None, help="measured s from the first create"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        action="append",
        help="worker concurrency (repeat for one run each; default 4)",
    )
    parser.add_argument(
        "--upstream-latency-ms",
        type=float,
        action="append",
        help="the upstream's delay before each answer (repeat for one run each; default 0)",
    )
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--goal-kb", type=float, default=50.0, help="RSS goal per task, KB")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="Markdown table file")
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() once the gateway has started (an experiment; the gateway does not)",
    )
    parser.add_argument("--serve-upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--result-json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--lifetime-s", type=float, default=300.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.serve_upstream is not None:
        return args
    args.concurrency = args.concurrency or [4]
    args.upstream_latency_ms = args.upstream_latency_ms or [0.0]
    if args.duration_s is None:
        args.duration_s = args.hold_s + 10
    if not 1 <= args.tasks <= MAX_TASKS:
        parser.error(f"--tasks must be 1..{MAX_TASKS}")
    if not 1 <= args.hold_s <= 120 or not 10 <= args.duration_s <= MAX_DURATION_S:
        parser.error(f"--hold-s must be 1..120 and --duration-s 10..{MAX_DURATION_S:g}")
    if not all(1 <= c <= 256 for c in args.concurrency):
        parser.error("--concurrency must be 1..256")
    if not all(0 <= ms <= 5000 for ms in args.upstream_latency_ms):
        parser.error("--upstream-latency-ms must be 0..5000")
    if len(args.concurrency) * len(args.upstream_latency_ms) > MAX_CONFIGS:
        parser.error(f"at most {MAX_CONFIGS} configurations (concurrency x upstream latency)")
    return args


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_upstream is not None:
        latency_s = args.upstream_latency_ms[0] / 1000 if args.upstream_latency_ms else 0.0
        serve_upstream(args.serve_upstream, args.hold_s, latency_s, args.lifetime_s)
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.result_json is not None:  # one configuration, for the parent
        scratch = args.result_json.parent / "run"
        one = run_config(args, args.concurrency[0], args.upstream_latency_ms[0], scratch)
        args.result_json.write_text(json.dumps(asdict(one)))
        return 0
    started = datetime.now(UTC)
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="vidgate-inflight-") as tmp:
        for latency_ms in args.upstream_latency_ms:
            for concurrency in args.concurrency:
                name = f"concurrency {concurrency}, upstream latency {latency_ms:g} ms"
                log(
                    f"{name}: {args.tasks} tasks, upstream holds {args.hold_s:g} s, "
                    f"stop {args.duration_s:g} s after the first create"
                )
                scratch = Path(tmp) / f"c{concurrency}-l{latency_ms:g}"
                result = run_in_child(args, concurrency, latency_ms, scratch)
                log(
                    f"{name}: {result.upstream['creates']} creates, "
                    f"{result.upstream['polls']} polls, dispatch {fmt(result.dispatch_s, 2)} s"
                )
                results.append(result)
    table = render_table(args, results, started)
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table)
    log(f"wrote {args.output}")
    bad = [r for r in results if not r.upstream["creates"] == r.upstream["posts"] == r.tasks]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
