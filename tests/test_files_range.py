"""GET/HEAD /files/{key}: signed result URLs and Range requests as RFC 9110 has them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from test_http_edge import assert_error
from vidgate.gateway import Gateway

KEY = "vid_range.mp4"
# Every byte's value follows from its offset, so a wrong slice cannot pass for a right one.
CONTENT = bytes(i % 251 for i in range(10_000))
SIZE = len(CONTENT)


async def _chunks() -> AsyncIterator[bytes]:
    for start in range(0, SIZE, 4096):
        yield CONTENT[start : start + 4096]


@pytest.fixture
async def url(gateway: Gateway) -> str:
    """The signed URL of a stored file, as a client finds it in a completed task."""
    assert await gateway.store.put_stream(KEY, _chunks()) == SIZE
    signed = httpx.URL(gateway.store.url_for(KEY))
    return f"{signed.path}?{signed.query.decode()}"


async def get(client: httpx.AsyncClient, url: str, **headers: str | bytes) -> httpx.Response:
    return await client.get(url, headers=headers)


async def test_whole_file_advertises_byte_ranges(client: httpx.AsyncClient, url: str) -> None:
    response = await get(client, url)

    assert response.status_code == 200
    assert response.content == CONTENT
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-length"] == str(SIZE)
    assert response.headers["content-type"] == "video/mp4"
    assert "content-range" not in response.headers


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=100-199", 100, 199),
        ("bytes=0-0", 0, 0),
        ("bytes=9000-", 9000, SIZE - 1),  # open-ended
        ("bytes=-500", SIZE - 500, SIZE - 1),  # the last 500 bytes
        ("bytes=-20000", 0, SIZE - 1),  # a suffix longer than the file: all of it
        ("bytes=9990-20000", 9990, SIZE - 1),  # past the end: cut at the end
        ("Bytes=5-9", 5, 9),  # the unit is case-insensitive
        ("bytes= 5-9 ,", 5, 9),  # whitespace and empty list elements are allowed
    ],
)
async def test_single_range_is_a_206_with_content_range(
    client: httpx.AsyncClient, url: str, header: str, first: int, last: int
) -> None:
    response = await get(client, url, Range=header)

    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {first}-{last}/{SIZE}"
    assert response.headers["content-length"] == str(last - first + 1)
    assert response.content == CONTENT[first : last + 1]


@pytest.mark.parametrize(
    "header",
    [f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 10}", "bytes=-0", "bytes=" + "9" * 40 + "-"],
)
async def test_unsatisfiable_range_is_a_416_in_the_envelope(
    client: httpx.AsyncClient, url: str, header: str
) -> None:
    response = await get(client, url, Range=header)

    assert_error(response, 416, "range_not_satisfiable")
    assert response.headers["content-range"] == f"bytes */{SIZE}"


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        "bytes",
        "bytes=",
        "bytes=abc-def",
        "items=0-10",  # an unknown unit
        "bytes=200-100",  # reversed bounds
        "bytes=1-2-3",
        "bytes=--5",
        "bytes=+1-2",  # int() would take these; the grammar does not
        "bytes=1_0-20",
        "bytes=\u00b9-5".encode("latin-1"),  # a superscript one: str.isdigit() says yes
        "bytes=0x10-20",
        "bytes=,",
    ],
)
async def test_malformed_range_is_ignored(
    client: httpx.AsyncClient, url: str, header: str | bytes
) -> None:
    response = await get(client, url, Range=header)

    assert response.status_code == 200
    assert response.content == CONTENT
    assert "content-range" not in response.headers


@pytest.mark.parametrize("header", ["bytes=0-1,5-9", f"bytes=0-1,{SIZE}-"])
async def test_several_ranges_get_the_whole_file(
    client: httpx.AsyncClient, url: str, header: str
) -> None:
    response = await get(client, url, Range=header)

    assert response.status_code == 200
    assert response.content == CONTENT


async def test_if_range_applies_the_range_only_to_the_same_version(
    client: httpx.AsyncClient, url: str
) -> None:
    etag = (await get(client, url)).headers["etag"]

    same = await get(client, url, Range="bytes=0-9", **{"If-Range": etag})
    assert (same.status_code, same.content) == (206, CONTENT[:10])
    changed = await get(client, url, Range="bytes=0-9", **{"If-Range": '"another-version"'})
    assert (changed.status_code, changed.content) == (200, CONTENT)
    # A stale If-Range wins over an unsatisfiable range: the client gets the current file.
    stale = await get(client, url, Range=f"bytes={SIZE}-", **{"If-Range": '"another-version"'})
    assert stale.status_code == 200


async def test_head_has_the_headers_of_get_and_no_body(client: httpx.AsyncClient, url: str) -> None:
    full = await get(client, url)
    head = await client.head(url)
    ranged = await get(client, url, Range="bytes=0-9")
    head_with_range = await client.head(url, headers={"Range": "bytes=0-9"})

    assert head.status_code == 200
    assert head.content == b""
    for name in ("content-length", "content-type", "accept-ranges", "etag", "last-modified"):
        assert head.headers[name] == full.headers[name]
    assert (head_with_range.status_code, head_with_range.content) == (206, b"")
    for name in ("content-length", "content-range"):
        assert head_with_range.headers[name] == ranged.headers[name]


async def test_bad_signature_and_missing_file(
    client: httpx.AsyncClient, gateway: Gateway, url: str
) -> None:
    tampered = url.replace("signature=", "signature=0")
    assert_error(await get(client, tampered), 403, "forbidden")
    assert_error(await get(client, tampered, Range="bytes=0-9"), 403, "forbidden")

    await gateway.store.delete(KEY)
    assert_error(await get(client, url), 404, "not_found")
    assert (await client.head(url)).status_code == 404
