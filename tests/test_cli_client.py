"""`vidgate generate` and `vidgate status` as a user runs them: subprocesses against a real
gateway, with the base URL and key in the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from support import GatewayProcess, decode_mp4, free_port, static_http_server

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


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """A failed command's one line on stderr (and no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_unwritable_output_is_refused_before_a_task_is_paid_for(
    live_gateway: GatewayProcess, workdir: Path
) -> None:
    (workdir / "a-file").write_text("")
    (workdir / "a-folder").mkdir()
    for output, message in [
        ("a-file/out.mp4", f"--output: cannot write a-file/out.mp4: {workdir / 'a-file'} is not"),
        ("a-folder", "--output: a-folder is a directory; name the file to write"),
    ]:
        done = vidgate("generate", "x", *FAST, "--wait", "-o", output, cwd=workdir,
                       server=live_gateway)  # fmt: skip
        assert done.returncode == 2
        assert message in error_line(done)
    history = httpx.get(f"{live_gateway.base_url}/api/v1/videos/history",
                        headers=live_gateway.headers, timeout=10)  # fmt: skip
    assert history.json()["data"]["items"] == []  # nothing created, nothing charged


def test_download_that_cannot_be_written_names_the_task(
    live_gateway: GatewayProcess, workdir: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDGATE_")}
    env |= {
        "VIDGATE_BASE_URL": live_gateway.base_url,
        "VIDGATE_API_KEY": live_gateway.api_key or "",
    }
    command = [sys.executable, "-m", "vidgate", "generate", "slow [slow:2]", *FAST, "--wait",
               "-o", "later/out.mp4"]  # fmt: skip
    with subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as running:
        assert running.stderr is not None
        first = running.stderr.readline()
        assert first.startswith("created task vid_"), first
        # The task is paid for and rendering; now the folder it is to be saved in cannot be made.
        (workdir / "later").write_text("")
        _out, rest = running.communicate(timeout=60)
    assert running.returncode == 1
    task_id = first.split()[2]
    last = rest.strip().splitlines()[-1]
    assert last.startswith(f"error: task {task_id} completed, but later/out.mp4 could not be"), rest
    assert "Traceback" not in rest


def test_a_server_that_is_not_a_gateway_and_a_bad_url(workdir: Path) -> None:
    with static_http_server({}) as url:  # answers 404 with an HTML page to everything
        other = vidgate("status", "vid_x", "--base-url", url, "--api-key", "sk-x", cwd=workdir)
    assert other.returncode == 1
    assert error_line(other) == (
        f"error: {url} answered HTTP 404 without an API error: is it a vidgate gateway? "
        "(set it with --base-url or VIDGATE_BASE_URL)"
    )
    bad = vidgate("status", "vid_x", "--base-url", "localhost:8000", "--api-key", "sk-x",
                  cwd=workdir)  # fmt: skip
    assert bad.returncode == 2
    assert "gateway URL 'localhost:8000' is not an http(s) URL" in error_line(bad)
