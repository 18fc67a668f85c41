"""Memory and speed of storing a large upstream result: 1 GiB through `store_result`.

Three processes, so that each measures only itself:
  serve  a loopback HTTP server that generates the result on the fly (an MP4 `ftyp` head, then
         zeros, with Content-Length), never holding the body in memory;
  store  a fresh Python process that runs vidgate.worker.media.store_result into a
         LocalFileStore and prints, as JSON, its peak RSS growth (VmHWM from /proc/self/status,
         after resetting the peak to the current RSS), the time taken and the stored size;
  run    (the default) starts both in a temporary directory and prints one line.

    .venv/bin/python bench/result_streaming.py [--size-mib 1024]

tests/test_result_streaming.py runs `serve` and `store` the same way and checks the figures.
Linux only (/proc). Only 127.0.0.1 is used; the stored file is deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

KEY = "vid_streaming.mp4"
PATH = "/result.mp4"
# A 32-byte ISO BMFF `ftyp` box: what net/fetch.py's sniffer recognises as video/mp4.
MP4_HEAD = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"
BLOCK = 1024 * 1024


# -- serve --------------------------------------------------------------------------------


def serve(size: int) -> None:
    """Serve GET /result.mp4 (`size` bytes) until killed; prints the port first."""
    zeros = bytes(BLOCK)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path != PATH:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.write(MP4_HEAD[:size])
            left = size - min(size, len(MP4_HEAD))
            while left > 0:
                step = min(left, BLOCK)
                self.wfile.write(zeros[:step] if step < BLOCK else zeros)
                left -= step

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(httpd.server_address[1], flush=True)
    httpd.serve_forever()


def start_server(size: int) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "serve", "--size", str(size)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    port = process.stdout.readline().strip()
    if not port.isdigit():
        process.kill()
        raise RuntimeError("the result server did not start")
    return process, f"http://127.0.0.1:{port}{PATH}"


# -- store (the measured process) ---------------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} is not in /proc/self/status")


def _reset_peak() -> bool:
    """Set VmHWM back to the current RSS (Linux 4.0+), so the peak is this run's alone."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def store(url: str, directory: Path, max_bytes: int) -> dict[str, Any]:
    # Imported here: the server process has no need of vidgate.
    import ipaddress

    from vidgate.net.fetch import FetchPolicy
    from vidgate.providers.base import JobState, JobStatus
    from vidgate.storage.local import LocalFileStore
    from vidgate.worker.media import store_result

    file_store = LocalFileStore(
        directory / "files", secret=b"bench" * 8, public_url="http://127.0.0.1", url_ttl_s=3600
    )
    policy = FetchPolicy(
        max_bytes=max_bytes,
        timeout_s=300.0,
        allowed_private_networks=(ipaddress.ip_network("127.0.0.0/8"),),
    )
    status = JobStatus(state=JobState.SUCCEEDED, progress=100, result_urls=(url,))

    reset = _reset_peak()
    # Without a reset, growth is measured from the current RSS: an overestimate, never less.
    before_kib = _status_kib("VmRSS")
    started = time.perf_counter()
    asyncio.run(store_result(file_store, KEY, status, policy=policy, work_dir=directory / "work"))
    seconds = time.perf_counter() - started
    peak_kib = _status_kib("VmHWM")
    stored = directory / "files" / KEY
    return {
        "stored_path": str(stored),
        "stored_bytes": stored.stat().st_size,
        "rss_before_kib": before_kib,
        "rss_peak_kib": peak_kib,
        "growth_mib": round((peak_kib - before_kib) / 1024, 1),
        "peak_reset": reset,
        "seconds": round(seconds, 2),
    }


def run_store(url: str, directory: Path, max_bytes: int, timeout_s: float) -> dict[str, Any]:
    """`store` in a fresh child process; returns its JSON."""
    command = [sys.executable, __file__, "store", "--url", url, "--dir", str(directory)]
    done = subprocess.run(
        [*command, "--max-bytes", str(max_bytes)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"store failed ({done.returncode}):\n{done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


# -- run ----------------------------------------------------------------------------------


def describe(figures: dict[str, Any]) -> str:
    mib = figures["stored_bytes"] / (1024 * 1024)
    return (
        f"result streaming: {mib:.0f} MiB stored in {figures['seconds']:.1f} s "
        f"({mib / figures['seconds']:.0f} MiB/s); peak RSS growth {figures['growth_mib']} MiB"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    commands = parser.add_subparsers(dest="command")
    serve_args = commands.add_parser("serve")
    serve_args.add_argument("--size", type=int, required=True)
    store_args = commands.add_parser("store")
    store_args.add_argument("--url", required=True)
    store_args.add_argument("--dir", type=Path, required=True)
    store_args.add_argument("--max-bytes", type=int, required=True)
    run_args = commands.add_parser("run")
    for options in (parser, run_args):
        options.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args(argv)

    if args.command == "serve":
        serve(args.size)
        return 0
    if args.command == "store":
        print(json.dumps(store(args.url, args.dir, args.max_bytes)))
        return 0
    size = args.size_mib * 1024 * 1024
    server, url = start_server(size)
    try:
        with tempfile.TemporaryDirectory(prefix="vidgate-bench-") as directory:
            figures = run_store(url, Path(directory), 2 * size, timeout_s=600)
    finally:
        server.kill()
        server.wait()
    print(describe(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
