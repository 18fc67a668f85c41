"""`vidgate cancel`, and `--wait` following the event stream (or polling a gateway without one),
as a user runs them: subprocesses against real gateways."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import GatewayProcess
from test_cli_client import FAST, last_line, vidgate
from test_sdk import Reply, Seen, error_reply, scripted_server

pytestmark = pytest.mark.e2e


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def api_only(tmp_path: Path) -> Iterator[GatewayProcess]:
    """`serve --no-worker`: its tasks stay pending until cancelled."""
    server = GatewayProcess(tmp_path / "api", serve_args=("--no-worker",)).start()
    yield server
    server.stop()


def fields_of(stdout: str) -> dict[str, str]:
    return dict(line.split(None, 1) for line in stdout.strip().splitlines())


def status_polls(server: GatewayProcess, task_id: str) -> int:
    return len(re.findall(rf'"GET /api/v1/videos/{task_id} HTTP', server.log()))


def test_cancel_prints_the_task_as_it_ended(api_only: GatewayProcess, workdir: Path) -> None:
    created = vidgate("generate", "a paper crane", *FAST, cwd=workdir, server=api_only)
    task_id = last_line(created.stdout)

    done = vidgate("cancel", task_id, cwd=workdir, server=api_only)
    assert done.returncode == 0, done.stderr
    assert f"cancelled task {task_id}: 1 credit of 1 credit refunded" in done.stderr
    fields = fields_of(done.stdout)
    assert (fields["status"], fields["error_code"]) == ("failed", "cancelled")
    assert fields["credits_refunded"] == "1"

    again = vidgate("cancel", task_id, "--json", cwd=workdir, server=api_only)
    assert again.returncode == 1
    assert "task_ended" in again.stderr
    assert "(HTTP 409)" in again.stderr
    assert "Traceback" not in again.stderr

    shown = vidgate("status", task_id, "--json", cwd=workdir, server=api_only)
    assert json.loads(shown.stdout)["error_code"] == "cancelled"


def test_generate_wait_follows_the_stream(live_gateway: GatewayProcess, workdir: Path) -> None:
    done = vidgate(
        "generate", "a slow swan [slow:1]", *FAST, "--wait", "-o", "swan.mp4", cwd=workdir,
        server=live_gateway,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert last_line(done.stdout) == "swan.mp4"
    assert "completed 100%" in done.stderr
    task_id = re.search(r"created task (vid_\w+)", done.stderr)
    assert task_id is not None
    log = live_gateway.log()
    assert f'"GET /api/v1/videos/{task_id.group(1)}/events HTTP/1.1" 200' in log
    assert status_polls(live_gateway, task_id.group(1)) == 1  # the stream brought the rest


def test_status_wait(live_gateway: GatewayProcess, workdir: Path) -> None:
    created = vidgate("generate", "a slow heron [slow:1]", *FAST, cwd=workdir, server=live_gateway)
    task_id = last_line(created.stdout)
    done = vidgate("status", task_id, "--wait", "--timeout", "60", cwd=workdir, server=live_gateway)
    assert done.returncode == 0, done.stderr
    fields = fields_of(done.stdout)
    assert (fields["status"], fields["progress"]) == ("completed", "100%")
    assert status_polls(live_gateway, task_id) == 1

    failing = vidgate("generate", "a storm [fail: boom]", *FAST, cwd=workdir, server=live_gateway)
    failed = vidgate(
        "status", last_line(failing.stdout), "--wait", cwd=workdir, server=live_gateway
    )
    assert failed.returncode == 1
    assert fields_of(failed.stdout)["error_message"] == "boom"

    refused = vidgate("status", task_id, "--timeout", "5", cwd=workdir, server=live_gateway)
    assert refused.returncode == 2
    assert "--timeout needs --wait" in refused.stderr


def test_wait_polls_a_gateway_without_the_stream(workdir: Path) -> None:
    polls = 0

    def older_gateway(request: Seen, index: int) -> Reply:
        nonlocal polls
        if request.path.endswith("/events"):
            return error_reply(404, "not_found")
        polls += 1
        data = {
            "task_id": "vid_old",
            "model": "sample",
            "status": "completed" if polls >= 2 else "processing",
            "progress": 100 if polls >= 2 else 40,
            "created_at": "2026-03-12T09:35:00.000Z",
            "updated_at": "2026-03-12T09:35:01.000Z",
        }
        body = json.dumps({"success": True, "data": data, "request_id": "req_x"}).encode()
        headers = {"Content-Type": "application/json", "X-Poll-After-Ms": "250"}
        return Reply(200, body, headers)

    with scripted_server(older_gateway) as server:
        fake = GatewayProcess(workdir / "unused")
        fake.base_url, fake.api_key = server.url, "sk-x"
        done = vidgate("status", "vid_old", "--wait", cwd=workdir, server=fake)
    assert done.returncode == 0, done.stderr
    assert fields_of(done.stdout)["status"] == "completed"
    assert "processing 40%" in done.stderr
    assert [request.path for request in server.seen] == [
        "/api/v1/videos/vid_old",
        "/api/v1/videos/vid_old/events",
        "/api/v1/videos/vid_old",
    ]
