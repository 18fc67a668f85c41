"""Gateway overhead against a bare endpoint of the same stack, and create-to-completed time.

One run, one machine, one table (DESIGN.md, "Performance, measured, not guessed"):

1. Status poll: GET /api/v1/videos/{id} of a completed task (Bearer key) against the gateway,
   versus GET on a bare FastAPI route with a response model (bench/bare_app.py) served by the
   same `uvicorn.run` call. Requests/s, p50/p99 latency, server CPU per request, ratios.
2. Create: POST /api/v1/videos/generate (`sample` model) versus POST of a similar small
   pydantic body to the bare app. The gateway runs with VIDGATE_WORKER_ENABLED=false for these
   phases (tasks stay pending, so the figures are the API path alone) and relaxed limits.
3. Create -> completed for a 10 s clip on a normally started gateway (worker on): `sora2` with
   n_frames "10" (the built-in sample renderer, 1280x720 at 24 fps) and `sample` at its default
   480p; polled every 0.2 s; min and median of several runs.

Load comes from bench/loadgen.py in a separate process (the same generator for both sides of
every ratio). Every phase is bounded in time and in request count, and only 127.0.0.1 is used.

    .venv/bin/python bench/gateway_bench.py [--duration 5] [--concurrency 16] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT / "tests"))

from support import (  # noqa: E402
    GatewayProcess,
    create_key_with_cli,
    free_port,
    fresh_postgres_database,
)

RESULTS_PATH = BENCH_DIR / "results" / "latest.md"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The throughput gateway: plenty of credits, limits out of the way, no worker.
THROUGHPUT_ENV = {
    "VIDGATE_INITIAL_CREDITS": "10000000",
    "VIDGATE_RATE_LIMIT_PER_SECOND": "100000",
    "VIDGATE_RATE_LIMIT_BURST": "100000",
    "VIDGATE_MAX_CONCURRENT_JOBS": "1000000",
}
# Never let one phase create more tasks than the relaxed credit and concurrency limits allow.
MAX_REQUESTS_CAP = 500_000
CREATE_BODY = {"model": "sample", "prompt": "a red fox running through fresh snow, bench"}
POLL_INTERVAL_S = 0.2
RENDER_TIMEOUT_S = 300.0


# -- processes --------------------------------------------------------------------------------


class BareApp:
    """bench/bare_app.py as a process on a loopback port."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> BareApp:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(BENCH_DIR / "bare_app.py"), "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"bare app exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("bare app did not become ready")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- load phases ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    duration_s: float
    warmup_s: float
    max_requests: int


@dataclass
class PhaseResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    ok: int
    statuses: dict[str, int]
    errors: dict[str, int]
    server_cpu_us_per_req: float
    loadgen_cpu_share: float  # load generator CPU seconds / wall seconds
    sample_body: str


def run_load(
    *,
    server_pid: int,
    url: str,
    method: str,
    concurrency: int,
    load: Load,
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> PhaseResult:
    command = [
        sys.executable,
        str(BENCH_DIR / "loadgen.py"),
        "--url",
        url,
        "--method",
        method,
        "--concurrency",
        str(concurrency),
        "--duration",
        str(load.duration_s),
        "--warmup",
        str(load.warmup_s),
        "--max-requests",
        str(load.max_requests),
    ]
    for name, value in (headers or {}).items():
        command += ["--header", f"{name}: {value}"]
    if body is not None:
        command += ["--header", "Content-Type: application/json", "--body", json.dumps(body)]
    timeout_s = load.warmup_s + load.duration_s + 60
    server_before = cpu_seconds(server_pid)
    children_before = children_cpu_seconds()
    wall_before = time.perf_counter()
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    wall_s = time.perf_counter() - wall_before
    loadgen_cpu = children_cpu_seconds() - children_before
    server_cpu = cpu_seconds(server_pid) - server_before
    if completed.returncode != 0:
        raise RuntimeError(f"loadgen failed ({completed.returncode}):\n{completed.stderr}")
    data = json.loads(completed.stdout)
    # The server's CPU covers the warm-up too, so divide by every response, warm-up included.
    total = max(1, data["completed_total"])
    return PhaseResult(
        rps=data["rps"],
        p50_ms=data["p50_ms"],
        p99_ms=data["p99_ms"],
        requests=data["requests"],
        ok=data["ok"],
        statuses=data["statuses"],
        errors=data["errors"],
        server_cpu_us_per_req=server_cpu / total * 1e6,
        loadgen_cpu_share=loadgen_cpu / wall_s,
        sample_body=data["sample_body"],
    )


def check_phase(name: str, result: PhaseResult) -> None:
    if result.requests == 0 or result.ok < 0.99 * result.requests or result.errors:
        raise RuntimeError(
            f"{name}: {result.ok}/{result.requests} ok, statuses {result.statuses}, "
            f"errors {result.errors}; first body: {result.sample_body}"
        )


# -- create -> completed ----------------------------------------------------------------------


@dataclass
class RenderResult:
    label: str
    seconds: list[float]
    video: str
    render_alone_s: list[float]  # the same clip rendered in this process, no gateway


def time_to_completed(server: GatewayProcess, body: dict[str, Any]) -> tuple[float, str, str]:
    """Seconds from sending the create to the first poll that says completed; task id; URL."""
    with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=10) as client:
        started = time.perf_counter()
        created = client.post("/api/v1/videos/generate", json=body)
        created.raise_for_status()
        task_id = created.json()["data"]["task_id"]
        deadline = started + RENDER_TIMEOUT_S
        while time.perf_counter() < deadline:
            response = client.get(f"/api/v1/videos/{task_id}")
            response.raise_for_status()
            data = response.json()["data"]
            if data["status"] == "completed":
                return time.perf_counter() - started, task_id, str(data["video_url"])
            if data["status"] == "failed":
                raise RuntimeError(f"render failed: {data['error_message']}")
            time.sleep(POLL_INTERVAL_S)
    raise RuntimeError(f"task {task_id} not completed after {RENDER_TIMEOUT_S} s")


@dataclass(frozen=True)
class Probe:
    width: int
    height: int
    fps: float
    duration_s: float
    frames: int
    size_bytes: int

    def __str__(self) -> str:
        return (
            f"{self.width}x{self.height}, {self.fps:g} fps, {self.duration_s:.1f} s, "
            f"{self.frames} frames, {self.size_bytes / 1e6:.1f} MB"
        )


def probe_video(url: str, scratch: Path) -> Probe:
    """What the result URL serves: size, frame rate, length, frame count (PyAV, a vidgate
    dependency: the sample renderer writes with it)."""
    import av

    response = httpx.get(url, timeout=30)
    response.raise_for_status()
    path = scratch / "probe.mp4"
    path.write_bytes(response.content)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for packet in container.demux(stream) if packet.size)
        return Probe(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=float(stream.average_rate or 0),
            duration_s=float(container.duration or 0) / 1_000_000,
            frames=frames,
            size_bytes=len(response.content),
        )


def time_render_alone(body: dict[str, Any], probe: Probe, scratch: Path) -> float:
    """The same clip rendered by the sample renderer in this process: the floor for the
    gateway's create -> completed time."""
    from vidgate.providers.sample_render import RenderSpec, render_sample_video

    spec = RenderSpec(
        prompt=str(body["prompt"]),
        width=probe.width,
        height=probe.height,
        seconds=round(probe.duration_s),
        fps=round(probe.fps),
        label=f"SAMPLE - vidgate - {body['model']}",
    )
    started = time.perf_counter()
    render_sample_video(spec, scratch / "alone.mp4")
    return time.perf_counter() - started


RENDER_CASES: list[tuple[str, dict[str, Any]]] = [
    (
        'sora2, n_frames "10" (sample renderer)',
        {"model": "sora2", "prompt": "a lighthouse at dusk, bench", "n_frames": "10"},
    ),
    ("sample, defaults (480p)", {"model": "sample", "prompt": "a lighthouse at dusk, bench"}),
]


def measure_renders(server: GatewayProcess, runs: int, scratch: Path) -> list[RenderResult]:
    results = []
    for label, body in RENDER_CASES:
        seconds: list[float] = []
        video_url = ""
        for _ in range(runs):
            elapsed, _task_id, video_url = time_to_completed(server, body)
            seconds.append(elapsed)
        probe = probe_video(video_url, scratch)
        alone = [time_render_alone(body, probe, scratch) for _ in range(runs)]
        results.append(RenderResult(label, seconds, str(probe), alone))
    return results


# -- report -----------------------------------------------------------------------------------


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_summary() -> list[str]:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    # uvicorn.run's defaults (loop="auto", http="auto") pick uvloop and httptools if importable;
    # the gateway and the bare app run in this same interpreter, so they get the same ones.
    loop = f"uvloop {version('uvloop')}" if version("uvloop") != "not installed" else "asyncio"
    http = (
        f"httptools {version('httptools')}"
        if version("httptools") != "not installed"
        else f"h11 {version('h11')}"
    )
    return [
        f"- Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; uvicorn {version('uvicorn')} (one process, "
        f"loop {loop}, http {http}, access log on); FastAPI {version('fastapi')}, "
        f"Starlette {version('starlette')}, pydantic {version('pydantic')}, "
        f"SQLAlchemy {version('sqlalchemy')}, aiosqlite {version('aiosqlite')}",
        f"- vidgate {version('vidgate')}, SQLite (embedded mode)",
    ]


def fmt(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def api_table(backend: str, phases: list[tuple[str, int, PhaseResult, PhaseResult]]) -> list[str]:
    lines = [
        f"## API path on {backend}: gateway vs bare FastAPI endpoint on the same stack",
        "",
        "Gateway/bare: below 1 for req/s (and above 1 for latency and CPU) is the gateway's cost.",
        "",
        "| Phase | Conns | Metric | Gateway | Bare | Gateway/bare |",
        "|---|--:|---|--:|--:|--:|",
    ]
    for name, conns, gateway, bare in phases:
        rows = [
            ("req/s", gateway.rps, bare.rps, 0),
            ("p50 ms", gateway.p50_ms, bare.p50_ms, 2),
            ("p99 ms", gateway.p99_ms, bare.p99_ms, 2),
            ("server CPU µs/req", gateway.server_cpu_us_per_req, bare.server_cpu_us_per_req, 0),
        ]
        for index, (metric, g, b, digits) in enumerate(rows):
            label = name if index == 0 else ""
            count = str(conns) if index == 0 else ""
            lines.append(
                f"| {label} | {count} | {metric} | {fmt(g, digits)} | {fmt(b, digits)} "
                f"| {ratio(g, b)} |"
            )
    lines += [
        "",
        "Load generator CPU (share of one core) per phase, gateway / bare: "
        + "; ".join(
            f"{name} c={conns}: {g.loadgen_cpu_share:.2f} / {b.loadgen_cpu_share:.2f}"
            for name, conns, g, b in phases
        )
        + ".",
    ]
    return lines


def render_table(
    *,
    args: argparse.Namespace,
    load: Load,
    phases: list[tuple[str, int, PhaseResult, PhaseResult]],
    pg_phases: list[tuple[str, int, PhaseResult, PhaseResult]],
    renders: list[RenderResult],
    started: datetime,
) -> str:
    lines = [
        "# vidgate gateway benchmark",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC with `bench/run_all.py"
        f"{' --quick' if args.quick else ''}`.",
        "",
        *machine_summary(),
        f"- Load: `bench/loadgen.py` in its own process (closed loop, keep-alive), "
        f"{load.warmup_s:g} s warm-up + {load.duration_s:g} s measured per phase, "
        f"at most {load.max_requests:,} requests per phase",
        "",
    ]
    lines += api_table("embedded SQLite", phases)
    if pg_phases:
        lines += ["", *api_table("PostgreSQL (one API process, psycopg)", pg_phases)]
    if renders:
        from vidgate.providers.sample import SampleProvider

        provider_poll_s = SampleProvider.poll_interval_s
        lines += [
            "",
            "## Create -> completed (worker on, polled every 0.2 s, runs one after another)",
            "",
            "Render alone: the same clip rendered by the sample renderer in the benchmark "
            "process, no gateway (the floor). The gateway sees a render finish on its next "
            f"poll of the job (every {provider_poll_s:g} s for the sample provider), the "
            "client on its next 0.2 s poll.",
            "",
            "| Request | Video produced | Runs | Min s | Median s | All runs s "
            "| Render alone, median s |",
            "|---|---|--:|--:|--:|---|--:|",
        ]
        for render in renders:
            lines.append(
                f"| {render.label} | {render.video} | {len(render.seconds)} "
                f"| {min(render.seconds):.2f} | {statistics.median(render.seconds):.2f} "
                f"| {', '.join(f'{s:.2f}' for s in render.seconds)} "
                f"| {statistics.median(render.render_alone_s):.2f} |"
            )
    return "\n".join(lines) + "\n"


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="vidgate gateway vs bare-stack benchmark")
    parser.add_argument("--duration", type=float, default=5.0, help="measured s per phase")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured s per phase")
    parser.add_argument("--concurrency", type=int, default=16, help="connections under load")
    parser.add_argument("--max-requests", type=int, default=200_000, help="cap per phase")
    parser.add_argument("--render-runs", type=int, default=3, help="runs per render case")
    parser.add_argument("--no-render", action="store_true", help="skip create -> completed")
    parser.add_argument(
        "--no-postgres", action="store_true", help="skip the API phases on PostgreSQL"
    )
    parser.add_argument("--quick", action="store_true", help="short phases, one render run")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="Markdown table file")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.render_runs = 1.0, 0.3, 1
    if not 0 < args.duration <= 60 or not 0 <= args.warmup <= 10:
        parser.error("--duration must be in (0, 60] and --warmup in [0, 10]")
    if not 1 <= args.concurrency <= 256:
        parser.error("--concurrency must be 1..256")
    if not 1 <= args.max_requests <= MAX_REQUESTS_CAP:
        parser.error(f"--max-requests must be 1..{MAX_REQUESTS_CAP}")
    if not 1 <= args.render_runs <= 10:
        parser.error("--render-runs must be 1..10")
    return args


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def start_gateway(scratch: Path, name: str, database_url: str | None) -> GatewayProcess:
    """A throughput gateway (worker on) on embedded SQLite, or on a migrated PostgreSQL
    database with a key made by the CLI (no first key is printed there)."""
    env = {**THROUGHPUT_ENV, "VIDGATE_WORKER_ENABLED": "true"}
    if database_url is not None:
        env["VIDGATE_DATABASE_URL"] = database_url
    gateway = GatewayProcess(scratch / name, embedded_defaults=True, env=env)
    if database_url is not None:
        subprocess.run(
            [sys.executable, "-m", "vidgate", "migrate"],
            env=gateway.env,
            capture_output=True,
            timeout=120,
            check=True,
        )
        gateway.api_key = create_key_with_cli(gateway.env, title="bench", credits=10_000_000)
    return gateway.start()


def run_api_phases(
    args: argparse.Namespace, load: Load, scratch: Path, *, database_url: str | None = None
) -> list[tuple[str, int, PhaseResult, PhaseResult]]:
    bare = BareApp(scratch / f"bare-{'pg' if database_url else 'sqlite'}.log")
    gateway: GatewayProcess | None = None
    phases: list[tuple[str, int, PhaseResult, PhaseResult]] = []
    try:
        # A completed task to poll: render a short small clip with the worker on, then restart
        # the same data dir with the worker off for the measured phases.
        log("gateway: rendering one completed task to poll")
        gateway = start_gateway(scratch, f"gateway-{bool(database_url)}", database_url)
        completed_body = {**CREATE_BODY, "duration": "1", "resolution": "240p"}
        _elapsed, task_id, _url = time_to_completed(gateway, completed_body)
        gateway.stop()
        gateway.env["VIDGATE_WORKER_ENABLED"] = "false"
        gateway.start()
        # And one that stays in flight (no worker): its poll reads the database every time.
        created = httpx.post(
            f"{gateway.base_url}/api/v1/videos/generate",
            json=CREATE_BODY,
            headers=gateway.headers,
            timeout=10,
        )
        created.raise_for_status()
        pending_id = created.json()["data"]["task_id"]
        bare.start()
        assert gateway.process is not None
        assert bare.process is not None
        gateway_pid, bare_pid = gateway.process.pid, bare.process.pid

        def pair(
            name: str, conns: int, path: str, bare_path: str, method: str, expect: str | None
        ) -> None:
            """The gateway and the bare app under the same load, one after the other."""
            log(f"{name}, {conns} connection(s)")
            body = CREATE_BODY if method == "POST" else None
            g = run_load(
                server_pid=gateway_pid,
                url=f"{gateway.base_url}{path}",
                method=method,
                concurrency=conns,
                load=load,
                headers=gateway.headers,
                body=body,
            )
            check_phase(f"gateway {name}", g)
            if expect is not None and expect not in g.sample_body:
                raise RuntimeError(f"{name}: the answer lacks {expect}: {g.sample_body}")
            b = run_load(
                server_pid=bare_pid,
                url=f"{bare.base_url}{bare_path}",
                method=method,
                concurrency=conns,
                load=load,
                body=body,
            )
            check_phase(f"bare {name}", b)
            phases.append((name, conns, g, b))

        for conns in (args.concurrency, 1):
            path = f"/api/v1/videos/{task_id}"
            pair("Status poll (completed)", conns, path, "/bare/status", "GET", '"completed"')
        for conns in (args.concurrency, 1):
            path = f"/api/v1/videos/{pending_id}"
            pair("Status poll (in flight)", conns, path, "/bare/status", "GET", '"pending"')
        for conns in (args.concurrency, 1):
            pair("Create", conns, "/api/v1/videos/generate", "/bare/create", "POST", None)
    finally:
        if gateway is not None:
            gateway.stop()
        bare.stop()
    return phases


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = Load(duration_s=args.duration, warmup_s=args.warmup, max_requests=args.max_requests)
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="vidgate-bench-") as tmp:
        scratch = Path(tmp)
        phases = run_api_phases(args, load, scratch)
        pg_phases: list[tuple[str, int, PhaseResult, PhaseResult]] = []
        if not args.no_postgres:
            log("the same API phases on PostgreSQL")
            with fresh_postgres_database() as url:
                pg_phases = run_api_phases(args, load, scratch, database_url=url)
        renders: list[RenderResult] = []
        if not args.no_render:
            log(f"create -> completed, {args.render_runs} run(s) per case")
            server = GatewayProcess(scratch / "gateway-render", embedded_defaults=True)
            try:
                server.start()
                renders = measure_renders(server, args.render_runs, scratch)
            finally:
                server.stop()
    table = render_table(
        args=args, load=load, phases=phases, pg_phases=pg_phases, renders=renders, started=started
    )
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table)
    log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
