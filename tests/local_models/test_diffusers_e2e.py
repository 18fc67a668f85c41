"""Local open models end to end on the CPU: tiny random-weight pipelines of each kind, saved in
diffusers' layout, served by the `diffusers` provider of a real `vidgate serve` (loaded through
the same from_pretrained path a real model folder takes) and asked for videos over the API."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from support import GatewayProcess, decode_mp4, static_http_server, wait_for_task
from vidgate.local_models import PIPELINE_KINDS
from vidgate.local_models.tiny import make_tiny

pytestmark = pytest.mark.e2e

GENERATE = "/api/v1/videos/generate"
PRICE = 3
FPS = 8  # the providers file's fps: 1 s is 9 frames for both families (4k+1 and 8k+1)
OPTIONS = """
options.size = {{ values = ["64x64", "96x64"], default = "64x64" }}
options.duration = {{ values = ["1", "2"], default = "1" }}
options.seed = {{ type = "integer", min = 0, max = 4294967295 }}
options.negative_prompt = {{ type = "string", max_length = 200 }}
options.num_inference_steps = {{ type = "integer", min = 1, max = 1000, default = 2 }}
options.guidance_scale = {{ values = ["1.0", "5.0"], default = "5.0" }}
price = {{ base = {price} }}
"""


def catalogue_text() -> str:
    models = []
    for name in (*PIPELINE_KINDS, "broken"):
        kind = "image-to-video" if name.endswith("i2v") else "text-to-video"
        models.append(
            f'[models.tiny-{name}]\ndescription = "tiny {name}"\ntypes = ["{kind}"]\n'
            f"time_limit_seconds = 120\n{OPTIONS.format(price=PRICE)}"
            f'channels = [{{ provider = "{name}" }}]\n'
        )
    models.append(  # the time limit of a model stops its generation between steps too
        '[models.tiny-limited]\ndescription = "tiny, 3 s at most"\ntime_limit_seconds = 3\n'
        f'{OPTIONS.format(price=PRICE)}channels = [{{ provider = "wan-t2v" }}]\n'
    )
    return "\n".join(models)


def providers_text(folders: dict[str, Path], broken: Path) -> str:
    tables = [
        f'[providers.{kind}]\nkind = "diffusers"\npipeline = "{kind}"\npath = "{folder}"\n'
        f"fps = {FPS}\nmax_sequence_length = 16\n"
        for kind, folder in folders.items()
    ]
    tables.append(
        f'[providers.broken]\nkind = "diffusers"\npipeline = "wan-t2v"\npath = "{broken}"\n'
    )
    return "\n".join(tables)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_models")
    return {kind: make_tiny(kind, root / kind) for kind in PIPELINE_KINDS}


@pytest.fixture(scope="module")
def server(
    tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("diffusers_e2e")
    broken = root / "no-weights-here"
    broken.mkdir()
    (root / "models.toml").write_text(catalogue_text())
    (root / "providers.toml").write_text(providers_text(tiny_models, broken))
    env = {
        "VIDGATE_CATALOGUE_PATH": str(root / "models.toml"),
        "VIDGATE_PROVIDERS_PATH": str(root / "providers.toml"),
        "VIDGATE_PROVIDER_POLL_INTERVAL_S": "0.1",
    }
    gateway = GatewayProcess(root / "gateway", env=env).start(timeout_s=60)
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def image_url() -> Iterator[str]:
    buffer = io.BytesIO()
    Image.new("RGB", (80, 60), (220, 40, 30)).save(buffer, format="PNG")
    with static_http_server({"/red.png": ("image/png", buffer.getvalue())}) as base:
        yield f"{base}/red.png"


def create(server: GatewayProcess, model: str, **fields: Any) -> str:
    body = {"model": f"tiny-{model}", "prompt": "a red fox in the snow", **fields}
    response = httpx.post(f"{server.base_url}{GENERATE}", json=body, headers=server.headers)
    assert response.status_code == 200, response.text
    task_id: str = response.json()["data"]["task_id"]
    return task_id


def balance(server: GatewayProcess) -> int:
    response = httpx.get(f"{server.base_url}/api/v1/account/balances", headers=server.headers)
    credits: int = response.json()["data"]["credits"]
    return credits


def video_of(server: GatewayProcess, task: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    assert task["status"] == "completed", task
    path = tmp_path / f"{task['task_id']}.mp4"
    path.write_bytes(httpx.get(task["video_url"], timeout=30).content)
    return decode_mp4(path)


@pytest.mark.parametrize("kind", PIPELINE_KINDS)
def test_each_pipeline_kind_makes_a_video_of_the_requested_shape(
    server: GatewayProcess, image_url: str, tmp_path: Path, kind: str
) -> None:
    images = {"type": "image-to-video", "image_urls": [image_url]} if kind.endswith("i2v") else {}
    task_id = create(server, kind, size="96x64", duration="2", seed=3, **images)
    video = video_of(server, wait_for_task(server, task_id, timeout_s=90), tmp_path)
    frames = 4 * 4 + 1 if kind.startswith("wan") else 2 * 8 + 1  # 2 s at 8 fps, rounded up
    assert (video["codec"], video["width"], video["height"]) == ("h264", 96, 64)
    assert (len(video["frames"]), video["fps"]) == (frames, FPS)


def test_the_same_seed_gives_the_same_frames(server: GatewayProcess, tmp_path: Path) -> None:
    first, again, other = (create(server, "wan-t2v", seed=seed) for seed in (11, 11, 12))
    videos = [
        video_of(server, wait_for_task(server, task, timeout_s=60), tmp_path)["frames"]
        for task in (first, again, other)
    ]
    assert len(videos[0]) == 9
    assert all(np.array_equal(a, b) for a, b in zip(videos[0], videos[1], strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(videos[0], videos[2], strict=True))


def metric(text: str, name: str, provider: str) -> float:
    found = re.search(rf'^{name}{{provider="{provider}"}} (\S+)$', text, re.MULTILINE)
    assert found, f"{name} for {provider} not in /metrics"
    return float(found.group(1))


def test_metrics_show_load_time_steps_and_videos(server: GatewayProcess) -> None:
    task = wait_for_task(server, create(server, "ltx-t2v", num_inference_steps=3))
    assert task["status"] == "completed", task
    text = httpx.get(f"{server.base_url}/metrics").text
    assert metric(text, "vidgate_local_model_load_seconds", "ltx-t2v") > 0
    assert metric(text, "vidgate_local_videos_total", "ltx-t2v") >= 1
    assert metric(text, "vidgate_local_step_seconds_count", "ltx-t2v") >= 3
    assert metric(text, "vidgate_local_step_seconds_sum", "ltx-t2v") > 0


def watch_progress(server: GatewayProcess, task_id: str, *, until: int = 100) -> list[int]:
    """Every distinct progress value a fast-polling client sees, until it reaches `until`."""
    seen: list[int] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        data = httpx.get(
            f"{server.base_url}/api/v1/videos/{task_id}", headers=server.headers
        ).json()["data"]
        if not seen or data["progress"] != seen[-1]:
            seen.append(data["progress"])
        if data["status"] in ("completed", "failed") or data["progress"] >= until:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} made no progress: {seen}")


def test_progress_rises_through_the_denoising_steps(server: GatewayProcess) -> None:
    task_id = create(server, "wan-t2v", num_inference_steps=150, size="96x64", duration="2")
    seen = watch_progress(server, task_id)
    assert seen == sorted(seen)
    assert seen[-1] == 100
    assert len([p for p in seen if 0 < p < 100]) >= 2, seen  # steps, not a jump at the end


def test_cancel_mid_run_stops_the_generation_and_refunds(server: GatewayProcess) -> None:
    before = balance(server)
    task_id = create(server, "wan-t2v", num_inference_steps=1000, size="96x64", duration="2")
    seen = watch_progress(server, task_id, until=1)
    assert 0 < seen[-1] < 90, seen  # it is denoising
    cancelled = httpx.post(
        f"{server.base_url}/api/v1/videos/{task_id}/cancel", headers=server.headers
    )
    assert cancelled.status_code == 200, cancelled.text
    task = wait_for_task(server, task_id)
    assert (task["status"], task["error_code"], task["credits_refunded"]) == (
        "failed",
        "cancelled",
        PRICE,
    )
    assert balance(server) == before
    # The worker let go of it between steps: the next task runs at once and completes.
    started = time.monotonic()
    follow = wait_for_task(server, create(server, "wan-t2v"), timeout_s=60)
    assert follow["status"] == "completed", follow
    assert time.monotonic() - started < 30
    assert "1000 steps" not in server.log()


def test_the_time_limit_stops_a_long_generation_and_refunds(server: GatewayProcess) -> None:
    before = balance(server)
    task_id = create(server, "limited", num_inference_steps=1000, size="96x64", duration="2")
    task = wait_for_task(server, task_id, timeout_s=30)
    assert (task["status"], task["error_code"], task["credits_refunded"]) == (
        "failed",
        "timeout",
        PRICE,
    )
    assert "timed out after 3 s" in task["error_message"]
    assert balance(server) == before
    assert wait_for_task(server, create(server, "wan-t2v"), timeout_s=30)["status"] == "completed"
    assert "1000 steps" not in server.log()


def test_a_bad_weights_folder_fails_clearly_refunds_and_leaves_the_worker_healthy(
    server: GatewayProcess,
) -> None:
    before = balance(server)
    task = wait_for_task(server, create(server, "broken"))
    assert (task["status"], task["error_code"]) == ("failed", "model_unavailable")
    assert "no model_index.json" in task["error_message"]
    assert task["credits_refunded"] == PRICE
    assert balance(server) == before
    assert wait_for_task(server, create(server, "ltx-t2v"))["status"] == "completed"


def test_a_worker_killed_mid_generation_leaves_the_job_to_the_next_one(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """Its job lived in the dead process; the next worker generates it again (nobody paid an
    upstream), once the dead one's lease has expired."""
    (tmp_path / "models.toml").write_text(catalogue_text())
    (tmp_path / "providers.toml").write_text(providers_text(tiny_models, tmp_path))
    env = {
        "VIDGATE_CATALOGUE_PATH": str(tmp_path / "models.toml"),
        "VIDGATE_PROVIDERS_PATH": str(tmp_path / "providers.toml"),
    }
    first = GatewayProcess(tmp_path / "gateway", env=env).start(timeout_s=60)
    try:
        task_id = create(first, "wan-t2v", num_inference_steps=60, seed=5)
        watch_progress(first, task_id, until=1)
        first.kill()
    finally:
        first.stop()
    # The same database and Redis as the first (the scale pass gave it fresh ones).
    shared = {
        k: v for k, v in first.env.items() if k in ("VIDGATE_DATABASE_URL", "VIDGATE_REDIS_URL")
    }
    second = GatewayProcess(tmp_path / "gateway", env={**env, **shared})
    second.api_key, second.port = first.api_key, first.port
    second.base_url = first.base_url
    second.start(timeout_s=60)
    try:
        task = wait_for_task(second, task_id, timeout_s=90)
        assert task["status"] == "completed", task
        assert task["credits_refunded"] == 0
        assert "submitting again" in second.log()
    finally:
        second.stop()
