"""The seed's own cURL and JavaScript examples, run against `make run`'s server.

Only the base URL and the API key are changed (tests/seed/ holds the examples verbatim).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import GatewayProcess, decode_mp4, service_missing

pytestmark = pytest.mark.e2e
SEED_DIR = Path(__file__).parent / "seed"
SEED_BASE_URL = "https://gateway.apimall.ai"


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        service_missing(f"{tool} is not installed")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def embedded_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """`vidgate serve` exactly as `make run` starts it: embedded defaults, nothing tuned."""
    server = GatewayProcess(tmp_path_factory.mktemp("make-run"), embedded_defaults=True).start()
    yield server
    server.stop()


def seed_script(name: str, server: GatewayProcess, **replacements: str) -> str:
    script = (SEED_DIR / name).read_text().replace(SEED_BASE_URL, server.base_url)
    script = script.replace("YOUR_API_KEY", server.api_key or "")
    for old, new in replacements.items():
        script = script.replace(old, new)
    return script


def check_video(url: str, path: Path) -> None:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200
    path.write_bytes(response.content)
    video = decode_mp4(path)
    assert (video["codec"], video["width"], video["height"]) == ("h264", 1280, 720)
    assert (video["fps"], len(video["frames"])) == (24, 240)  # n_frames "10" = 10 s


def test_startup_log_says_where_sora2_goes(embedded_gateway: GatewayProcess) -> None:
    log = embedded_gateway.log()
    for model in ("sora2", "sora2-stable", "sora2-pro"):
        assert (
            f"model {model}: no upstream configured (apimall); routing to the built-in sample "
            "provider, which renders placeholder videos labelled SAMPLE"
        ) in log
    assert "failure injection" not in log  # off unless asked for


def test_seed_curl_examples(embedded_gateway: GatewayProcess, tmp_path: Path) -> None:
    require("curl")
    created = subprocess.run(
        ["bash", "-c", seed_script("sora2_create.sh", embedded_gateway)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    response = json.loads(created.stdout)
    assert response["success"] is True
    assert response["data"]["credits_used"] == 30
    assert response["data"]["model"] == "sora2"
    task_id = response["data"]["task_id"]

    query = seed_script("sora2_query.sh", embedded_gateway, vid_01HQ9MA3M6V6HC6S5R9V7N4Q4D=task_id)
    for _ in range(120):  # the seed's usage flow: poll every few seconds until it ends
        task = json.loads(
            subprocess.run(
                ["bash", "-c", query], capture_output=True, text=True, timeout=30, check=True
            ).stdout
        )["data"]
        if task["status"] in ("completed", "failed"):
            break
        subprocess.run(["sleep", "0.5"], check=True)
    assert task["status"] == "completed", task
    assert task["credits_used"] == 30
    check_video(task["video_url"], tmp_path / "curl.mp4")


def test_seed_javascript_example(embedded_gateway: GatewayProcess, tmp_path: Path) -> None:
    node = require("node")
    script = tmp_path / "example.js"
    script.write_text(seed_script("sora2_example.js", embedded_gateway))
    result = subprocess.run(
        [node, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", ""), "APIMALL_API_KEY": embedded_gateway.api_key or ""},
    )
    assert result.returncode == 0, result.stderr
    assert "Error" not in result.stderr, result.stderr
    # The example ends with console.log(result): the final task envelope, printed by node.
    assert re.search(r"status: 'completed'", result.stdout), result.stdout
    video_url = re.search(r"video_url: '([^']+)'", result.stdout)
    assert video_url, result.stdout
    check_video(video_url.group(1), tmp_path / "node.mp4")
