"""Fetch user-supplied URLs without letting them reach internal services (SSRF).

Every hop is checked before any traffic is sent: http(s) only, no credentials in the URL, and
every address the host resolves to must be public (or inside the operator's allow-list, or the
host is one the operator trusts). IP literals in any spelling (``2130706433``, ``0177.0.0.1``; see
addresses.py) are judged as the addresses they are, without DNS. The connection then goes to
the checked IP itself, so a second DNS answer (DNS rebinding) cannot redirect it; the original
name is still sent as ``Host`` and used for TLS (SNI + certificate). Redirects are followed by
hand so each target gets the same check. Error messages name only the host, never the query
string, so they are safe to show to API users.

``never_public_reason`` applies the checks that need no DNS, for refusing a URL when a task is
created rather than when it runs.

``fetch_to_file`` streams the body to a temporary file (the size cap enforced while streaming,
the kind judged on the first bytes, writes in a thread), so large inputs and results are never
held in memory; ``fetch_url`` returns the bytes of small files.
"""

from __future__ import annotations

import asyncio
import functools
import http
import ipaddress
import os
import re
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, TypeVar

import httpx

from vidgate.net.addresses import (
    InvalidHost,
    IPAddress,
    IPNetwork,
    connect_address,
    is_allowed,
    is_localhost_name,
    loopback_allowed,
    not_public_message,
    parse_ip_host,
    parse_ipv4_number_form,
)

__all__ = [
    "IMAGE_KINDS",
    "VIDEO_KINDS",
    "DownloadedFile",
    "FetchError",
    "FetchPolicy",
    "FetchedFile",
    "IPAddress",
    "IPNetwork",
    "UnsafeURLError",
    "fetch_to_file",
    "fetch_url",
    "never_public_reason",
    "sniff_kind",
    "write_chunks",
]

IMAGE_KINDS = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/bmp",
        "image/tiff",
        "image/avif",
        "image/heic",
    }
)
VIDEO_KINDS = frozenset({"video/mp4", "video/webm", "video/quicktime"})

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
SNIFF_BYTES = 64  # enough for every signature in sniff_kind
WRITE_BLOCK = 1024 * 1024  # fetch_to_file batches network chunks into writes of this size
USER_AGENT = "vidgate-fetch/1"

# An http(s) URL whose host is dotted numbers and nothing else before the port or path: the
# shape of the "0177.0.0.1" spellings httpx refuses to parse (see _parse).
_DOTTED_NUMERIC_URL = re.compile(
    r"(?P<scheme>https?://)(?P<host>[0-9.]+)(?P<rest>(?::[0-9]*)?(?:[/?#].*)?)",
    re.IGNORECASE | re.DOTALL,
)


class UnsafeURLError(ValueError):
    """The URL was refused before or while fetching (scheme, address, redirect target)."""


class FetchError(Exception):
    """The fetch failed: network error, timeout, HTTP error status, too large, wrong kind."""


@dataclass(frozen=True, kw_only=True)
class FetchPolicy:
    max_bytes: int = 20 * 1024 * 1024
    timeout_s: float = 20.0  # total budget for the whole fetch, redirects included
    max_redirects: int = 3
    # Operator allow-list for otherwise refused addresses, e.g. 127.0.0.0/8 in tests.
    allowed_private_networks: tuple[IPNetwork, ...] = ()
    # Hosts the operator configured (an upstream's own, which may be private): "host" for any
    # port or "host:port" ("[v6]:port"; no port in the URL means the scheme's default), in
    # any case. Their addresses skip the public-address check, but only while the fetch has
    # stayed on trusted hosts since its first hop: a redirect away from them, or from an
    # untrusted URL onto them, is checked as usual.
    trusted_hosts: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        lowered = frozenset(host.lower() for host in self.trusted_hosts)
        object.__setattr__(self, "trusted_hosts", lowered)


@dataclass(frozen=True)
class FetchedFile:
    data: bytes
    kind: str  # detected from the bytes, never from Content-Type
    final_url: str


@dataclass(frozen=True)
class DownloadedFile:
    path: Path  # the caller's to move or delete
    kind: str  # detected from the bytes, never from Content-Type
    size: int
    final_url: str


@dataclass(frozen=True)
class _Redirect:
    location: str


@dataclass(frozen=True)
class _Target:
    """One hop's URL, checked and with a numeric host rewritten to its canonical address."""

    url: httpx.URL
    spelled_host: str  # as the URL wrote it, for messages ("2130706433")
    literal: IPAddress | None  # the host's address when the host is an IP literal


_T = TypeVar("_T")


async def fetch_url(
    url: str,
    *,
    policy: FetchPolicy,
    expect: Literal["image", "video", "any"] = "any",
    network: Network | None = None,
) -> FetchedFile:
    """Download ``url`` under ``policy`` into memory; see the module docstring for the rules.

    Raises ``UnsafeURLError`` for refused URLs/addresses and ``FetchError`` for everything else.
    """

    async def read(body: _Body) -> FetchedFile:
        data = bytearray()
        async for chunk in body.chunks():
            data += chunk
        return FetchedFile(data=bytes(data), kind=body.kind, final_url=body.final_url)

    return await _fetch(url, policy=policy, expect=expect, network=network, read=read)


async def fetch_to_file(
    url: str,
    *,
    policy: FetchPolicy,
    directory: Path,
    expect: Literal["image", "video", "any"] = "any",
    network: Network | None = None,
) -> DownloadedFile:
    """Download ``url`` under ``policy`` into a new temporary file in ``directory``.

    The file exists only once the download succeeded; on any failure (refused, too large, wrong
    kind, timeout, cancellation) nothing is left behind. Raises like ``fetch_url``, plus
    ``OSError`` when the file cannot be written.
    """

    async def read(body: _Body) -> DownloadedFile:
        return await _write_temporary(body, directory)

    return await _fetch(url, policy=policy, expect=expect, network=network, read=read)


async def _fetch(
    url: str,
    *,
    policy: FetchPolicy,
    expect: str,
    network: Network | None,
    read: Callable[[_Body], Awaitable[_T]],
) -> _T:
    network = network or SYSTEM_NETWORK
    if expect not in ("image", "video", "any"):
        raise ValueError(f"expect must be 'image', 'video' or 'any', got {expect!r}")
    current = _parse(url)
    context = ""
    trusted = True  # until a hop is on a host the operator does not trust
    try:
        async with asyncio.timeout(policy.timeout_s):
            for hop in range(policy.max_redirects + 1):
                trusted = trusted and _is_trusted(current.url, policy)
                addresses = await _checked_addresses(
                    current, policy, network, trusted=trusted, context=context
                )
                outcome = await _fetch_once(current, addresses, policy, expect, network, read)
                if not isinstance(outcome, _Redirect):
                    return outcome
                if hop == policy.max_redirects:
                    break
                context = f"redirect from {current.url.host} refused: "
                current = _follow(current.url, outcome.location, context=context)
    except TimeoutError:
        raise FetchError(
            f"fetching from {current.url.host} timed out after {policy.timeout_s:g} s"
        ) from None
    raise FetchError(
        f"too many redirects (more than {policy.max_redirects}) "
        f"while fetching from {current.url.host}"
    )


def never_public_reason(url: str, *, allowed_networks: tuple[IPNetwork, ...] = ()) -> str | None:
    """Why ``url`` can never be fetched, judged without any DNS lookup; None when it may be.

    Refused: anything but http(s), no host, credentials, a malformed host, a ``localhost``
    name (unless the allow-list holds a loopback address), and an IP literal in any spelling
    that is neither public nor in ``allowed_networks``. A DNS name is left to the check at
    fetch time, where its addresses are resolved and judged.
    """
    try:
        target = _parse(url)
    except UnsafeURLError as refused:
        return str(refused)
    if target.literal is not None and not is_allowed(target.literal, allowed_networks):
        return not_public_message(target.spelled_host, target.literal)
    host = target.url.host
    if is_localhost_name(host) and not loopback_allowed(allowed_networks):
        return f"{host} is a loopback name, not a public host"
    return None


def sniff_kind(data: bytes) -> str | None:
    """The media type that the leading bytes of ``data`` identify, or None if unknown."""
    head = data[:SNIFF_BYTES]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    if head.startswith(b"BM") and len(head) >= 26 and head[6:10] == b"\0\0\0\0":
        return "image/bmp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    if head[4:8] == b"ftyp":
        return _sniff_iso_bmff(head)
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return "video/quicktime"  # QuickTime files from before the ftyp box existed
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: WebM or Matroska
        return "video/webm" if b"webm" in head else "video/x-matroska"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    return None


def _sniff_iso_bmff(head: bytes) -> str | None:
    box_size = int.from_bytes(head[:4], "big")
    major = head[8:12]
    end = min(len(head), box_size) if box_size >= 16 else len(head)
    compatible = {head[i : i + 4] for i in range(16, end - 3, 4)}
    brands = {major} | compatible
    if major in (b"avif", b"avis") or (major in (b"mif1", b"msf1") and b"avif" in brands):
        return "image/avif"
    if major in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"):
        return "image/heic"
    if major == b"qt  ":
        return "video/quicktime"
    if major.startswith((b"M4A", b"M4B", b"M4P")):
        return "audio/mp4"
    if major.startswith((b"3gp", b"3g2")):
        return "video/3gpp"
    mp4_brands = {
        b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso7", b"iso8", b"iso9",
        b"mp41", b"mp42", b"mp71", b"avc1", b"av01", b"M4V ", b"M4VH", b"M4VP", b"dash",
        b"f4v ", b"MSNV", b"NDAS", b"XAVC", b"mmp4",
    }  # fmt: skip
    if brands & mp4_brands:
        return "video/mp4"
    return None


# --- URL and address checks ------------------------------------------------------------------


def _parse(url: str, *, context: str = "") -> _Target:
    parsed, spelled = _httpx_url(url, context=context)
    if parsed.scheme not in ("http", "https"):
        raise UnsafeURLError(f"{context}only http(s) URLs are allowed")
    if parsed.userinfo:
        raise UnsafeURLError(f"{context}URLs with credentials (user@host) are not allowed")
    if not parsed.raw_host:
        raise UnsafeURLError(f"{context}the URL has no host")
    spelled = spelled or parsed.raw_host.decode("ascii")
    try:
        literal = parse_ip_host(parsed.raw_host.decode("ascii"))
    except InvalidHost as invalid:
        raise UnsafeURLError(f"{context}{invalid}") from None
    parsed = parsed.copy_with(fragment=None)
    if isinstance(literal, ipaddress.IPv4Address) and spelled != str(literal):
        # Send and show what every other client reads this host as, as browsers do.
        parsed = parsed.copy_with(host=str(literal))
    return _Target(url=parsed, spelled_host=spelled, literal=literal)


def _httpx_url(url: str, *, context: str) -> tuple[httpx.URL, str | None]:
    """The parsed URL, and the host as spelled when it had to be rewritten to parse."""
    try:
        return httpx.URL(url), None
    except (httpx.InvalidURL, TypeError, ValueError):
        pass
    # httpx refuses a dotted-quad host it cannot read as plain decimal (0177.0.0.1, 010.0.0.1),
    # yet other clients read it as an address. Rewrite it to that address and parse again;
    # the result goes through every check like any other URL.
    shape = _DOTTED_NUMERIC_URL.fullmatch(url) if isinstance(url, str) else None
    if shape is not None:
        try:
            address = parse_ipv4_number_form(shape["host"])
        except InvalidHost as invalid:
            raise UnsafeURLError(f"{context}{invalid}") from None
        if address is not None:
            try:
                rewritten = httpx.URL(f"{shape['scheme']}{address}{shape['rest']}")
                return rewritten, shape["host"]
            except (httpx.InvalidURL, ValueError):
                pass
    raise UnsafeURLError(f"{context}not a valid URL")


def _follow(current: httpx.URL, location: str, *, context: str) -> _Target:
    try:
        target = current.join(location)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise UnsafeURLError(f"{context}not a valid URL") from None
    return _parse(str(target), context=context)


def _is_trusted(url: httpx.URL, policy: FetchPolicy) -> bool:
    if not policy.trusted_hosts:
        return False
    host = url.raw_host.decode("ascii").removesuffix(".")
    if ":" in host:
        host = f"[{host}]"
    port = url.port or _default_port(url)
    return host in policy.trusted_hosts or f"{host}:{port}" in policy.trusted_hosts


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


async def _checked_addresses(
    target: _Target,
    policy: FetchPolicy,
    network: Network,
    *,
    trusted: bool = False,
    context: str = "",
) -> list[IPAddress]:
    """Resolve the host once and return its addresses, all of which passed the check (or
    skipped it: ``trusted``)."""
    url = target.url
    if target.literal is not None:
        resolved = [target.literal]
    else:
        resolved = await network.resolve(
            url.raw_host.decode("ascii"), url.port or _default_port(url)
        )
        if not resolved:
            raise FetchError(f"could not resolve host {url.host}")
    addresses: list[IPAddress] = []
    for address in resolved:
        if not trusted and not is_allowed(address, policy.allowed_private_networks):
            if target.literal is not None:
                message = not_public_message(target.spelled_host, address)
            else:  # the resolved address stays unsaid: it may map the internal network
                message = f"{url.host} resolves to a non-public address"
            raise UnsafeURLError(f"{context}{message}; refusing to fetch it")
        connect_to = connect_address(address)
        if connect_to not in addresses:
            addresses.append(connect_to)
    return addresses


async def system_resolve(host: str, port: int) -> list[IPAddress]:
    """One DNS resolution; the caller connects to exactly these addresses."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise FetchError(f"could not resolve host {host}") from None
    found: list[IPAddress] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        # Names only: numeric hosts (2130706433, 0x7f.1) are parsed as literals before this.
        found.append(ipaddress.ip_address(str(sockaddr[0])))
    return found


Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


def _default_transport() -> httpx.AsyncBaseTransport | None:
    return None  # httpx's own: real sockets


@dataclass(frozen=True)
class Network:
    """The edge fetch_url talks to: DNS and the HTTP transport (one per hop). The defaults are
    the real ones; tests pass fakes here (a resolver, httpx.MockTransport), never patches."""

    resolve: Resolver = system_resolve
    transport: Callable[[], httpx.AsyncBaseTransport | None] = _default_transport


SYSTEM_NETWORK = Network()


# --- HTTP ------------------------------------------------------------------------------------


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default verifying context (certifi's CAs), built once: building it reads the
    CA bundle, about 20 ms of CPU, which a client per hop would pay on every fetch. Each
    connection still checks its own hostname (check_hostname, SNI)."""
    return httpx.create_ssl_context(trust_env=False)


def _new_client(policy: FetchPolicy, network: Network) -> httpx.AsyncClient:
    # A fresh client per hop: pooled connections are keyed by IP, and reusing one negotiated
    # for another hostname would skip that hostname's certificate check.
    return httpx.AsyncClient(
        transport=network.transport(),
        verify=_tls_context(),
        trust_env=False,  # environment proxies would do their own (unchecked) DNS
        follow_redirects=False,
        timeout=httpx.Timeout(policy.timeout_s),
    )


def _build_request(target: _Target, address: IPAddress, expect: str) -> httpx.Request:
    url = target.url
    host = url.raw_host.decode("ascii")
    host_header = f"[{host}]" if ":" in host else host
    if url.port is not None:
        host_header = f"{host_header}:{url.port}"
    accept = {"image": "image/*", "video": "video/*"}.get(expect, "*/*")
    extensions: dict[str, object] = {}
    if url.scheme == "https" and target.literal is None:
        extensions["sni_hostname"] = host  # TLS: SNI and certificate check use the name
    return httpx.Request(
        "GET",
        url.copy_with(host=str(address)),
        headers={
            "Host": host_header,
            "User-Agent": USER_AGENT,
            "Accept": accept,
            "Accept-Encoding": "identity",  # media is already compressed; avoids zip bombs
        },
        extensions=extensions,
    )


async def _fetch_once(
    target: _Target,
    addresses: list[IPAddress],
    policy: FetchPolicy,
    expect: str,
    network: Network,
    read: Callable[[_Body], Awaitable[_T]],
) -> _T | _Redirect:
    url = target.url
    for address in addresses:
        request = _build_request(target, address, expect)
        async with _new_client(policy, network) as client:
            try:
                response = await client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                continue  # every address passed the check; try the next one
            except httpx.TimeoutException:
                raise FetchError(f"{url.host} did not answer in time") from None
            except httpx.HTTPError:
                raise FetchError(f"network error while fetching from {url.host}") from None
            try:
                body = _open_body(response, url, policy, expect)
                return body if isinstance(body, _Redirect) else await read(body)
            except httpx.TimeoutException:
                raise FetchError(f"{url.host} did not answer in time") from None
            except httpx.HTTPError:
                raise FetchError(f"network error while fetching from {url.host}") from None
            finally:
                await response.aclose()
    raise FetchError(f"could not connect to {url.host}")


def _open_body(
    response: httpx.Response, url: httpx.URL, policy: FetchPolicy, expect: str
) -> _Body | _Redirect:
    status = response.status_code
    if status in REDIRECT_STATUSES and "location" in response.headers:
        return _Redirect(response.headers["location"])
    if not 200 <= status < 300:
        raise FetchError(f"{url.host} answered with HTTP {_status_text(status)}")
    body = _Body(response, url, policy, expect)
    declared = response.headers.get("content-length", "")
    if declared.strip().isdigit() and int(declared) > policy.max_bytes:
        raise FetchError(body.too_large)
    return body


class _Body:
    """A 2xx response's body as checked chunks: the size cap holds while streaming, and the kind
    is judged on the first SNIFF_BYTES, so a wrong or oversized file fails early."""

    def __init__(
        self, response: httpx.Response, url: httpx.URL, policy: FetchPolicy, expect: str
    ) -> None:
        self._response = response
        self._url = url
        self._policy = policy
        self._expect = expect
        self.final_url = str(url)
        self.size = 0
        self.kind = "application/octet-stream"  # until judged
        self.too_large = (
            f"the file at {url.host} is larger than the limit of {_human_size(policy.max_bytes)}"
        )

    async def chunks(self) -> AsyncIterator[bytes]:
        head = b""
        judged = False
        async for chunk in self._response.aiter_bytes():
            self.size += len(chunk)
            if self.size > self._policy.max_bytes:
                raise FetchError(self.too_large)
            if not judged:
                head += chunk[: SNIFF_BYTES - len(head)]
                if len(head) >= SNIFF_BYTES:
                    self._judge(head)
                    judged = True
            yield chunk
        if not judged:  # shorter than SNIFF_BYTES
            self._judge(head)

    def _judge(self, head: bytes) -> None:
        kind = sniff_kind(head)
        _check_kind(kind, self._expect, self._url)
        self.kind = kind or "application/octet-stream"


async def write_chunks(chunks: AsyncIterator[bytes], file: BinaryIO) -> None:
    """Write a stream to an open file in blocks of WRITE_BLOCK, each in a thread, so neither a
    large body nor a slow disk holds the event loop."""
    block = bytearray()
    async for chunk in chunks:
        block += chunk
        if len(block) >= WRITE_BLOCK:
            await asyncio.to_thread(file.write, block)
            block.clear()  # safe: the write above has finished
    if block:
        await asyncio.to_thread(file.write, block)


async def _write_temporary(body: _Body, directory: Path) -> DownloadedFile:
    path, file = await asyncio.to_thread(_create_temporary, directory)
    try:
        try:
            await write_chunks(body.chunks(), file)
        finally:
            await asyncio.to_thread(file.close)
    except BaseException:  # cancelled or timed out too
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise
    return DownloadedFile(path=path, kind=body.kind, size=body.size, final_url=body.final_url)


def _create_temporary(directory: Path) -> tuple[Path, BinaryIO]:
    directory.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=directory, prefix=".fetch-", suffix=".part")
    return Path(name), os.fdopen(descriptor, "wb")


def _check_kind(kind: str | None, expect: str, url: httpx.URL) -> None:
    if expect == "image" and kind not in IMAGE_KINDS:
        raise FetchError(f"the file at {url.host} is not an image ({_describe_kind(kind)})")
    if expect == "video" and kind not in VIDEO_KINDS:
        raise FetchError(
            f"the file at {url.host} is not a video in MP4, WebM or QuickTime format "
            f"({_describe_kind(kind)})"
        )


def _describe_kind(kind: str | None) -> str:
    return f"detected {kind}" if kind else "unrecognised content"


def _status_text(status: int) -> str:
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _human_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):g} MiB"
    if size >= 1024:
        return f"{size / 1024:g} KiB"
    return f"{size} bytes"
