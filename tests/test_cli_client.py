"""`vidgate generate` and `vidgate status` as a user runs them: subprocesses against a real
gateway, with the base URL and key in the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import GatewayProcess, decode_mp4, free_port

pytestmark = pytest.mark.e2e

FAST = ["--model", "sample", "--duration", "1", "--resolution", "240p"]


def vidgate(
    *args: str, cwd: Path, server: GatewayProcess | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDGATE_")}
    if server is not None:
        env["VIDGATE_BASE_URL"] = server.base_url
        env["VIDGATE_API_KEY"] = server.api_key or ""
    return subprocess.run(
        [sys.executable, "-m", "vidgate", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The commands' working directory (tmp_path also holds the gateway's data dir)."""
    path = tmp_path / "work"
    path.mkdir()
    return path


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_generate_wait_downloads_the_video(live_gateway: GatewayProcess, workdir: Path) -> None:
    done = vidgate(
        "generate", "a red balloon", *FAST, "--wait", "-o", "out.mp4", cwd=workdir,
        server=live_gateway,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert last_line(done.stdout) == "out.mp4"
    assert "created task vid_" in done.stderr
    assert "completed 100%" in done.stderr  # readable progress lines when not on a terminal
    video = decode_mp4(workdir / "out.mp4")
    assert (video["width"], video["height"]) == (426, 240)
    assert video["duration_s"] == pytest.approx(1.0, abs=0.1)


def test_generate_prints_the_task_id_then_status_shows_it(
    live_gateway: GatewayProcess, workdir: Path
) -> None:
    created = vidgate("generate", "a quiet pond", *FAST, cwd=workdir, server=live_gateway)
    assert created.returncode == 0, created.stderr
    task_id = last_line(created.stdout)
    assert task_id.startswith("vid_")
    assert "1 credit used" in created.stderr

    shown = vidgate("status", task_id, cwd=workdir, server=live_gateway)
    assert shown.returncode == 0, shown.stderr
    fields = dict(line.split(None, 1) for line in shown.stdout.strip().splitlines())
    assert fields["task_id"] == task_id
    assert fields["model"] == "sample"
    assert fields["status"] in ("pending", "processing", "completed")
    assert fields["credits_used"] == "1"

    as_json = vidgate("status", task_id, "--json", cwd=workdir, server=live_gateway)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["task_id"] == task_id
    assert data["created_at"].endswith("Z")
    assert "resultUrls" in data["output"]


def test_failed_task_exits_1_with_its_message(live_gateway: GatewayProcess, workdir: Path) -> None:
    done = vidgate(
        "generate", "a crash [fail: boom]", *FAST, "--wait", cwd=workdir, server=live_gateway
    )
    assert done.returncode == 1
    assert "failed: boom" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(workdir.iterdir()) == []  # nothing downloaded


def test_server_errors_are_printed_without_traceback(
    live_gateway: GatewayProcess, workdir: Path
) -> None:
    unknown = vidgate("generate", "x", "--model", "nope", cwd=workdir, server=live_gateway)
    assert unknown.returncode == 1
    assert "invalid_request" in unknown.stderr
    assert "unknown model 'nope'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    assert unknown.stdout == ""

    missing = vidgate("status", "vid_nope", cwd=workdir, server=live_gateway)
    assert missing.returncode == 1
    assert "not_found" in missing.stderr

    bad_key = vidgate(
        "status", "vid_nope", "--api-key", "sk-wrong", cwd=workdir, server=live_gateway
    )
    assert bad_key.returncode == 1
    assert "unauthorized" in bad_key.stderr


def test_missing_key_and_unreachable_gateway(workdir: Path) -> None:
    no_key = vidgate("generate", "x", cwd=workdir)
    assert no_key.returncode != 0
    assert "no API key" in no_key.stderr
    assert "VIDGATE_API_KEY" in no_key.stderr
    assert "Traceback" not in no_key.stderr

    url = f"http://127.0.0.1:{free_port()}"
    down = vidgate("status", "vid_x", "--base-url", url, "--api-key", "sk-x", cwd=workdir)
    assert down.returncode == 1
    assert "could not connect" in down.stderr
    assert url in down.stderr
    assert "Traceback" not in down.stderr


def test_options_are_passed_as_data(live_gateway: GatewayProcess, workdir: Path) -> None:
    done = vidgate(
        "generate", "a kite", "--model", "sample",
        "--option", "duration=1", "--option", "resolution=240p",
        "--option", "remove_watermark=true",  # read as JSON: the boolean the option wants
        "--wait", "-o", "kite.mp4", cwd=workdir, server=live_gateway,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    video = decode_mp4(workdir / "kite.mp4")
    assert (video["width"], video["height"]) == (426, 240)

    unknown = vidgate(
        "generate", "x", "--model", "sample", "--option", "colour=red",
        cwd=workdir, server=live_gateway,
    )  # fmt: skip
    assert unknown.returncode == 1
    assert "colour: not an option of model sample" in unknown.stderr
    assert "Traceback" not in unknown.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--option", "seed"], "--option wants NAME=VALUE (got 'seed')"),
        (["--option", "seed=1", "--option", "seed=2"], "--option seed is given twice"),
        (["--duration", "2", "--option", "duration=3"], "--duration and --option duration"),
        (["--option", "prompt=x"], "prompt is a field of the request, not a model option"),
    ],
)
def test_malformed_options_are_refused_before_sending(
    workdir: Path, args: list[str], message: str
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: nothing may be sent
    done = vidgate("generate", "x", *args, "--base-url", url, "--api-key", "sk-x", cwd=workdir)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
