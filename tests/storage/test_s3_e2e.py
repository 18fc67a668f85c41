"""A real `vidgate serve` keeping its results in an S3 bucket (moto's server on loopback):
results land in the bucket under the prefix, clients download them by presigned URL (API Mall's
`video_url`, the /v1 surface's content and preview variants by redirect), uploads of
reference images are read back from the bucket by the worker, and nothing stays on local disk."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import openai
import pytest
from PIL import Image

from openai_surface.helpers import mean_rgb, red_png, sdk
from s3_server import MotoServer
from support import GatewayProcess, decode_mp4, wait_for_task

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning"),
]

PREFIX = "vidgate/results"


@pytest.fixture(scope="module")
def bucket(moto: MotoServer) -> str:
    return moto.new_bucket()


@pytest.fixture(scope="module")
def server(
    moto: MotoServer, bucket: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    data_dir = tmp_path_factory.mktemp("s3_gateway") / "gateway"
    gateway = GatewayProcess(data_dir, env=moto.gateway_env(bucket, PREFIX)).start()
    yield gateway
    gateway.stop()


@pytest.fixture
def client(server: GatewayProcess) -> Iterator[openai.OpenAI]:
    with sdk(server) as opened:
        yield opened


def local_files(server: GatewayProcess) -> list[Path]:
    """Every file under the data dir's files/ and work/ folders: results and leftovers."""
    return sorted(
        path
        for folder in ("files", "work")
        if (server.data_dir / folder).exists()
        for path in (server.data_dir / folder).rglob("*")
        if path.is_file()
    )


def test_a_result_lands_in_the_bucket_and_its_presigned_url_downloads_it(
    server: GatewayProcess, moto: MotoServer, bucket: str, tmp_path: Path
) -> None:
    created = httpx.post(
        f"{server.base_url}/api/v1/videos/generate",
        headers=server.headers,
        json={"model": "sample", "prompt": "a lighthouse", "duration": "2", "resolution": "240p"},
        timeout=10,
    )
    assert created.status_code == 200, created.text
    task_id = created.json()["data"]["task_id"]
    task = wait_for_task(server, task_id)
    assert task["status"] == "completed", task

    assert f"{PREFIX}/{task_id}.mp4" in moto.keys(bucket, PREFIX)
    url = task["video_url"]
    assert url == task["output"]["resultUrls"][0]
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == moto.endpoint_url
    assert parts.path == f"/{bucket}/{PREFIX}/{task_id}.mp4"
    assert "X-Amz-Signature=" in parts.query
    assert "X-Amz-Expires=86400" in parts.query  # VIDGATE_RESULT_URL_TTL_S's default

    answer = httpx.get(url, timeout=30)  # no API key: the URL is the permission
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "video/mp4"
    path = tmp_path / "result.mp4"
    path.write_bytes(answer.content)
    decoded = decode_mp4(path)
    assert (decoded["codec"], decoded["width"], decoded["height"]) == ("h264", 426, 240)
    assert abs(decoded["duration_s"] - 2.0) < 0.1
    assert decoded["frames"]

    assert local_files(server) == []
    # The gateway's own file route has nothing to serve.
    local = httpx.get(
        f"{server.base_url}/files/{task_id}.mp4",
        params={"expires": 2**40, "signature": "0" * 32},
        timeout=10,
    )
    assert local.status_code == 404, local.text
    assert "bucket" in local.json()["error"]["message"]


def test_v1_content_and_previews_redirect_to_the_bucket(
    server: GatewayProcess, client: openai.OpenAI, moto: MotoServer, bucket: str, tmp_path: Path
) -> None:
    video = client.videos.create_and_poll(prompt="a portrait clip", seconds="4")
    assert video.status == "completed", video

    content = client.videos.download_content(video.id)  # the SDK follows the redirect
    assert content.response.headers["content-type"] == "video/mp4"
    path = tmp_path / "video.mp4"
    content.write_to_file(path)
    decoded = decode_mp4(path)
    assert (decoded["codec"], decoded["width"], decoded["height"]) == ("h264", 720, 1280)

    thumbnail = client.videos.download_content(video.id, variant="thumbnail")
    assert thumbnail.response.headers["content-type"] == "image/webp"
    image = Image.open(io.BytesIO(thumbnail.content))
    assert (image.format, image.size) == ("WEBP", (720, 1280))
    sheet = client.videos.download_content(video.id, variant="spritesheet")
    assert sheet.response.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(sheet.content)).format == "JPEG"

    stored = moto.keys(bucket, f"{PREFIX}/{video.id}")
    assert stored == [
        f"{PREFIX}/{video.id}.mp4",
        f"{PREFIX}/{video.id}.spritesheet.jpg",
        f"{PREFIX}/{video.id}.thumbnail.webp",
    ]
    # What a client without redirects sees: a 307 to the presigned URL, without the key.
    raw = httpx.get(
        f"{server.base_url}/v1/videos/{video.id}/content",
        params={"variant": "thumbnail"},
        headers=server.headers,
        timeout=10,
    )
    assert raw.status_code == 307, raw.text
    location = urlsplit(raw.headers["location"])
    assert location.path == f"/{bucket}/{PREFIX}/{video.id}.thumbnail.webp"
    assert raw.headers["cache-control"] == "no-store"
    assert local_files(server) == []

    client.videos.delete(video.id)
    assert moto.keys(bucket, f"{PREFIX}/{video.id}") == []
    with pytest.raises(openai.NotFoundError):
        client.videos.download_content(video.id)


def test_an_uploaded_reference_image_is_kept_in_the_bucket_and_read_by_the_worker(
    server: GatewayProcess, client: openai.OpenAI, moto: MotoServer, bucket: str, tmp_path: Path
) -> None:
    video = client.videos.create_and_poll(
        prompt="make it move",
        input_reference=("red.png", red_png(), "image/png"),
        size="1280x720",
        seconds="4",
    )
    assert video.status == "completed", video
    path = tmp_path / "i2v.mp4"
    client.videos.download_content(video.id).write_to_file(path)
    frames = decode_mp4(path)["frames"]
    red, green, blue = mean_rgb(frames[len(frames) // 2])
    assert red > 150, (red, green, blue)
    assert max(green, blue) < 90, (red, green, blue)
    inputs = moto.keys(bucket, f"{PREFIX}/input_")
    assert len(inputs) == 1
    assert inputs[0].endswith(".png")
    assert local_files(server) == []
