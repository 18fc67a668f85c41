"""A task's media as files: inputs fetched for providers, results stored, over a loopback server."""

from __future__ import annotations

import io
import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from vidgate.net.fetch import FetchPolicy
from vidgate.providers.base import JobState, JobStatus, LogicalError, TechnicalError
from vidgate.storage.local import LocalFileStore
from vidgate.worker.media import InputRejected, fetch_inputs, store_result


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 10)).save(buf, "PNG")
    return buf.getvalue()


PNG = _png()
MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(range(256)) * 4000
POLICY = FetchPolicy(allowed_private_networks=(ipaddress.ip_network("127.0.0.0/8"),))
BODIES = {"/image.png": PNG, "/result.mp4": MP4, "/page.html": b"<html>hello</html>" * 10}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:
        body = BODIES.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def store(tmp_path: Path) -> LocalFileStore:
    return LocalFileStore(
        tmp_path / "files", secret=b"k" * 32, public_url="http://gw", url_ttl_s=3600
    )


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


async def test_the_first_image_is_fetched_to_a_file(base_url: str, tmp_path: Path) -> None:
    # Only the first image is used; the second is never fetched, unsafe as it is.
    urls = [f"{base_url}/image.png", "http://169.254.169.254/latest/meta-data/"]

    paths = await fetch_inputs(urls, policy=POLICY, work_dir=tmp_path / "work")

    assert len(paths) == 1
    assert paths[0].parent == tmp_path / "work"
    assert paths[0].read_bytes() == PNG
    assert await fetch_inputs([], policy=POLICY, work_dir=tmp_path / "work") == ()


@pytest.mark.parametrize(
    ("path", "code", "message"),
    [
        ("http://10.0.0.1/a.png", "invalid_input", "image_urls[0]: 10.0.0.1 is not a public"),
        ("/missing.png", "input_fetch_failed", "image_urls[0]: 127.0.0.1 answered with HTTP 404"),
        ("/page.html", "input_fetch_failed", "image_urls[0]: the file at 127.0.0.1 is not an"),
    ],
)
async def test_rejected_inputs_carry_the_task_error_code(
    base_url: str, tmp_path: Path, path: str, code: str, message: str
) -> None:
    url = path if path.startswith("http") else f"{base_url}{path}"
    with pytest.raises(InputRejected) as rejected:
        await fetch_inputs([url], policy=POLICY, work_dir=tmp_path / "work")

    assert rejected.value.code == code
    assert rejected.value.message.startswith(message)
    assert files_in(tmp_path / "work") == []


def succeeded(*, result_file: Path | None = None, result_urls: tuple[str, ...] = ()) -> JobStatus:
    return JobStatus(
        state=JobState.SUCCEEDED, progress=100, result_file=result_file, result_urls=result_urls
    )


async def test_a_local_result_file_is_moved_into_the_store(
    store: LocalFileStore, tmp_path: Path
) -> None:
    rendered = tmp_path / "render.mp4"
    rendered.write_bytes(MP4)

    await store_result(
        store, "vid_1.mp4", succeeded(result_file=rendered), policy=POLICY, work_dir=tmp_path
    )

    assert not rendered.exists()
    assert (store.root / "vid_1.mp4").read_bytes() == MP4


async def test_a_remote_result_is_streamed_into_the_store(
    store: LocalFileStore, base_url: str, tmp_path: Path
) -> None:
    status = succeeded(result_urls=(f"{base_url}/result.mp4",))

    await store_result(store, "vid_2.mp4", status, policy=POLICY, work_dir=tmp_path / "work")

    assert (store.root / "vid_2.mp4").read_bytes() == MP4
    assert files_in(tmp_path / "work") == []


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/missing.mp4", "could not download the result: 127.0.0.1 answered with HTTP 404"),
        ("/image.png", "could not download the result: the file at 127.0.0.1 is not a video"),
        ("http://192.168.1.1/r.mp4", "could not download the result: 192.168.1.1 is not a"),
    ],
)
async def test_a_result_that_cannot_be_downloaded_is_a_technical_error(
    store: LocalFileStore, base_url: str, tmp_path: Path, path: str, message: str
) -> None:
    url = path if path.startswith("http") else f"{base_url}{path}"
    with pytest.raises(TechnicalError) as failed:
        await store_result(
            store, "vid_3.mp4", succeeded(result_urls=(url,)), policy=POLICY, work_dir=tmp_path
        )

    assert failed.value.message.startswith(message)
    assert files_in(store.root) == []


async def test_success_without_a_result_is_a_logical_error(
    store: LocalFileStore, tmp_path: Path
) -> None:
    with pytest.raises(LogicalError, match="upstream-a reported success without a result"):
        await store_result(
            store, "vid_4.mp4", succeeded(), policy=POLICY, work_dir=tmp_path, provider="upstream-a"
        )
