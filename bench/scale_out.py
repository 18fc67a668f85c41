"""Scale-out on PostgreSQL: dispatch latency, tasks/s through the pipeline, status polls/s.

One run, one machine, one table (DESIGN.md, "Performance, measured, not guessed"). Everything
runs as real processes on 127.0.0.1 against a fresh PostgreSQL database this script creates,
migrates (`vidgate migrate`) and drops: API processes are `vidgate serve --no-worker`, workers
are `vidgate worker`, all sharing one data dir, the database and (when reachable) Redis.

The provider is a zero-latency upstream: a fake API Mall in its own process (Starlette under
uvicorn, this file with --serve-upstream) that accepts every create at once and answers the
first poll `completed`, with a video_url to a tiny real MP4 it serves itself. vidgate's side is
the real thing: the built-in `sora2` model routes to a providers-file channel named `apimall`
(the `apimall` kind) at that upstream, so each task is claimed, submitted over HTTP, claimed
again for its poll, downloaded through the safe fetcher, stored and completed.

1. Dispatch latency, create -> worker start, with PostgreSQL NOTIFY wake-ups and without
   (VIDGATE_PG_NOTIFY=false: the worker finds tasks by its poll alone). Tasks are created over
   HTTP at a steady rate (open loop, so the figure is not queueing), one API process and one
   worker; the latency is read from the database: started_at - created_at of each task.
   created_at is stamped by the create before its transaction; started_at when the provider
   accepted the submit, so claim, task read, routing and the loopback submit are included.
2. End-to-end tasks/s for 1 and 3 worker processes, on a backlog: the tasks are created over
   HTTP first (no worker running) and held while the workers start, then one transaction makes
   them all due and notifies the queue; tasks/s = tasks / (last completed_at - that moment),
   from the database. So the figure is the workers' (and PostgreSQL's), not the API's creates
   competing with them for the 2 cores; the creates' own rate is reported beside it.
3. Status polls/s (GET /api/v1/videos/{id}) for 1 and 2 API processes, no worker running:
   bench/loadgen.py, its connections spread over the processes, on a task in flight (a
   database read per poll) and on a completed one (the ended-task cache).

Bounded: every phase has a task or time cap and a timeout; all processes are stopped at the
end and the database is dropped.

    .venv/bin/python bench/scale_out.py [--quick] [--dispatch-tasks 200] [--dispatch-rate 12]
        [--throughput-tasks 300] [--workers 1 --workers 3] [--api 1 --api 2] [--duration 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(BENCH_DIR))

from gateway_bench import (  # noqa: E402
    Load,
    children_cpu_seconds,
    cpu_seconds,
    machine_summary,
    version,
)

from support import (  # noqa: E402
    PG_ADMIN_DSN,
    GatewayProcess,
    create_key_with_cli,
    free_port,
    fresh_postgres_database,
)
from vidgate.db.backend import queue_channel  # noqa: E402

RESULTS_PATH = BENCH_DIR / "results" / "scale_out.md"
KEY_ENV = "VIDGATE_BENCH_UPSTREAM_KEY"
MODEL = "sora2"
CREATE_BODY = {"model": MODEL, "prompt": "a lighthouse at dusk, scale-out bench"}
# The channel's poll interval: the first poll of a submitted task comes this long after it.
UPSTREAM_POLL_INTERVAL_S = 0.1
REDIS_URL = "redis://127.0.0.1:6379/3"  # a database of the bench's own
# Limits out of the way: the figures are the pipeline's, not a 429's or a 402's.
RELAXED_ENV = {
    "VIDGATE_RATE_LIMIT_PER_SECOND": "100000",
    "VIDGATE_RATE_LIMIT_BURST": "100000",
    "VIDGATE_MAX_CONCURRENT_JOBS": "1000000",
}
CREDITS = 1_000_000_000
CREATE_CONNECTIONS = 8  # the throughput phase's creates
MAX_TASKS = 2_000
MAX_WORKERS = 6
MAX_API = 4
DRAIN_TIMEOUT_S = 120.0


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- the zero-latency upstream: its own process ----------------------------------------------


def upstream_app(*, api_key: str, video: bytes) -> Any:
    """API Mall's create and poll, answered at once: accepted, then `completed` on the first
    poll with a URL of `video`. Counts what it receives (GET /stats)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    by_key: dict[str, str] = {}  # Idempotency-Key -> upstream task id
    counts = {"posts": 0, "polls": 0, "downloads": 0, "unauthorized": 0}
    expected = f"Bearer {api_key}"

    def refused() -> JSONResponse:
        counts["unauthorized"] += 1
        error = {"code": "unauthorized", "message": "invalid API key"}
        return JSONResponse({"success": False, "error": error}, status_code=401)

    async def generate(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != expected:
            return refused()
        counts["posts"] += 1
        await request.body()
        key = request.headers.get("idempotency-key", "")
        task_id = by_key.setdefault(key, f"up_{len(by_key) + 1:06d}")
        data = {"task_id": task_id, "status": "pending"}
        return JSONResponse({"success": True, "data": data})

    async def poll(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != expected:
            return refused()
        counts["polls"] += 1
        task_id = request.path_params["task_id"]
        url = f"{request.base_url}result/{task_id}.mp4"
        data = {"task_id": task_id, "status": "completed", "progress": 100, "video_url": url}
        return JSONResponse({"success": True, "data": data})

    async def result(request: Request) -> Response:
        counts["downloads"] += 1
        return Response(video, media_type="video/mp4")

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse({"creates": len(by_key), **counts})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/api/v1/videos/generate", generate, methods=["POST"]),
            Route("/api/v1/videos/{task_id}", poll, methods=["GET"]),
            Route("/result/{name}", result, methods=["GET"]),
            Route("/stats", stats, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def serve_upstream(port: int, video_path: Path, lifetime_s: float) -> None:
    import uvicorn

    app = upstream_app(api_key=os.environ[KEY_ENV], video=video_path.read_bytes())
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
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


def render_result_video(path: Path) -> None:
    """The upstream's result: a real MP4 (the fetcher checks the bytes), as small as the
    sample renderer makes one."""
    from vidgate.providers.sample_render import RenderSpec, render_sample_video

    spec = RenderSpec(
        prompt="scale-out bench", width=160, height=96, seconds=1, fps=8, label="bench"
    )
    render_sample_video(spec, path)


# -- processes --------------------------------------------------------------------------------


class Process:
    """A child process logging to a file; ready once a line appears in its log (or a URL
    answers)."""

    def __init__(self, command: list[str], *, env: dict[str, str], log_path: Path) -> None:
        self.command = command
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(
        self, *, ready_line: str | None = None, ready_url: str | None = None, timeout_s: float = 60
    ) -> None:
        offset = len(self.log())
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                self.command, stdout=out, stderr=subprocess.STDOUT, env=self.env
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command[2:4]} exited early:\n{self.log()[offset:]}")
            if ready_line is not None and ready_line in self.log()[offset:]:
                return
            if ready_url is not None:
                try:
                    if httpx.get(ready_url, timeout=1).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.command[2:4]} did not become ready:\n{self.log()[offset:]}")

    def stop(self, timeout_s: float = 20) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@dataclass
class Stack:
    """What every process shares: the database, the data dir, the providers file, the key."""

    scratch: Path
    database_url: str
    env: dict[str, str]
    api_key: str
    upstream: Process
    upstream_url: str
    redis: bool
    notify_setting: bool  # whether this vidgate has VIDGATE_PG_NOTIFY
    children: list[Process] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def api(self, count: int, *, notify: bool = True) -> list[GatewayProcess]:
        servers = []
        for index in range(count):
            server = GatewayProcess(
                self.scratch / "data",
                env={**self.env, "VIDGATE_PG_NOTIFY": str(notify).lower()},
                embedded_defaults=True,
                serve_args=("--no-worker",),
            )
            server.log_path = self.scratch / f"api-{len(self.children)}-{index}.log"
            server.api_key = self.api_key  # made by the CLI: a shared database prints none
            servers.append(server.start(timeout_s=60))
        return servers

    def workers(self, count: int, *, notify: bool = True) -> list[Process]:
        started = []
        env = {**self.env, "VIDGATE_PG_NOTIFY": str(notify).lower()}
        # Listening means ready to be woken; without NOTIFY the loop's start is the mark.
        ready = "listening for wake-ups" if notify else "started (concurrency"
        for _ in range(count):
            worker = Process(
                [sys.executable, "-m", "vidgate", "worker"],
                env=env,
                log_path=self.scratch / f"worker-{len(self.children)}.log",
            )
            self.children.append(worker)
            worker.start(ready_line=ready)
            started.append(worker)
        return started

    def upstream_stats(self) -> dict[str, int]:
        response = httpx.get(f"{self.upstream_url}/stats", timeout=10)
        response.raise_for_status()
        stats: dict[str, int] = response.json()
        return stats

    def query(self, text: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(libpq_url(self.database_url), autocommit=True) as conn:
            return conn.execute(text, params).fetchall()  # type: ignore[arg-type]


def libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def stop_all(servers: list[GatewayProcess], workers: list[Process]) -> None:
    for worker in workers:
        worker.stop()
    for server in servers:
        server.stop()


def redis_reachable(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def has_notify_setting() -> bool:
    from vidgate.settings import Settings

    return "pg_notify" in Settings.model_fields


@contextmanager
def stack(scratch: Path) -> Iterator[Stack]:
    video = scratch / "result.mp4"
    render_result_video(video)
    upstream_key = "bench-upstream-key"
    port = free_port()
    upstream = Process(
        [sys.executable, str(Path(__file__).resolve()), "--serve-upstream", str(port),
         "--video", str(video)],
        env={**os.environ, KEY_ENV: upstream_key},
        log_path=scratch / "upstream.log",
    )  # fmt: skip
    upstream_url = f"http://127.0.0.1:{port}"
    (scratch / "providers.toml").write_text(
        "[providers.apimall]\n"
        'kind = "apimall"\n'
        f'base_url = "{upstream_url}"\n'
        f'api_key_env = "{KEY_ENV}"\n'
        f"poll_interval_s = {UPSTREAM_POLL_INTERVAL_S:g}\n"
        f"max_poll_interval_s = {UPSTREAM_POLL_INTERVAL_S:g}\n"
    )
    redis = redis_reachable(REDIS_URL)
    with fresh_postgres_database() as database_url:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "VIDGATE_DATA_DIR": str(scratch / "data"),
            "VIDGATE_DATABASE_URL": database_url,
            "VIDGATE_PROVIDERS_PATH": str(scratch / "providers.toml"),
            KEY_ENV: upstream_key,
            **RELAXED_ENV,
            **({"VIDGATE_REDIS_URL": REDIS_URL} if redis else {}),
        }
        subprocess.run(
            [sys.executable, "-m", "vidgate", "migrate"],
            env=env,
            capture_output=True,
            timeout=120,
            check=True,
        )
        api_key = create_key_with_cli(env, title="bench", credits=CREDITS)
        bench = Stack(
            scratch=scratch,
            database_url=database_url,
            env=env,
            api_key=api_key,
            upstream=upstream,
            upstream_url=upstream_url,
            redis=redis,
            notify_setting=has_notify_setting(),
        )
        try:
            upstream.start(ready_url=f"{upstream_url}/healthz")
            yield bench
        finally:
            for child in bench.children:
                child.stop()
            upstream.stop()


# -- measuring --------------------------------------------------------------------------------


def nearest_rank(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1))
    return ordered[index]


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


@dataclass
class CpuWatch:
    """CPU of our processes and of the whole machine over a window, in cores."""

    pids: dict[str, list[int]]
    started: float = 0.0
    before: dict[str, float] = field(default_factory=dict)
    machine_before: tuple[float, float] = (0.0, 0.0)
    wall_s: float = 0.0

    def start(self) -> CpuWatch:
        self.started = time.monotonic()
        self.before = {name: sum(map(cpu_seconds, pids)) for name, pids in self.pids.items()}
        self.machine_before = machine_busy()
        return self

    def stop(self) -> dict[str, float]:
        wall = self.wall_s = max(1e-9, time.monotonic() - self.started)
        shares = {
            name: (sum(map(cpu_seconds, pids)) - self.before[name]) / wall
            for name, pids in self.pids.items()
        }
        busy, total = machine_busy()
        cores = os.cpu_count() or 1
        share = (busy - self.machine_before[0]) / max(1.0, total - self.machine_before[1])
        shares["machine"] = share * cores
        return shares


def cpu_cell(shares: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in shares.items())


def load_average() -> str:
    one, five, _fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f}"


async def create_tasks(
    base_urls: list[str], headers: dict[str, str], *, count: int, rate: float | None
) -> list[str]:
    """`count` creates over HTTP: at `rate` per second on a fixed schedule (open loop), or as
    fast as CREATE_CONNECTIONS connections go (rate None). The task ids, in order."""
    ids: list[str | None] = [None] * count
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:

        async def one(index: int) -> None:
            url = f"{base_urls[index % len(base_urls)]}/api/v1/videos/generate"
            body = {**CREATE_BODY, "prompt": f"{CREATE_BODY['prompt']} {index}"}
            response = await client.post(url, json=body)
            if response.status_code != 200:
                raise RuntimeError(f"create {index}: HTTP {response.status_code} {response.text}")
            ids[index] = response.json()["data"]["task_id"]

        if rate is None:
            queue = iter(range(count))

            async def lane() -> None:
                for index in queue:
                    await one(index)

            await asyncio.gather(*(lane() for _ in range(CREATE_CONNECTIONS)))
        else:
            loop = asyncio.get_running_loop()
            start = loop.time() + 0.05
            pending = []
            for index in range(count):
                await asyncio.sleep(max(0.0, start + index / rate - loop.time()))
                pending.append(asyncio.create_task(one(index)))
            await asyncio.gather(*pending)
    return [task_id for task_id in ids if task_id is not None]


def wait_until_ended(bench: Stack, ids: list[str], timeout_s: float) -> dict[str, int]:
    """Poll the database until every task ended; the count per status."""
    deadline = time.monotonic() + timeout_s
    statuses: dict[str, int] = {}
    while time.monotonic() < deadline:
        rows = bench.query(
            "SELECT status, count(*) FROM video_tasks WHERE id = ANY(%(ids)s) GROUP BY status",
            {"ids": ids},
        )
        statuses = {str(status): int(count) for status, count in rows}
        if statuses.get("completed", 0) + statuses.get("failed", 0) >= len(ids):
            return statuses
        time.sleep(0.1)
    raise RuntimeError(f"tasks not ended after {timeout_s:g} s: {statuses}")


@dataclass
class DispatchResult:
    notify: bool
    tasks: int
    rate_asked: float
    rate_sent: float
    latencies_ms: list[float]
    statuses: dict[str, int]
    load: str
    cpu: dict[str, float]


def run_dispatch(bench: Stack, *, notify: bool, tasks: int, rate: float) -> DispatchResult:
    servers: list[GatewayProcess] = []
    workers: list[Process] = []
    try:
        servers = bench.api(1, notify=notify)
        workers = bench.workers(1, notify=notify)
        time.sleep(1.0)  # the worker's first empty claims behind it
        assert servers[0].process is not None
        watch = CpuWatch(
            {"API": [servers[0].process.pid], "worker": [workers[0].pid], "upstream": [
                bench.upstream.pid]}
        ).start()  # fmt: skip
        ids = asyncio.run(
            create_tasks([servers[0].base_url], bench.headers, count=tasks, rate=rate)
        )
        statuses = wait_until_ended(bench, ids, DRAIN_TIMEOUT_S)
        cpu = watch.stop()
        rows = bench.query(
            "SELECT extract(epoch FROM started_at - created_at) * 1000,"
            " extract(epoch FROM created_at) FROM video_tasks"
            " WHERE id = ANY(%(ids)s) AND started_at IS NOT NULL",
            {"ids": ids},
        )
        created = sorted(float(at) for _latency, at in rows)
        sent = (len(created) - 1) / (created[-1] - created[0]) if len(created) > 1 else 0.0
        return DispatchResult(
            notify=notify,
            tasks=len(ids),
            rate_asked=rate,
            rate_sent=sent,
            latencies_ms=[float(latency) for latency, _at in rows],
            statuses=statuses,
            load=load_average(),
            cpu=cpu,
        )
    finally:
        stop_all(servers, workers)


@dataclass
class ThroughputResult:
    workers: int
    tasks: int
    creates_s: float
    window_s: float
    tasks_per_s: float
    task_s_p50: float  # create -> completed of one task
    task_s_p99: float
    statuses: dict[str, int]
    upstream_creates: int
    upstream_posts: int
    load: str
    cpu: dict[str, float]
    worker_cpu_ms_per_task: float


def run_throughput(bench: Stack, *, workers_count: int, tasks: int) -> ThroughputResult:
    """A backlog released at once to idle workers: the tasks are created over HTTP first and
    held (run_after an hour ahead) while the workers start, then made due in one transaction
    that notifies their queue."""
    servers: list[GatewayProcess] = []
    workers: list[Process] = []
    try:
        servers = bench.api(1)
        started = time.monotonic()
        ids = asyncio.run(
            create_tasks([servers[0].base_url], bench.headers, count=tasks, rate=None)
        )
        creates_s = time.monotonic() - started
        bench.query(
            "UPDATE video_tasks SET run_after = now() + interval '1 hour'"
            " WHERE id = ANY(%(ids)s) RETURNING id",
            {"ids": ids},
        )
        workers = bench.workers(workers_count)
        time.sleep(1.0)  # every worker's first, empty claims behind it
        before = bench.upstream_stats()
        watch = CpuWatch(
            {"workers": [w.pid for w in workers], "upstream": [bench.upstream.pid]}
        ).start()
        ((released,),) = bench.query(
            "WITH due AS (UPDATE video_tasks SET run_after = now() WHERE id = ANY(%(ids)s)"
            " RETURNING id) SELECT now() FROM pg_notify(%(channel)s, '')",
            {"ids": ids, "channel": queue_channel("default")},
        )
        statuses = wait_until_ended(bench, ids, DRAIN_TIMEOUT_S)
        cpu = watch.stop()
        after = bench.upstream_stats()
        each = [
            float(seconds)
            for (seconds,) in bench.query(
                "SELECT extract(epoch FROM completed_at - %(released)s) FROM video_tasks"
                " WHERE id = ANY(%(ids)s) AND completed_at IS NOT NULL",
                {"ids": ids, "released": released},
            )
        ]
        window_s = max(each)
        return ThroughputResult(
            workers=workers_count,
            tasks=len(ids),
            creates_s=creates_s,
            window_s=window_s,
            tasks_per_s=statuses.get("completed", 0) / window_s,
            task_s_p50=nearest_rank(each, 0.5),
            task_s_p99=nearest_rank(each, 0.99),
            statuses=statuses,
            upstream_creates=after["creates"] - before["creates"],
            upstream_posts=after["posts"] - before["posts"],
            load=load_average(),
            cpu=cpu,
            worker_cpu_ms_per_task=cpu["workers"] * watch.wall_s / max(1, len(ids)) * 1000,
        )
    finally:
        stop_all(servers, workers)


@dataclass
class PollResult:
    api: int
    task: str  # "in flight" or "completed"
    rps: float
    p50_ms: float
    p99_ms: float
    server_cpu_us: float  # all API processes' CPU per answer, warm-up included
    loadgen_cpu: float  # the load generator's CPU, share of one core
    load: str


def poll_load(
    urls: list[str], headers: dict[str, str], *, concurrency: int, load: Load
) -> tuple[dict[str, Any], float]:
    """bench/loadgen.py with its connections spread over `urls`: its JSON, and its CPU as a
    share of one core."""
    command = [
        sys.executable, str(BENCH_DIR / "loadgen.py"),
        *(part for url in urls for part in ("--url", url)),
        "--concurrency", str(concurrency),
        "--duration", str(load.duration_s),
        "--warmup", str(load.warmup_s),
        "--max-requests", str(load.max_requests),
        *(part for name, value in headers.items() for part in ("--header", f"{name}: {value}")),
    ]  # fmt: skip
    children_before, wall_before = children_cpu_seconds(), time.perf_counter()
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=load.warmup_s + load.duration_s + 60
    )
    share = (children_cpu_seconds() - children_before) / (time.perf_counter() - wall_before)
    if completed.returncode != 0:
        raise RuntimeError(f"loadgen failed ({completed.returncode}):\n{completed.stderr}")
    data: dict[str, Any] = json.loads(completed.stdout)
    if not data["requests"] or data["ok"] < 0.99 * data["requests"] or data["errors"]:
        raise RuntimeError(
            f"{data['ok']}/{data['requests']} ok, statuses {data['statuses']}, errors"
            f" {data['errors']}; first body: {data['sample_body']}"
        )
    return data, share


def run_polls(
    bench: Stack, *, api_count: int, completed_id: str, load: Load, concurrency: int
) -> list[PollResult]:
    servers: list[GatewayProcess] = []
    try:
        servers = bench.api(api_count)
        # A task that stays in flight: no worker runs, so every poll of it reads the database.
        (pending_id,) = asyncio.run(
            create_tasks([servers[0].base_url], bench.headers, count=1, rate=None)
        )
        results = []
        for label, task_id, expect in (
            ("in flight", pending_id, '"pending"'),
            ("completed", completed_id, '"completed"'),
        ):
            log(f"status polls, {api_count} API process(es), task {label}")
            pids = [s.process.pid for s in servers if s.process is not None]
            before = sum(map(cpu_seconds, pids))
            data, loadgen_cpu = poll_load(
                [f"{s.base_url}/api/v1/videos/{task_id}" for s in servers],
                bench.headers,
                concurrency=concurrency,
                load=load,
            )
            spent = sum(map(cpu_seconds, pids)) - before
            if expect not in data["sample_body"]:
                raise RuntimeError(
                    f"poll of the {label} task lacks {expect}: {data['sample_body']}"
                )
            results.append(
                PollResult(
                    api=api_count,
                    task=label,
                    rps=data["rps"],
                    p50_ms=data["p50_ms"],
                    p99_ms=data["p99_ms"],
                    server_cpu_us=spent / max(1, data["completed_total"]) * 1e6,
                    loadgen_cpu=loadgen_cpu,
                    load=load_average(),
                )
            )
        return results
    finally:
        stop_all(servers, [])


# -- report -----------------------------------------------------------------------------------


def fmt(value: float, digits: int = 0) -> str:
    if value != value:  # NaN
        return "n/a"
    return f"{value:,.{digits}f}"


def goal(met: bool) -> str:
    return "met" if met else "**not met**"


def render_table(
    args: argparse.Namespace,
    bench: Stack,
    dispatch: list[DispatchResult],
    throughput: list[ThroughputResult],
    polls: list[PollResult],
    started: datetime,
    load_before: str,
) -> str:
    poll_interval = os.environ.get("VIDGATE_WORKER_POLL_INTERVAL_S", "0.5")
    lines = [
        "# Scale-out on PostgreSQL",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC with `bench/scale_out.py"
        f"{' ' + ' '.join(args.argv) if args.argv else ''}`.",
        "",
        *machine_summary()[:2],
        f"- vidgate {version('vidgate')}; PostgreSQL at 127.0.0.1 (a fresh database, `vidgate"
        f" migrate`), psycopg {version('psycopg')}; Redis rate limits "
        + ("on" if bench.redis else "off (not reachable)")
        + "; API processes `vidgate serve --no-worker`, workers `vidgate worker` (concurrency"
        f" 4, poll interval {poll_interval} s, lease 30 s: the defaults), one shared data dir",
        "- Provider: a zero-latency fake API Mall upstream in its own process (accepts at once,"
        f" first poll `completed`, a {160}x{96} MP4 to download), the channel's poll interval"
        f" {UPSTREAM_POLL_INTERVAL_S:g} s; all processes share the machine's"
        f" {os.cpu_count()} cores with the bench itself and PostgreSQL",
        f"- Load average (1 / 5 min) at the start: {load_before}; each phase says its own at"
        " its end",
        "",
        "## Dispatch latency, create -> worker start",
        "",
        "One API process, one worker; tasks created over HTTP at a steady rate; per task"
        " `started_at - created_at` from the database (created_at: the create, before its"
        " transaction; started_at: the provider accepted the submit: claim, read, routing and"
        " the loopback submit included). Goal with NOTIFY: p50 < 20 ms, p99 < 100 ms.",
        "",
        "| Wake-up | Worker poll interval s | Tasks | Rate asked / sent per s | min ms | p50 ms"
        " | p99 ms | max ms | Goal | Load | CPU, cores |",
        "|---|--:|--:|--:|--:|--:|--:|--:|---|---|---|",
    ]
    for d in dispatch:
        p50, p99 = nearest_rank(d.latencies_ms, 0.5), nearest_rank(d.latencies_ms, 0.99)
        verdict = f"p50 {goal(p50 < 20)}, p99 {goal(p99 < 100)}" if d.notify else "-"
        wake = "LISTEN/NOTIFY" if d.notify else "poll only (VIDGATE_PG_NOTIFY=false)"
        lines.append(
            f"| {wake} | {poll_interval} | {len(d.latencies_ms)} | {d.rate_asked:g} /"
            f" {d.rate_sent:.1f} | {fmt(min(d.latencies_ms), 1)} | {fmt(p50, 1)} | {fmt(p99, 1)}"
            f" | {fmt(max(d.latencies_ms), 1)}"
            f" | {verdict} | {d.load} | {cpu_cell(d.cpu)} |"
        )
    lines += [
        "",
        "## End-to-end tasks/s, zero-latency provider",
        "",
        f"A backlog: the tasks are created over HTTP first ({CREATE_CONNECTIONS} connections,"
        " one API process, no worker running) and held while the workers start; then one"
        " transaction makes them all due and notifies the queue. tasks/s = completed / (last"
        " completed_at - that release). Goal: >= 12/s (1M tasks a day).",
        "",
        "| Workers | Tasks | Creates took s | Release -> last completed s | Tasks/s | Goal"
        " | Release -> completed p50 / p99 s | Ended | Upstream creates / POSTs"
        " | Worker CPU ms/task | Load | CPU, cores |",
        "|--:|--:|--:|--:|--:|---|--:|---|--:|--:|---|---|",
    ]
    for t in throughput:
        ended = ", ".join(f"{status} {count}" for status, count in sorted(t.statuses.items()))
        lines.append(
            f"| {t.workers} | {t.tasks} | {t.creates_s:.2f} | {t.window_s:.2f}"
            f" | {t.tasks_per_s:.1f} | {goal(t.tasks_per_s >= 12)}"
            f" | {t.task_s_p50:.2f} / {t.task_s_p99:.2f} | {ended}"
            f" | {t.upstream_creates} / {t.upstream_posts} | {t.worker_cpu_ms_per_task:.1f}"
            f" | {t.load} | {cpu_cell(t.cpu)} |"
        )
    lines += [
        "",
        "## Status polls, GET /api/v1/videos/{id}",
        "",
        f"No worker running; `bench/loadgen.py` (closed loop, keep-alive) with {args.concurrency}"
        " connections spread evenly over the API processes, "
        f"{args.warmup:g} s warm-up + {args.duration:g} s measured. In flight: a pending task,"
        " a database read per poll; completed: answered from the ended-task cache.",
        "",
        "| API processes | Task | req/s | p50 ms | p99 ms | API CPU µs/req | Loadgen CPU | Load |",
        "|--:|---|--:|--:|--:|--:|--:|---|",
    ]
    for p in polls:
        lines.append(
            f"| {p.api} | {p.task} | {fmt(p.rps)} | {fmt(p.p50_ms, 2)} | {fmt(p.p99_ms, 2)}"
            f" | {fmt(p.server_cpu_us)} | {p.loadgen_cpu:.2f} | {p.load} |"
        )
    return "\n".join(lines) + "\n"


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="vidgate scale-out on PostgreSQL")
    parser.add_argument("--dispatch-tasks", type=int, default=200, help="tasks per run")
    # 12/s: the throughput goal (1M tasks a day, 11.6/s), rounded up
    parser.add_argument("--dispatch-rate", type=float, default=12.0, help="creates per second")
    parser.add_argument("--throughput-tasks", type=int, default=300, help="tasks per run")
    parser.add_argument(
        "--workers", type=int, action="append", help="worker processes (repeat; default 1, 3)"
    )
    parser.add_argument(
        "--api", type=int, action="append", help="API processes (repeat; default 1, 2)"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measured s per poll run")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured s per poll run")
    parser.add_argument("--concurrency", type=int, default=16, help="poll connections")
    parser.add_argument("--max-requests", type=int, default=200_000, help="cap per poll run")
    parser.add_argument("--quick", action="store_true", help="small runs (~1 min)")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="Markdown table file")
    parser.add_argument("--serve-upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--lifetime-s", type=float, default=1200.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.serve_upstream is not None:
        return args
    if args.quick:
        args.dispatch_tasks, args.throughput_tasks = 40, 60
        args.duration, args.warmup = 2.0, 0.5
    args.workers = args.workers or [1, 3]
    args.api = args.api or [1, 2]
    if not 2 <= args.dispatch_tasks <= MAX_TASKS or not 1 <= args.throughput_tasks <= MAX_TASKS:
        parser.error(f"--dispatch-tasks must be 2..{MAX_TASKS}, --throughput-tasks 1..{MAX_TASKS}")
    if not 0.5 <= args.dispatch_rate <= 200:
        parser.error("--dispatch-rate must be 0.5..200 per second")
    if not all(1 <= w <= MAX_WORKERS for w in args.workers) or len(args.workers) > 4:
        parser.error(f"--workers must be 1..{MAX_WORKERS}, at most 4 runs")
    if not all(1 <= a <= MAX_API for a in args.api) or len(args.api) > 4:
        parser.error(f"--api must be 1..{MAX_API}, at most 4 runs")
    if not 0 < args.duration <= 60 or not 0 <= args.warmup <= 10:
        parser.error("--duration must be in (0, 60] and --warmup in [0, 10]")
    if not 1 <= args.concurrency <= 256 or not 1 <= args.max_requests <= 500_000:
        parser.error("--concurrency must be 1..256 and --max-requests 1..500,000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_upstream is not None:
        serve_upstream(args.serve_upstream, args.video, args.lifetime_s)
        return 0
    started = datetime.now(UTC)
    load_before = load_average()
    log(f"scale-out on PostgreSQL ({PG_ADMIN_DSN}); load average {load_before}")
    poll_load = Load(duration_s=args.duration, warmup_s=args.warmup, max_requests=args.max_requests)
    with tempfile.TemporaryDirectory(prefix="vidgate-scale-") as tmp, stack(Path(tmp)) as bench:
        dispatch = []
        for notify in (True, False):
            if not notify and not bench.notify_setting:
                log("this vidgate has no VIDGATE_PG_NOTIFY: the poll-only run is left out")
                continue
            log(f"dispatch latency, NOTIFY {'on' if notify else 'off'}: {args.dispatch_tasks}"
                f" tasks at {args.dispatch_rate:g}/s")  # fmt: skip
            dispatch.append(
                run_dispatch(
                    bench, notify=notify, tasks=args.dispatch_tasks, rate=args.dispatch_rate
                )
            )
        throughput = []
        for count in args.workers:
            log(f"tasks/s with {count} worker process(es): {args.throughput_tasks} tasks")
            throughput.append(
                run_throughput(bench, workers_count=count, tasks=args.throughput_tasks)
            )
        ((completed_id,),) = bench.query(
            "SELECT id FROM video_tasks WHERE status = 'completed' LIMIT 1"
        )
        polls = []
        for count in args.api:
            polls += run_polls(
                bench,
                api_count=count,
                completed_id=completed_id,
                load=poll_load,
                concurrency=args.concurrency,
            )
        table = render_table(args, bench, dispatch, throughput, polls, started, load_before)
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table)
    log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
