"""A small closed-loop HTTP/1.1 load generator, run as its own process.

N keep-alive connections each send one request, read the whole response, and send the next.
Requests that start during the warm-up are not counted; counting stops after `duration`
seconds or after `max_requests` requests in all, whichever comes first. Prints one JSON object.

It speaks raw HTTP/1.1 over asyncio streams (uvloop when installed) rather than using an HTTP
client library, so that on a small machine the generator spends as little CPU as it can: every
cycle it takes is a cycle the server under test does not get. The same generator drives both
sides of every comparison, so its own cost cancels out of the ratios.

    python bench/loadgen.py --url http://127.0.0.1:8000/x --concurrency 16 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

MAX_HEADER_BYTES = 64 * 1024


@dataclass
class Counters:
    latencies_s: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    completed: int = 0  # responses read, warm-up included
    first_body: bytes | None = None
    last_done: float = 0.0


def build_request(
    method: str, host: str, port: int, target: str, headers: list[str], body: bytes | None
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: keep-alive"]
    lines += headers
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (body or b"")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body, and whether the server keeps the connection open."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, _, header_block = head.partition(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    length: int | None = None
    chunked = False
    keep_alive = True
    for line in header_block.split(b"\r\n"):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            keep_alive = value.strip().lower() != b"close"
    if chunked:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers expected
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        return status, b"".join(parts), keep_alive
    if length is None:
        raise ValueError("response without Content-Length or chunked encoding")
    return status, await reader.readexactly(length), keep_alive


async def connection_loop(
    host: str,
    port: int,
    request: bytes,
    counters: Counters,
    *,
    measure_from: float,
    stop_at: float,
    max_requests: int,
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        while True:
            started = time.perf_counter()
            if started >= stop_at or counters.sent >= max_requests:
                return
            if writer is None or reader is None:
                reader, writer = await asyncio.open_connection(host, port, limit=MAX_HEADER_BYTES)
            counters.sent += 1
            try:
                writer.write(request)
                status, body, keep_alive = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                name = type(exc).__name__
                counters.errors[name] = counters.errors.get(name, 0) + 1
                writer.close()
                reader = writer = None
                continue
            done = time.perf_counter()
            counters.completed += 1
            if started >= measure_from and done <= stop_at:
                counters.latencies_s.append(done - started)
                counters.statuses[status] = counters.statuses.get(status, 0) + 1
                counters.last_done = max(counters.last_done, done)
                if counters.first_body is None:
                    counters.first_body = body
            if not keep_alive:
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(fraction * len(sorted_values) + 0.5))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    # Several --url (the same path on several servers): the connections are spread over them.
    targets = []
    for raw in args.url:
        url = urlsplit(raw)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("loadgen only targets loopback addresses")
        target = url.path + (f"?{url.query}" if url.query else "")
        body = args.body.encode() if args.body is not None else None
        targets.append(
            (host, port, build_request(args.method, host, port, target, args.header, body))
        )
    counters = Counters()
    begin = time.perf_counter()
    measure_from = begin + args.warmup
    stop_at = measure_from + args.duration
    await asyncio.gather(
        *(
            connection_loop(
                *targets[index % len(targets)],
                counters,
                measure_from=measure_from,
                stop_at=stop_at,
                max_requests=args.max_requests,
            )
            for index in range(args.concurrency)
        )
    )
    # The window closes at stop_at, or earlier if the request budget ran out first.
    window_end = stop_at if counters.sent < args.max_requests else counters.last_done
    window_s = max(1e-9, window_end - measure_from)
    latencies = sorted(counters.latencies_s)
    ok = sum(n for status, n in counters.statuses.items() if 200 <= status < 300)
    return {
        "url": " ".join(args.url),
        "method": args.method,
        "concurrency": args.concurrency,
        "warmup_s": args.warmup,
        "window_s": window_s,
        "requests": len(latencies),
        "completed_total": counters.completed,
        "ok": ok,
        "statuses": {str(k): v for k, v in sorted(counters.statuses.items())},
        "errors": counters.errors,
        "budget_exhausted": counters.sent >= args.max_requests,
        "rps": ok / window_s,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p90_ms": percentile(latencies, 0.90) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": (latencies[-1] * 1000) if latencies else float("nan"),
        "sample_body": (counters.first_body or b"")[:600].decode("utf-8", "replace"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Closed-loop HTTP/1.1 load generator.")
    parser.add_argument("--url", action="append", required=True, help="repeat: spread over each")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--body", default=None, help="request body (sent as is)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--max-requests", type=int, default=200_000, help="hard cap, warm-up too")
    args = parser.parse_args(argv)
    if not (1 <= args.concurrency <= 1024 and 0 < args.duration <= 120 and args.warmup >= 0):
        parser.error("concurrency must be 1..1024 and duration 0..120 s")
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(run(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
