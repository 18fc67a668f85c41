"""The `apimall` provider against a second, real vidgate process on loopback: the downstream
gateway routes its models to the upstream over API Mall's own protocol.

Every case checks both ledgers: what the downstream charged and refunded its user, and what the
upstream charged and refunded the downstream's accounts.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import GatewayProcess, create_key_with_cli, decode_mp4, free_port, wait_for_task

pytestmark = pytest.mark.e2e

SAMPLE_OPTIONS = """
options.duration = { values = ["1"], default = "1" }
options.resolution = { values = ["240p"], default = "240p" }
"""
# The downstream's catalogue: each model exercises one way an upstream behaves.
CATALOGUE = f"""
[models.sora2]
types = ["text-to-video", "image-to-video"]
options.aspect_ratio = {{ values = ["landscape", "portrait", "square"], default = "landscape" }}
options.n_frames = {{ values = ["10", "15"], default = "10" }}
price = {{ by_option = {{ n_frames = {{ "10" = 30, "15" = 45 }} }} }}
channels = [{{ provider = "apimall", upstream_model = "sora2" }}]

[models.relay]
{SAMPLE_OPTIONS}
price = {{ base = 5 }}
channels = [
    {{ provider = "dead", upstream_model = "sample" }},
    {{ provider = "apimall", upstream_model = "sample" }},
]

[models.deadonly]
{SAMPLE_OPTIONS}
price = {{ base = 5 }}
[[models.deadonly.channels]]
provider = "dead"
retry = {{ base_s = 0.2, max_delay_s = 0.2, max_attempts = 50 }}

[models.quick]
{SAMPLE_OPTIONS}
price = {{ base = 5 }}
time_limit_seconds = 3
channels = [{{ provider = "apimall", upstream_model = "sample" }}]

[models.broke]
{SAMPLE_OPTIONS}
price = {{ base = 5 }}
channels = [
    {{ provider = "broke", upstream_model = "sample" }},
    {{ provider = "apimall", upstream_model = "sample" }},
]

[models.dropped]
{SAMPLE_OPTIONS}
price = {{ base = 5 }}
[[models.dropped.channels]]
provider = "dropper"
upstream_model = "sample"
retry = {{ base_s = 0.3, max_delay_s = 0.5 }}
[[models.dropped.channels]]
provider = "apimall"
upstream_model = "sample"
"""


def providers_file(upstream: str, dead: str, dropper: str) -> str:
    common = "poll_interval_s = 0.3\nmax_poll_interval_s = 1.0\nrequest_timeout_s = 10\n"
    return (
        f'[providers.apimall]\nkind = "apimall"\nbase_url = "{upstream}"\n'
        f'api_key_env = "UPSTREAM_KEY"\n{common}\n'
        f'[providers.dead]\nkind = "apimall"\nbase_url = "{dead}"\n'
        f'api_key_env = "UPSTREAM_KEY"\n{common}\n'
        f'[providers.broke]\nkind = "apimall"\nbase_url = "{upstream}"\n'
        f'api_key_env = "BROKE_KEY"\n{common}\n'
        f'[providers.dropper]\nkind = "apimall"\nbase_url = "{dropper}"\n'
        f'api_key_env = "DROPPER_KEY"\n{common}'
    )


class DroppingProxy:
    """Forwards to the upstream, but the first create's answer never comes back: the upstream
    accepted the task and the connection is closed before a byte of the answer is sent."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.dropped = 0
        self.creates = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")
                }
                answer = httpx.request(
                    method, proxy.upstream + self.path, headers=headers, content=body, timeout=30
                )
                if method == "POST" and self.path.endswith("/generate"):
                    proxy.creates += 1
                    if proxy.dropped == 0:
                        proxy.dropped += 1
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                self.send_response(answer.status_code)
                for name in ("Content-Type", "Retry-After"):
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Pair:
    upstream: GatewayProcess
    downstream: GatewayProcess
    broke_key: str
    dropper_key: str
    proxy: DroppingProxy


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("apimall")
    with ExitStack() as cleanup:  # whatever started is stopped, even if a later step fails
        upstream = GatewayProcess(root / "upstream")
        cleanup.callback(upstream.stop)
        upstream.start()
        broke_key = create_key_with_cli(upstream.env, title="broke", credits=0)
        dropper_key = create_key_with_cli(upstream.env, title="dropper", credits=100)
        proxy = DroppingProxy(upstream.base_url)
        cleanup.callback(proxy.close)
        dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        config = root / "providers.toml"
        config.write_text(providers_file(upstream.base_url, dead, proxy.base_url))
        catalogue = root / "catalogue.toml"
        catalogue.write_text(CATALOGUE)
        assert upstream.api_key is not None
        downstream = GatewayProcess(
            root / "downstream",
            env={
                "VIDGATE_PROVIDERS_PATH": str(config),
                "VIDGATE_CATALOGUE_PATH": str(catalogue),
                "UPSTREAM_KEY": upstream.api_key,
                "BROKE_KEY": broke_key,
                "DROPPER_KEY": dropper_key,
            },
        )
        cleanup.callback(downstream.stop)
        downstream.start()
        yield Pair(upstream, downstream, broke_key, dropper_key, proxy)


def balance(server: GatewayProcess, key: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else server.headers
    answer = httpx.get(f"{server.base_url}/api/v1/account/balances", headers=headers, timeout=5)
    assert answer.status_code == 200, answer.text
    credits: int = answer.json()["data"]["credits"]
    return credits


def history(server: GatewayProcess, key: str | None = None) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}"} if key else server.headers
    answer = httpx.get(
        f"{server.base_url}/api/v1/videos/history?limit=50", headers=headers, timeout=5
    )
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["data"]["items"]
    return items


def create(server: GatewayProcess, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/api/v1/videos/generate", json=body, headers=server.headers, timeout=10
    )


def created(server: GatewayProcess, body: dict[str, Any]) -> dict[str, Any]:
    answer = create(server, body)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def newest_upstream_task(pair: Pair, key: str | None = None) -> dict[str, Any]:
    return history(pair.upstream, key)[0]


def test_completed_on_the_upstream_and_hosted_by_the_downstream(pair: Pair, tmp_path: Path) -> None:
    down_before, up_before = balance(pair.downstream), balance(pair.upstream)
    up_tasks = len(history(pair.upstream))
    task = created(pair.downstream, {"model": "sora2", "prompt": "a lighthouse", "n_frames": "10"})
    assert task["credits_used"] == 30
    done = wait_for_task(pair.downstream, task["task_id"], timeout_s=90)
    assert done["status"] == "completed", done
    assert done["video_url"].startswith(pair.downstream.base_url + "/")  # re-hosted
    video = tmp_path / "video.mp4"
    video.write_bytes(httpx.get(done["video_url"], timeout=30).content)
    decoded = decode_mp4(video)
    assert (decoded["width"], decoded["height"]) == (1280, 720)
    assert len(decoded["frames"]) == 240

    upstream_tasks = history(pair.upstream)
    assert len(upstream_tasks) == up_tasks + 1
    assert upstream_tasks[0]["status"] == "completed"
    assert upstream_tasks[0]["model"] == "sora2"
    assert balance(pair.downstream) == down_before - 30
    assert balance(pair.upstream) == up_before - 30


def test_the_upstream_failing_a_task_refunds_on_both_sides_with_its_reason(pair: Pair) -> None:
    down_before, up_before = balance(pair.downstream), balance(pair.upstream)
    task = created(pair.downstream, {"model": "relay", "prompt": "a cat [fail: no cats today]"})
    done = wait_for_task(pair.downstream, task["task_id"], timeout_s=60)
    assert done["status"] == "failed"
    assert "no cats today" in done["error_message"]
    assert done["credits_refunded"] == done["credits_used"] == 5
    upstream_task = newest_upstream_task(pair)
    assert upstream_task["status"] == "failed"
    assert upstream_task["credits_refunded"] == upstream_task["credits_used"]
    assert balance(pair.downstream) == down_before
    assert balance(pair.upstream) == up_before


def test_a_dead_upstream_fails_over_to_the_next_channel(pair: Pair) -> None:
    down_before, up_before = balance(pair.downstream), balance(pair.upstream)
    task = created(pair.downstream, {"model": "relay", "prompt": "a boat"})
    done = wait_for_task(pair.downstream, task["task_id"], timeout_s=60)
    assert done["status"] == "completed", done
    assert newest_upstream_task(pair)["status"] == "completed"
    assert balance(pair.downstream) == down_before - 5
    assert balance(pair.upstream) == up_before - 1  # the upstream's sample costs 1
    assert "channel dead refused it" in pair.downstream.log()


def test_every_channel_down_answers_503_and_charges_nothing(pair: Pair) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        before = balance(pair.downstream)
        tasks_before = len(history(pair.downstream))
        answer = create(pair.downstream, {"model": "deadonly", "prompt": "a wave"})
        if answer.status_code == 503:
            break
        assert answer.status_code == 200, answer.text
        time.sleep(0.5)  # its submit fails, and the dead channel's breaker counts it
    else:
        pytest.fail("the dead channel's breaker never opened")
    error = answer.json()
    assert error["success"] is False
    assert error["error"]["code"] == "upstream_unavailable"
    assert int(answer.headers["Retry-After"]) >= 1
    assert balance(pair.downstream) == before
    assert len(history(pair.downstream)) == tasks_before


def test_a_slow_upstream_hits_our_time_limit_and_we_refund(pair: Pair) -> None:
    down_before, up_before = balance(pair.downstream), balance(pair.upstream)
    task = created(pair.downstream, {"model": "quick", "prompt": "a snail [slow:30]"})
    done = wait_for_task(pair.downstream, task["task_id"], timeout_s=30)
    assert done["status"] == "failed"
    assert done["error_code"] == "timeout"
    assert done["credits_refunded"] == 5
    assert balance(pair.downstream) == down_before
    # The upstream still holds the job (API Mall's protocol has no cancel) and charged for it.
    assert newest_upstream_task(pair)["status"] in ("pending", "processing")
    assert balance(pair.upstream) == up_before - 1


def test_an_upstream_402_is_a_channel_fault_and_the_task_fails_over(pair: Pair) -> None:
    down_before, up_before = balance(pair.downstream), balance(pair.upstream)
    task = created(pair.downstream, {"model": "broke", "prompt": "a coin"})
    done = wait_for_task(pair.downstream, task["task_id"], timeout_s=60)
    assert done["status"] == "completed", done
    assert "out of credit upstream" in pair.downstream.log()
    assert history(pair.upstream, pair.broke_key) == []
    assert balance(pair.upstream, pair.broke_key) == 0
    assert balance(pair.upstream) == up_before - 1
    assert balance(pair.downstream) == down_before - 5


def test_a_dropped_answer_to_a_submit_leaves_exactly_one_upstream_task(pair: Pair) -> None:
    down_before = balance(pair.downstream)
    dropper_before, main_before = balance(pair.upstream, pair.dropper_key), balance(pair.upstream)
    main_tasks = len(history(pair.upstream))
    task = created(pair.downstream, {"model": "dropped", "prompt": "a letter"})
    done = wait_for_task(pair.downstream, task["task_id"], timeout_s=60)
    assert done["status"] == "completed", done
    assert pair.proxy.dropped == 1
    assert pair.proxy.creates >= 2  # asked again, through the same channel
    upstream_tasks = history(pair.upstream, pair.dropper_key)
    assert len(upstream_tasks) == 1  # the same Idempotency-Key found the first one
    assert upstream_tasks[0]["status"] == "completed"
    assert len(history(pair.upstream)) == main_tasks  # never failed over
    assert balance(pair.upstream, pair.dropper_key) == dropper_before - 1
    assert balance(pair.upstream) == main_before
    assert balance(pair.downstream) == down_before - 5


def channel_row(pair: Pair, channel: str) -> list[str]:
    shown = subprocess.run(
        [sys.executable, "-m", "vidgate", "credits", "show"],
        env={**pair.downstream.env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for line in shown.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells and cells[0] == channel:
            return cells
    return [channel, "0", "0", "0 (0 reported)", "-"]


def test_credits_show_sets_what_we_charged_against_what_the_upstream_charged(
    pair: Pair,
) -> None:
    before = channel_row(pair, "apimall")
    task = created(pair.downstream, {"model": "relay", "prompt": "a receipt"})
    assert wait_for_task(pair.downstream, task["task_id"], timeout_s=60)["status"] == "completed"
    after = channel_row(pair, "apimall")
    assert int(after[1]) == int(before[1]) + 1  # tasks
    assert int(after[2]) == int(before[2]) + 5  # charged by us
    cost_before, cost_after = (int(row[3].split()[0]) for row in (before, after))
    assert cost_after == cost_before + 1  # the upstream's sample costs 1
    assert after[4] != "-"
