"""POST one signed delivery to a user's URL under the safe fetcher's rules (net/fetch.py).

The same checks as every fetch of a user-supplied URL, reused from net/fetch.py rather than
redone: http(s) only, no credentials, every address the host resolves to public or inside the
operator's allow-list, the connection made to the checked address (the name kept for Host and
TLS). Redirects are not followed (a 3xx is a failed try), the whole try has one time limit, and
the answer's body is never read: its status is all a delivery needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from vidgate.net.addresses import IPAddress, IPNetwork, judged_address
from vidgate.net.fetch import (
    SYSTEM_NETWORK,
    FetchError,
    FetchPolicy,
    Network,
    UnsafeURLError,
    _build_request,
    _checked_addresses,
    _new_client,
    _parse,
    _Target,
)

TIMEOUT_S = 10.0
USER_AGENT = "vidgate-webhooks/1"


@dataclass(frozen=True, slots=True)
class SendResult:
    status_code: int | None  # None: no answer (refused, unreachable, timed out)
    error: str | None  # None: delivered (a 2xx answer); else what the endpoint's last_error says

    @property
    def delivered(self) -> bool:
        return self.error is None


class WebhookSender:
    def __init__(
        self,
        *,
        allowed_networks: tuple[IPNetwork, ...] = (),
        timeout_s: float = TIMEOUT_S,
        network: Network | None = None,
    ) -> None:
        self.policy = FetchPolicy(
            timeout_s=timeout_s, max_redirects=0, allowed_private_networks=allowed_networks
        )
        self.network = network or SYSTEM_NETWORK

    async def send(
        self, url: str, *, body: bytes, headers: Mapping[str, str], https_only: bool
    ) -> SendResult:
        """One try. `https_only`: plain http only to addresses inside the allow-list (the rule
        of registered endpoints; a task's callBackUrl was checked at create and may be http)."""
        try:
            async with asyncio.timeout(self.policy.timeout_s):
                return await self._send(url, body, headers, https_only=https_only)
        except TimeoutError:
            return SendResult(None, f"timed out after {self.policy.timeout_s:g} s")

    async def _send(
        self, url: str, body: bytes, headers: Mapping[str, str], *, https_only: bool
    ) -> SendResult:
        try:
            target = _parse(url)
            addresses = await _checked_addresses(target, self.policy, self.network)
        except UnsafeURLError as refused:
            return SendResult(None, f"refused: {refused}")
        except FetchError as error:
            return SendResult(None, str(error))
        host = target.url.host
        networks = self.policy.allowed_private_networks
        if (
            https_only
            and target.url.scheme != "https"
            and not all(inside(address, networks) for address in addresses)
        ):
            return SendResult(None, f"refused: plain http to {host}; use https")
        failure = f"could not connect to {host}"
        for address in addresses:  # each passed the check; the next one if one cannot connect
            request = self._request(target, address, body, headers)
            async with _new_client(self.policy, self.network) as client:
                try:
                    response = await client.send(request, stream=True)
                except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                    failure = "connection refused" if _refused(error) else failure
                    continue
                except httpx.TimeoutException:
                    return SendResult(None, f"{host} did not answer in time")
                except httpx.HTTPError:
                    return SendResult(None, f"network error while sending to {host}")
                await response.aclose()  # unread: a body could be any size
                return judge(response.status_code)
        return SendResult(None, failure)

    def _request(
        self, target: _Target, address: IPAddress, body: bytes, headers: Mapping[str, str]
    ) -> httpx.Request:
        # The fetcher's request to the checked address (Host header, TLS name), as a POST.
        pinned = _build_request(target, address, "any")
        sent = httpx.Headers(pinned.headers)
        sent.update({"User-Agent": USER_AGENT, "Content-Type": "application/json", **headers})
        return httpx.Request(
            "POST", pinned.url, headers=sent, content=body, extensions=pinned.extensions
        )


def judge(status: int) -> SendResult:
    if 200 <= status < 300:
        return SendResult(status, None)
    if 300 <= status < 400:
        return SendResult(status, f"HTTP {status} (redirects are not followed)")
    return SendResult(status, f"HTTP {status}")


def inside(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    """In the operator's allow-list (not merely public)."""
    candidates = {address, judged_address(address)}
    return any(candidate in net for candidate in candidates for net in networks)


def _refused(error: BaseException) -> bool:
    """Whether the chain of causes holds a refused connection (httpx words it differently on
    each path)."""
    cause: BaseException | None = error
    for _depth in range(8):
        if cause is None:
            break
        if isinstance(cause, ConnectionRefusedError) or "refused" in str(cause).lower():
            return True
        cause = cause.__cause__ or cause.__context__
    return False
