"""SSRF-safe fetching: real loopback servers for the HTTP paths, no traffic for refused URLs.

Only 127.0.0.0/8 is ever contacted; paths that would need other hosts use a mock transport.
"""

import asyncio
import contextlib
import ipaddress
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal

import httpx
import pytest

from net.fakes import NO_NETWORK, PNG, PUBLIC_IP, FakeNetwork
from vidgate.net.fetch import (
    FetchError,
    FetchPolicy,
    UnsafeURLError,
    fetch_to_file,
    fetch_url,
    sniff_kind,
)

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
ONLY_127_0_0_1 = (ipaddress.ip_network("127.0.0.1/32"),)

HTML = b"<!doctype html><html><head><title>not an image</title></head><body>hi</body></html>"
MP4_HEAD = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + b"\x00" * 64
# Longer than fetch_to_file's write block, and no two blocks alike.
BIG_MP4 = MP4_HEAD + bytes(i % 251 for i in range(2_500_000))


@dataclass
class Server:
    port: int
    paths: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def make_handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet test output
            pass

        def send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def redirect(self, location: str) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()

        def do_GET(self) -> None:
            server.paths.append(self.path)
            path, _, _query = self.path.partition("?")
            # The client hangs up on purpose in the too-large and timeout tests.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.route(path)

        def route(self, path: str) -> None:
            if path == "/image.png":
                self.send(200, PNG, "image/png")
            elif path == "/video.mp4":
                self.send(200, MP4_HEAD, "application/octet-stream")
            elif path == "/big.mp4":
                self.send(200, BIG_MP4, "video/mp4")
            elif path == "/fake.png":
                self.send(200, HTML, "image/png")
            elif path == "/echo-host":
                self.send(200, PNG, "image/png")
                server.paths.append(f"host={self.headers['Host']}")
            elif path.startswith("/hops/"):
                left = int(path.rsplit("/", 1)[1])
                # Alternate absolute and relative Locations.
                if left == 0:
                    self.redirect("/image.png")
                elif left % 2:
                    self.redirect(f"{left - 1}")
                else:
                    self.redirect(server.url(f"/hops/{left - 1}"))
            elif path == "/to-127.0.0.2":
                self.redirect(server.url("/image.png", host="127.0.0.2"))
            elif path == "/to-file":
                self.redirect("file:///etc/passwd")
            elif path == "/to-metadata":
                self.redirect("http://169.254.169.254/latest/meta-data/")
            elif path == "/missing":
                self.send(404, b"nope", "text/plain")
            elif path == "/huge-declared":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(50 * 1024 * 1024))
                self.send_header("Connection", "close")
                self.end_headers()
                # Only a few bytes follow: refusing must rely on the declared length.
                self.wfile.write(PNG)
                self.wfile.flush()
                server.stop.wait(10)
            elif path == "/huge-chunked":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                self.stream_chunked_png()
            elif path == "/slow":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(PNG)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(PNG[:10])
                self.wfile.flush()
                server.stop.wait(10)
            else:
                self.send(404, b"unknown", "text/plain")

        def stream_chunked_png(self) -> None:
            block = PNG + b"\x00" * (64 * 1024 - len(PNG))
            filler = b"\x00" * (64 * 1024)
            sent = 0
            while sent < 50 * 1024 * 1024 and not server.stop.is_set():
                data = block if sent == 0 else filler
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                sent += len(data)
            self.wfile.write(b"0\r\n\r\n")

    return Handler


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    state = Server(port=0)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    state.stop.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def srv(server: Server) -> Server:
    server.paths.clear()
    return server


def loopback_policy(**changes: object) -> FetchPolicy:
    fields: dict[str, object] = {"allowed_private_networks": LOOPBACK, "timeout_s": 5.0}
    fields.update(changes)
    return FetchPolicy(**fields)  # type: ignore[arg-type]


# --- fetching from real loopback servers ---------------------------------------------------


@pytest.mark.asyncio
async def test_loopback_is_refused_by_default(srv: Server) -> None:
    with pytest.raises(UnsafeURLError, match=r"127\.0\.0\.1 is not a public address"):
        await fetch_url(srv.url("/image.png"), policy=FetchPolicy())
    assert srv.paths == []


@pytest.mark.asyncio
async def test_allow_listed_loopback_fetches_an_image(srv: Server) -> None:
    result = await fetch_url(srv.url("/image.png"), policy=loopback_policy(), expect="image")

    assert result.data == PNG
    assert result.kind == "image/png"
    assert result.final_url == srv.url("/image.png")


@pytest.mark.asyncio
async def test_video_is_recognised_by_magic_bytes(srv: Server) -> None:
    result = await fetch_url(srv.url("/video.mp4"), policy=loopback_policy(), expect="video")

    assert result.kind == "video/mp4"


@pytest.mark.asyncio
async def test_ipv4_mapped_address_is_judged_as_ipv4(srv: Server) -> None:
    # ::ffff:127.0.0.1 is 127.0.0.1: allowed by the IPv4 allow-list, fetched over IPv4.
    result = await fetch_url(
        srv.url("/image.png", host="[::ffff:127.0.0.1]"), policy=loopback_policy()
    )

    assert result.kind == "image/png"


@pytest.mark.asyncio
async def test_localhost_name_is_refused_by_default(srv: Server) -> None:
    with pytest.raises(UnsafeURLError, match="localhost resolves to a non-public address"):
        await fetch_url(srv.url("/image.png", host="localhost"), policy=FetchPolicy())
    assert srv.paths == []


@pytest.mark.asyncio
async def test_original_host_header_is_sent(srv: Server) -> None:
    policy = loopback_policy(allowed_private_networks=(*LOOPBACK, ipaddress.ip_network("::1")))

    await fetch_url(srv.url("/echo-host", host="localhost"), policy=policy)

    assert f"host=localhost:{srv.port}" in srv.paths


@pytest.mark.asyncio
async def test_redirect_chain_is_followed(srv: Server) -> None:
    result = await fetch_url(srv.url("/hops/2"), policy=loopback_policy(max_redirects=3))

    assert result.data == PNG
    assert result.final_url == srv.url("/image.png")
    assert srv.paths == ["/hops/2", "/hops/1", "/hops/0", "/image.png"]


@pytest.mark.asyncio
async def test_too_many_redirects(srv: Server) -> None:
    with pytest.raises(FetchError, match="too many redirects"):
        await fetch_url(srv.url("/hops/5"), policy=loopback_policy(max_redirects=3))
    assert len(srv.paths) == 4


@pytest.mark.asyncio
async def test_redirect_to_disallowed_address_is_refused_at_the_check(srv: Server) -> None:
    policy = loopback_policy(allowed_private_networks=ONLY_127_0_0_1)

    with pytest.raises(UnsafeURLError, match=r"127\.0\.0\.2 is not a public address"):
        await fetch_url(srv.url("/to-127.0.0.2"), policy=policy)
    # Refused before connecting: nothing listens on 127.0.0.2, so a connect would be a
    # FetchError, and the server saw only the first hop.
    assert srv.paths == ["/to-127.0.0.2"]


@pytest.mark.asyncio
async def test_redirect_to_metadata_or_file_is_refused(srv: Server) -> None:
    with pytest.raises(
        UnsafeURLError, match=r"redirect from 127\.0\.0\.1 refused: 169\.254\.169\.254"
    ):
        await fetch_url(srv.url("/to-metadata"), policy=loopback_policy())
    with pytest.raises(UnsafeURLError, match="only http\\(s\\) URLs are allowed"):
        await fetch_url(srv.url("/to-file"), policy=loopback_policy())


@pytest.mark.asyncio
async def test_http_error_status_names_status_but_not_query(srv: Server) -> None:
    with pytest.raises(FetchError) as caught:
        await fetch_url(srv.url("/missing?token=secret"), policy=loopback_policy())

    message = str(caught.value)
    assert "404" in message
    assert "127.0.0.1" in message
    assert "secret" not in message


@pytest.mark.asyncio
async def test_too_large_by_content_length(srv: Server) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError, match="larger than the limit of 1 MiB"):
        await fetch_url(srv.url("/huge-declared"), policy=loopback_policy(max_bytes=1024 * 1024))
    assert time.monotonic() - started < 2


@pytest.mark.asyncio
async def test_too_large_while_streaming_without_content_length(srv: Server) -> None:
    with pytest.raises(FetchError, match="larger than the limit of 256 KiB"):
        await fetch_url(
            srv.url("/huge-chunked"), policy=loopback_policy(max_bytes=256 * 1024), expect="image"
        )


@pytest.mark.asyncio
async def test_total_time_budget(srv: Server) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"timed out|did not answer in time"):
        await fetch_url(srv.url("/slow"), policy=loopback_policy(timeout_s=0.5))
    assert time.monotonic() - started < 2


@pytest.mark.asyncio
async def test_content_type_is_not_trusted(srv: Server) -> None:
    with pytest.raises(FetchError, match="is not an image"):
        await fetch_url(srv.url("/fake.png"), policy=loopback_policy(), expect="image")


@pytest.mark.asyncio
async def test_image_is_not_a_video(srv: Server) -> None:
    with pytest.raises(FetchError, match="is not a video"):
        await fetch_url(srv.url("/image.png"), policy=loopback_policy(), expect="video")


@pytest.mark.asyncio
async def test_any_accepts_unknown_content(srv: Server) -> None:
    result = await fetch_url(srv.url("/fake.png"), policy=loopback_policy(), expect="any")

    assert result.kind == "application/octet-stream"
    assert result.data == HTML


@pytest.mark.asyncio
async def test_environment_proxies_are_ignored(
    srv: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy that does not exist: using it would fail the fetch.
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")

    result = await fetch_url(srv.url("/image.png"), policy=loopback_policy())

    assert result.kind == "image/png"


@pytest.mark.asyncio
async def test_connection_refused_is_a_fetch_error() -> None:
    with pytest.raises(FetchError, match=r"could not connect to 127\.0\.0\.1"):
        await fetch_url("http://127.0.0.1:9/x.png", policy=loopback_policy())


# --- streaming to a file --------------------------------------------------------------------


def files_in(directory: Path) -> list[Path]:
    return list(directory.iterdir())


@pytest.mark.asyncio
async def test_fetch_to_file_writes_the_exact_bytes(srv: Server, tmp_path: Path) -> None:
    downloaded = await fetch_to_file(
        srv.url("/big.mp4"), policy=loopback_policy(), directory=tmp_path / "d", expect="video"
    )

    assert downloaded.path.parent == tmp_path / "d"
    assert (downloaded.kind, downloaded.size) == ("video/mp4", len(BIG_MP4))
    assert files_in(tmp_path / "d") == [downloaded.path]
    assert downloaded.path.read_bytes() == BIG_MP4


@pytest.mark.asyncio
async def test_fetch_to_file_over_the_cap_mid_stream_leaves_no_file(
    srv: Server, tmp_path: Path
) -> None:
    # 3 MiB: several blocks are on disk when the cap is hit.
    with pytest.raises(FetchError, match="larger than the limit of 3 MiB"):
        await fetch_to_file(
            srv.url("/huge-chunked"),
            policy=loopback_policy(max_bytes=3 * 1024 * 1024),
            directory=tmp_path,
            expect="image",
        )
    assert files_in(tmp_path) == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "expect", "message"),
    [
        ("/fake.png", "image", "is not an image"),
        ("/video.mp4", "image", "is not an image"),
        ("/image.png", "video", "is not a video"),
        ("/huge-declared", "image", "larger than the limit"),
        ("/slow", "image", "timed out|did not answer in time"),
        ("/missing", "image", "404"),
    ],
)
async def test_fetch_to_file_failures_leave_no_file(
    srv: Server, tmp_path: Path, path: str, expect: Literal["image", "video"], message: str
) -> None:
    policy = loopback_policy(max_bytes=1024 * 1024, timeout_s=0.5)
    with pytest.raises(FetchError, match=message):
        await fetch_to_file(srv.url(path), policy=policy, directory=tmp_path, expect=expect)
    assert files_in(tmp_path) == []


@pytest.mark.asyncio
async def test_fetch_to_file_refuses_unsafe_urls_without_traffic(tmp_path: Path) -> None:
    with pytest.raises(UnsafeURLError):
        await fetch_to_file(
            "http://169.254.169.254/latest/meta-data/",
            policy=FetchPolicy(),
            directory=tmp_path,
            network=NO_NETWORK,
        )
    assert files_in(tmp_path) == []


# --- refused up front, without any traffic ---------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://172.16.0.1/",
        "http://100.64.0.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://[fe80::1]/",
        "http://[fd00::1]/",
        "http://[64:ff9b::a00:1]/",
        "http://[2002:7f00:1::]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
        "https://127.0.0.1:8443/",
    ],
)
async def test_non_public_addresses_are_refused_without_traffic(url: str) -> None:
    async with asyncio.timeout(1):
        with pytest.raises(UnsafeURLError, match="is not a public address"):
            await fetch_url(url, policy=FetchPolicy(), network=NO_NETWORK)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "only http\\(s\\) URLs are allowed"),
        ("ftp://example.com/file.png", "only http\\(s\\) URLs are allowed"),
        ("gopher://example.com/", "only http\\(s\\) URLs are allowed"),
        ("FILE:///etc/passwd", "only http\\(s\\) URLs are allowed"),
        ("gopher://127.0.0.1:6379/_INFO", "only http\\(s\\) URLs are allowed"),
        ("dict://127.0.0.1:11211/stat", "only http\\(s\\) URLs are allowed"),
        ("data:image/png;base64,AAAA", "only http\\(s\\) URLs are allowed"),
        ("//example.com/x.png", "only http\\(s\\) URLs are allowed"),
        ("http://user:pass@example.com/x.png", "credentials"),
        ("http:///x.png", "no host"),
    ],
)
async def test_bad_urls_are_refused_without_traffic(url: str, message: str) -> None:
    with pytest.raises(UnsafeURLError, match=message):
        await fetch_url(url, policy=FetchPolicy(), network=NO_NETWORK)


def test_unsafe_url_error_is_a_value_error() -> None:
    assert issubclass(UnsafeURLError, ValueError)
    assert not issubclass(FetchError, UnsafeURLError)


# --- connecting to the checked address (mock transport, no real traffic) -------------------


@pytest.mark.asyncio
async def test_https_connects_to_checked_ip_with_host_and_sni() -> None:
    fake = FakeNetwork([[PUBLIC_IP], ["127.0.0.1"]])  # a second answer would be rebinding

    result = await fetch_url(
        "https://images.example.com/cat.png?size=large",
        policy=FetchPolicy(),
        expect="image",
        network=fake.network,
    )

    assert result.final_url == "https://images.example.com/cat.png?size=large"
    assert fake.lookups == [("images.example.com", 443)]
    (request,) = fake.seen
    assert request.url.host == PUBLIC_IP
    assert request.url.scheme == "https"
    assert request.url.raw_path == b"/cat.png?size=large"
    assert request.headers["host"] == "images.example.com"
    assert request.extensions["sni_hostname"] == "images.example.com"


@pytest.mark.asyncio
async def test_rebinding_on_redirect_is_checked_again() -> None:
    fake = FakeNetwork(
        [[PUBLIC_IP], ["10.1.2.3"]],
        lambda request: httpx.Response(302, headers={"Location": "/next.png"}),
    )

    with pytest.raises(UnsafeURLError, match=r"cdn\.example\.com resolves to a non-public"):
        await fetch_url("http://cdn.example.com/a.png", policy=FetchPolicy(), network=fake.network)
    assert len(fake.seen) == 1


@pytest.mark.asyncio
async def test_any_non_public_answer_refuses_the_host() -> None:
    fake = FakeNetwork([[PUBLIC_IP, "192.168.0.10"]])

    with pytest.raises(UnsafeURLError):
        await fetch_url(
            "http://mixed.example.com/a.png", policy=FetchPolicy(), network=fake.network
        )
    assert fake.seen == []


@pytest.mark.asyncio
async def test_non_default_port_is_kept_in_host_header() -> None:
    fake = FakeNetwork([[PUBLIC_IP]])

    await fetch_url(
        "http://media.example.com:8080/a.png", policy=FetchPolicy(), network=fake.network
    )

    assert fake.seen[0].headers["host"] == "media.example.com:8080"
    assert fake.seen[0].url.port == 8080
    assert "sni_hostname" not in fake.seen[0].extensions


# --- magic bytes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (PNG, "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
        (b"GIF89a\x01\x00\x01\x00", "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", "image/avif"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "image/heic"),
        (MP4_HEAD, "video/mp4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  ", "video/quicktime"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00M4A isom", "audio/mp4"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "video/webm"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska", "video/x-matroska"),
        (HTML, None),
        (b"", None),
    ],
)
def test_sniff_kind(data: bytes, kind: str | None) -> None:
    assert sniff_kind(data) == kind
