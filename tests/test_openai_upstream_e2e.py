"""The `openai` provider through a real `vidgate serve` process: the downstream gateway routes
its model to a real /v1/videos upstream on loopback (tests/openai_videos_server.py).

Every case checks what the downstream charged and refunded its user, and what reached the
upstream.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from openai_videos_server import FakeVideosUpstream, RecordedCreate, tiny_mp4
from support import GatewayProcess, decode_mp4, static_http_server, wait_for_task

pytestmark = pytest.mark.e2e

PRICE = 30  # n_frames "10"
CATALOGUE = """
[models.sora2]
types = ["text-to-video", "image-to-video"]
options.aspect_ratio = { values = ["landscape", "portrait", "square"], default = "landscape" }
options.n_frames = { values = ["10", "15"], default = "10" }
price = { by_option = { n_frames = { "10" = 30, "15" = 45 } } }
channels = [{ provider = "openai", upstream_model = "sora-2" }]
"""


def providers_file(base_url: str) -> str:
    return (
        f'[providers.openai]\nkind = "openai"\nbase_url = "{base_url}"\n'
        'api_key_env = "OPENAI_UPSTREAM_KEY"\n'
        "poll_interval_s = 0.3\nmax_poll_interval_s = 1.0\nrequest_timeout_s = 10\n"
    )


@dataclass
class Setup:
    upstream: FakeVideosUpstream
    downstream: GatewayProcess
    image_url: str
    image: bytes


def small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (20, 180, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("openai")
    image = small_png()
    with (
        FakeVideosUpstream() as upstream,
        static_http_server({"/green.png": ("image/png", image)}) as images,
    ):
        config = root / "providers.toml"
        config.write_text(providers_file(upstream.base_url))
        catalogue = root / "catalogue.toml"
        catalogue.write_text(CATALOGUE)
        downstream = GatewayProcess(
            root / "downstream",
            env={
                "VIDGATE_PROVIDERS_PATH": str(config),
                "VIDGATE_CATALOGUE_PATH": str(catalogue),
                "OPENAI_UPSTREAM_KEY": upstream.api_key,
            },
        ).start()
        try:
            yield Setup(upstream, downstream, f"{images}/green.png", image)
        finally:
            downstream.stop()


def balance(server: GatewayProcess) -> int:
    answer = httpx.get(
        f"{server.base_url}/api/v1/account/balances", headers=server.headers, timeout=5
    )
    assert answer.status_code == 200, answer.text
    credits: int = answer.json()["data"]["credits"]
    return credits


def created(server: GatewayProcess, body: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(
        f"{server.base_url}/api/v1/videos/generate", json=body, headers=server.headers, timeout=10
    )
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    assert data["credits_used"] == PRICE
    return data


def creates_for(upstream: FakeVideosUpstream, task_id: str) -> list[RecordedCreate]:
    return [c for c in upstream.creates if c.headers.get("idempotency-key") == task_id]


def test_completed_upstream_video_is_rehosted_and_charged_once(
    setup: Setup, tmp_path: Path
) -> None:
    before = balance(setup.downstream)
    task = created(
        setup.downstream, {"model": "sora2", "prompt": "a lighthouse at dusk", "n_frames": "10"}
    )
    done = wait_for_task(setup.downstream, task["task_id"], timeout_s=30)
    assert done["status"] == "completed", done
    assert done["progress"] == 100
    assert done["video_url"].startswith(setup.downstream.base_url + "/")  # re-hosted
    assert setup.upstream.base_url.removesuffix("/v1") not in done["video_url"]

    answer = httpx.get(done["video_url"], timeout=30)
    assert answer.status_code == 200
    video = tmp_path / "video.mp4"
    video.write_bytes(answer.content)
    assert answer.content == tiny_mp4()  # the upstream's file, byte for byte
    assert len(decode_mp4(video)["frames"]) > 0

    recorded = creates_for(setup.upstream, task["task_id"])
    assert len(recorded) == 1
    fields = recorded[0].fields
    assert fields["model"] == "sora-2"
    assert fields["size"] == "1280x720"  # 720p landscape as it is
    assert fields["seconds"] == "12"  # 10 s: the shortest allowed length not shorter
    assert fields["prompt"] == "a lighthouse at dusk"
    assert recorded[0].reference is None
    assert recorded[0].headers["authorization"] == f"Bearer {setup.upstream.api_key}"
    assert balance(setup.downstream) == before - PRICE


def test_an_upstream_failure_fails_the_task_with_its_reason_and_refunds(setup: Setup) -> None:
    before = balance(setup.downstream)
    task = created(
        setup.downstream, {"model": "sora2", "prompt": "a cat [fail: the upstream says no]"}
    )
    done = wait_for_task(setup.downstream, task["task_id"], timeout_s=30)
    assert done["status"] == "failed", done
    assert "the upstream says no" in done["error_message"]
    assert done["credits_refunded"] == done["credits_used"] == PRICE
    assert len(creates_for(setup.upstream, task["task_id"])) == 1
    assert balance(setup.downstream) == before  # refunded with the task's end, one transaction


def test_a_job_blocked_after_acceptance_fails_as_content_blocked_and_refunds(
    setup: Setup,
) -> None:
    before = balance(setup.downstream)
    task = created(setup.downstream, {"model": "sora2", "prompt": "something [blocked]"})
    done = wait_for_task(setup.downstream, task["task_id"], timeout_s=30)
    assert done["status"] == "failed", done
    assert done["error_code"] == "content_blocked"
    assert done["credits_refunded"] == done["credits_used"] == PRICE
    assert len(creates_for(setup.upstream, task["task_id"])) == 1
    assert balance(setup.downstream) == before  # refunded with the task's end, one transaction


def test_image_to_video_uploads_the_fetched_image_as_input_reference(
    setup: Setup, tmp_path: Path
) -> None:
    before = balance(setup.downstream)
    task = created(
        setup.downstream,
        {
            "model": "sora2",
            "type": "image-to-video",
            "prompt": "make the field sway",
            "image_urls": [setup.image_url],
        },
    )
    done = wait_for_task(setup.downstream, task["task_id"], timeout_s=30)
    assert done["status"] == "completed", done
    video = tmp_path / "i2v.mp4"
    video.write_bytes(httpx.get(done["video_url"], timeout=30).content)
    assert len(decode_mp4(video)["frames"]) > 0

    recorded = creates_for(setup.upstream, task["task_id"])
    assert len(recorded) == 1
    assert recorded[0].reference == setup.image
    assert recorded[0].reference_type == "image/png"
    assert recorded[0].fields["model"] == "sora-2"
    assert balance(setup.downstream) == before - PRICE
