"""The SSRF vectors the fetcher refuses, one case each, and the operator's trusted hosts.

No real traffic: DNS and HTTP go through the fakes in net/fakes.py, and a URL refused up front
runs against NO_NETWORK, which fails the test on any lookup or connection.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import httpx
import pytest

from net.fakes import NO_NETWORK, PNG, PUBLIC_IP, FakeNetwork, redirect
from vidgate.net.fetch import FetchPolicy, UnsafeURLError, fetch_url

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
SECRET_QUERY = "?token=s3cret-value"


async def refusal(url: str, policy: FetchPolicy | None = None) -> str:
    with pytest.raises(UnsafeURLError) as caught:
        await fetch_url(url, policy=policy or FetchPolicy(), network=NO_NETWORK)
    message = str(caught.value)
    assert "s3cret" not in message
    return message


# --- IP literals in every spelling: refused with no DNS lookup and no connection -----------


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("127.0.0.1", "127.0.0.1 is not a public address"),
        ("127.255.255.254", "127.255.255.254 is not a public address"),
        ("[::1]", "::1 is not a public address"),
        # Numeric spellings of 127.0.0.1 that other clients read as that address.
        ("127.1", "127.1 (127.0.0.1) is not a public address"),
        ("127.0.1", "127.0.1 (127.0.0.1) is not a public address"),
        ("2130706433", "2130706433 (127.0.0.1) is not a public address"),
        ("0x7f000001", "0x7f000001 (127.0.0.1) is not a public address"),
        ("0x7F.0x1", "0x7f.0x1 (127.0.0.1) is not a public address"),
        ("0177.0.0.1", "0177.0.0.1 (127.0.0.1) is not a public address"),
        ("0177.1", "0177.1 (127.0.0.1) is not a public address"),
        ("127.0.0.1.", "127.0.0.1. (127.0.0.1) is not a public address"),
        ("0.0.0.0", "0.0.0.0 is not a public address"),
        ("0", "0 (0.0.0.0) is not a public address"),
        ("10.0.0.1", "10.0.0.1 is not a public address"),
        ("10.255.255.255", "10.255.255.255 is not a public address"),
        ("012.0.0.1", "012.0.0.1 (10.0.0.1) is not a public address"),
        ("172.16.0.1", "172.16.0.1 is not a public address"),
        ("172.31.255.254", "172.31.255.254 is not a public address"),
        ("192.168.0.1", "192.168.0.1 is not a public address"),
        ("3232235521", "3232235521 (192.168.0.1) is not a public address"),
        ("100.64.0.1", "100.64.0.1 is not a public address"),
        ("100.127.255.254", "100.127.255.254 is not a public address"),
        ("169.254.0.1", "169.254.0.1 is not a public address"),
        ("169.254.169.254", "169.254.169.254 is not a public address"),
        ("0xa9fea9fe", "0xa9fea9fe (169.254.169.254) is not a public address"),
        ("[fe80::1]", "fe80::1 is not a public address"),
        ("[fd00::1]", "fd00::1 is not a public address"),
        # IPv4-mapped IPv6 reaches the IPv4 host itself.
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1 (127.0.0.1) is not a public address"),
        ("[::ffff:7f00:1]", "::ffff:7f00:1 (127.0.0.1) is not a public address"),
        ("[::ffff:a9fe:a9fe]", "::ffff:a9fe:a9fe (169.254.169.254) is not a public address"),
        # NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
        ("[64:ff9b::7f00:1]", "64:ff9b::7f00:1 (127.0.0.1) is not a public address"),
        ("[64:ff9b::127.0.0.1]", "64:ff9b::127.0.0.1 (127.0.0.1) is not a public address"),
        ("[64:ff9b::a9fe:a9fe]", "64:ff9b::a9fe:a9fe (169.254.169.254) is not a public address"),
        ("[64:ff9b::a00:1]", "64:ff9b::a00:1 (10.0.0.1) is not a public address"),
        # Local-use NAT64 is site-defined: refused even around a public IPv4 address.
        ("[64:ff9b:1::5db8:d70e]", "64:ff9b:1::5db8:d70e is not a public address"),
    ],
)
async def test_ip_literal_is_refused_naming_the_host(host: str, message: str) -> None:
    refused = await refusal(f"http://{host}:8080/latest/meta-data/{SECRET_QUERY}")

    assert refused == f"{message}; refusing to fetch it"


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("1.2.3.4.5", "1.2.3.4.5 is not a valid IPv4 address"),
        ("999.1.1.1", "999.1.1.1 is not a valid IPv4 address"),
        ("1.2.3.256", "1.2.3.256 is not a valid IPv4 address"),
        ("4294967296", "4294967296 is not a valid IPv4 address"),
        ("08.0.0.1", "08.0.0.1 is not a valid IPv4 address"),
        ("example.123", "example.123 is not a valid IPv4 address"),
        # Percent-encoded hosts: other parsers decode them, so they are no DNS names.
        ("%31%32%37.0.0.1", "%31%32%37.0.0.1 is not a valid IPv4 address"),
        ("%6c%6fcalhost", "the host name %6c%6fcalhost is not a valid DNS name"),
    ],
)
async def test_malformed_numeric_hosts_are_refused_not_resolved(host: str, message: str) -> None:
    assert await refusal(f"http://{host}/x.png{SECRET_QUERY}") == message


async def test_numeric_spelling_connects_to_the_address_it_means() -> None:
    fake = FakeNetwork({})  # any lookup fails the test

    result = await fetch_url(
        "http://0177.0.0.1:8080/a.png",
        policy=FetchPolicy(allowed_private_networks=LOOPBACK),
        network=fake.network,
    )

    (request,) = fake.seen
    assert request.url.host == "127.0.0.1"
    assert request.headers["host"] == "127.0.0.1:8080"
    assert result.final_url == "http://127.0.0.1:8080/a.png"
    assert fake.lookups == []


async def test_nat64_around_a_public_ipv4_is_fetched_over_ipv6() -> None:
    fake = FakeNetwork({})

    result = await fetch_url(
        "http://[64:ff9b::5db8:d70e]/a.png", policy=FetchPolicy(), network=fake.network
    )

    assert result.data == PNG
    # Connected to the NAT64 address, not to 93.184.215.14 directly.
    assert fake.seen[0].url.host == "64:ff9b::5db8:d70e"


async def test_allow_list_admits_the_ipv4_host_behind_nat64() -> None:
    fake = FakeNetwork({})
    policy = FetchPolicy(allowed_private_networks=(ipaddress.ip_network("10.0.0.0/8"),))

    await fetch_url("http://[64:ff9b::a00:1]/a.png", policy=policy, network=fake.network)

    assert fake.seen[0].url.host == "64:ff9b::a00:1"


# --- names and redirects ---------------------------------------------------------------------


async def test_name_resolving_to_a_private_address_is_refused_before_connecting() -> None:
    fake = FakeNetwork({"intranet.example.com": ["10.0.0.7"]})

    with pytest.raises(UnsafeURLError) as caught:
        await fetch_url(
            f"https://intranet.example.com/a.png{SECRET_QUERY}",
            policy=FetchPolicy(),
            network=fake.network,
        )

    message = str(caught.value)
    assert message == "intranet.example.com resolves to a non-public address; refusing to fetch it"
    assert "10.0.0.7" not in message  # the internal address stays unsaid
    assert fake.seen == []


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("http://10.0.0.1/admin", "10.0.0.1 is not a public address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is not a public address"),
        ("http://2130706433/", "2130706433 (127.0.0.1) is not a public address"),
        ("http://[::ffff:a9fe:a9fe]/", "::ffff:a9fe:a9fe (169.254.169.254) is not a public"),
        ("http://intranet.example.com/", "intranet.example.com resolves to a non-public"),
        ("file:///etc/passwd", "only http(s) URLs are allowed"),
        ("gopher://127.0.0.1:6379/_INFO", "only http(s) URLs are allowed"),
    ],
)
async def test_redirect_to_a_private_target_is_refused_before_following(
    location: str, message: str
) -> None:
    fake = FakeNetwork(
        {"images.example.com": [PUBLIC_IP], "intranet.example.com": ["192.168.1.20"]},
        lambda request: redirect(location),
    )

    with pytest.raises(UnsafeURLError) as caught:
        await fetch_url(
            "http://images.example.com/cat.png", policy=FetchPolicy(), network=fake.network
        )

    assert str(caught.value).startswith(f"redirect from images.example.com refused: {message}")
    assert len(fake.seen) == 1  # only the first hop was sent


# --- hosts the operator trusts ---------------------------------------------------------------


def trusting(*hosts: str) -> FetchPolicy:
    return FetchPolicy(trusted_hosts=frozenset(hosts))


def upstream_network(
    handler: Callable[[httpx.Request], httpx.Response] | None = None,
) -> FakeNetwork:
    answers = {
        "upstream.internal": ["10.0.0.5"],
        "upstream.internal.": ["10.0.0.5"],
        "cdn.example.com": [PUBLIC_IP],
    }
    return FakeNetwork(answers, handler)


async def test_trusted_host_is_fetched_from_its_private_address() -> None:
    fake = upstream_network()

    result = await fetch_url(
        "http://upstream.internal/result.png",
        policy=trusting("upstream.internal"),
        network=fake.network,
    )

    assert result.data == PNG
    (request,) = fake.seen
    assert request.url.host == "10.0.0.5"
    assert request.headers["host"] == "upstream.internal"


@pytest.mark.parametrize(
    ("url", "trusted"),
    [
        ("http://upstream.internal:8080/r.png", "upstream.internal:8080"),
        ("http://upstream.internal/r.png", "upstream.internal:80"),  # the default port
        ("https://upstream.internal/r.png", "upstream.internal:443"),
        ("http://upstream.internal./r.png", "upstream.internal"),
        ("http://UPSTREAM.internal/r.png", "Upstream.Internal"),
        ("http://10.0.0.5:9000/r.png", "10.0.0.5:9000"),
        ("http://[fd00::5]:9000/r.png", "[fd00::5]:9000"),
    ],
)
async def test_trusted_host_matching(url: str, trusted: str) -> None:
    fake = upstream_network()

    await fetch_url(url, policy=trusting(trusted), network=fake.network)

    assert len(fake.seen) == 1


@pytest.mark.parametrize(
    ("url", "trusted"),
    [
        ("http://upstream.internal/r.png", "upstream.internal:8080"),  # other port
        ("http://upstream.internal:8080/r.png", "upstream.internal:80"),
        ("http://10.0.0.5/r.png", "upstream.internal"),  # its address is not its name
        ("http://other.upstream.internal/r.png", "upstream.internal"),  # no subdomains
    ],
)
async def test_untrusted_hosts_are_still_checked(url: str, trusted: str) -> None:
    fake = FakeNetwork({"upstream.internal": ["10.0.0.5"], "other.upstream.internal": ["10.0.0.6"]})

    with pytest.raises(UnsafeURLError, match=r"not a public address|resolves to a non-public"):
        await fetch_url(url, policy=trusting(trusted), network=fake.network)
    assert fake.seen == []


async def test_redirect_from_a_trusted_host_to_another_private_host_is_refused() -> None:
    fake = upstream_network(lambda request: redirect("http://10.0.0.9/secret"))

    with pytest.raises(
        UnsafeURLError,
        match=r"^redirect from upstream\.internal refused: 10\.0\.0\.9 is not a public address",
    ):
        await fetch_url(
            "http://upstream.internal/r.png",
            policy=trusting("upstream.internal"),
            network=fake.network,
        )
    assert len(fake.seen) == 1


async def test_redirects_within_the_trusted_host_and_out_to_public_ones_are_followed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/start":
            return redirect("/moved")
        if request.url.path == "/moved":
            return redirect("https://cdn.example.com/final.png")
        return httpx.Response(200, content=PNG)

    fake = upstream_network(handler)

    result = await fetch_url(
        "http://upstream.internal/start", policy=trusting("upstream.internal"), network=fake.network
    )

    assert result.final_url == "https://cdn.example.com/final.png"
    assert [r.url.host for r in fake.seen] == ["10.0.0.5", "10.0.0.5", PUBLIC_IP]


async def test_redirect_from_an_untrusted_url_onto_a_trusted_host_is_checked() -> None:
    # Trust covers what the operator's upstream hands out, not any URL a user can make lead
    # there: a user's redirect onto the upstream would reach its private address.
    fake = upstream_network(lambda request: redirect("http://upstream.internal/admin"))

    with pytest.raises(
        UnsafeURLError,
        match=r"redirect from cdn\.example\.com refused: upstream\.internal resolves to a non-",
    ):
        await fetch_url(
            "https://cdn.example.com/a.png",
            policy=trusting("upstream.internal"),
            network=fake.network,
        )
    assert len(fake.seen) == 1


def test_trusted_hosts_default_to_none() -> None:
    assert FetchPolicy().trusted_hosts == frozenset()
