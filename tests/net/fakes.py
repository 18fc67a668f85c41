"""Test doubles for the fetcher's ``Network`` edge: scripted DNS and an httpx.MockTransport.

Nothing here sends real traffic; the fetcher's own code runs unpatched.
"""

from __future__ import annotations

import io
import ipaddress
from collections.abc import Callable

import httpx
from PIL import Image

from vidgate.net.fetch import IPAddress, Network

PUBLIC_IP = "93.184.215.14"


def make_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


PNG = make_png()


async def _forbidden_resolve(host: str, port: int) -> list[IPAddress]:
    raise AssertionError(f"DNS used for {host}, a URL that must be refused up front")


def _forbidden_transport() -> httpx.AsyncBaseTransport:
    raise AssertionError("network used for a URL that must be refused up front")


# Any DNS lookup or connection fails the test.
NO_NETWORK = Network(resolve=_forbidden_resolve, transport=_forbidden_transport)


class FakeNetwork:
    """Scripted DNS answers and an HTTP handler; records what was looked up and sent.

    ``answers`` is either a list (successive lookups get successive answers, the last one
    repeating) or a dict from host name to its answer (an unknown name fails the test).
    """

    def __init__(
        self,
        answers: list[list[str]] | dict[str, list[str]],
        handler: Callable[[httpx.Request], httpx.Response] | None = None,
    ) -> None:
        self.answers = answers
        self.handler = handler or (lambda request: httpx.Response(200, content=PNG))
        self.lookups: list[tuple[str, int]] = []
        self.seen: list[httpx.Request] = []

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        self.lookups.append((host, port))
        if isinstance(self.answers, dict):
            assert host in self.answers, f"unexpected DNS lookup of {host}"
            answer = self.answers[host]
        else:
            answer = self.answers[min(len(self.lookups), len(self.answers)) - 1]
        return [ipaddress.ip_address(a) for a in answer]

    def _record(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return self.handler(request)

    @property
    def network(self) -> Network:
        return Network(resolve=self.resolve, transport=lambda: httpx.MockTransport(self._record))


def redirect(location: str) -> httpx.Response:
    return httpx.Response(302, headers={"Location": location})
