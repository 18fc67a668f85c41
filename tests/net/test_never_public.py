"""never_public_reason: the create-time refusal of URLs no DNS answer could make fetchable."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from vidgate.net.fetch import never_public_reason

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


@pytest.fixture(autouse=True)
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """The function must decide without resolving anything."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("never_public_reason looked up a name")

    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        monkeypatch.setattr(socket, name, refuse)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "only http(s) URLs are allowed"),
        ("ftp://example.com/a.png", "only http(s) URLs are allowed"),
        ("gopher://example.com/", "only http(s) URLs are allowed"),
        ("http:///a.png", "the URL has no host"),
        ("https://user:pw@example.com/a.png", "URLs with credentials (user@host) are not allowed"),
        ("http://localhost/a.png", "localhost is a loopback name, not a public host"),
        ("http://LocalHost:8080/a.png", "localhost is a loopback name, not a public host"),
        ("http://localhost./a.png", "localhost. is a loopback name, not a public host"),
        ("http://api.localhost/a.png", "api.localhost is a loopback name, not a public host"),
        ("http://127.0.0.1/a.png", "127.0.0.1 is not a public address"),
        ("http://[::1]/a.png", "::1 is not a public address"),
        ("http://127.1/a.png", "127.1 (127.0.0.1) is not a public address"),
        ("http://2130706433/a.png", "2130706433 (127.0.0.1) is not a public address"),
        ("http://0x7f000001/a.png", "0x7f000001 (127.0.0.1) is not a public address"),
        ("http://0177.0.0.1/a.png", "0177.0.0.1 (127.0.0.1) is not a public address"),
        ("http://0.0.0.0/a.png", "0.0.0.0 is not a public address"),
        ("http://10.1.2.3/a.png", "10.1.2.3 is not a public address"),
        ("http://172.20.0.1/a.png", "172.20.0.1 is not a public address"),
        ("http://192.168.1.1/a.png", "192.168.1.1 is not a public address"),
        ("http://100.100.100.200/a.png", "100.100.100.200 is not a public address"),
        ("http://169.254.169.254/a.png", "169.254.169.254 is not a public address"),
        ("http://[fe80::1]/a.png", "fe80::1 is not a public address"),
        ("http://[::ffff:127.0.0.1]/a.png", "::ffff:127.0.0.1 (127.0.0.1) is not a public address"),
        ("http://[::ffff:7f00:1]/a.png", "::ffff:7f00:1 (127.0.0.1) is not a public address"),
        ("http://[64:ff9b::7f00:1]/a.png", "64:ff9b::7f00:1 (127.0.0.1) is not a public address"),
        (
            "http://[64:ff9b::a9fe:a9fe]/",
            "64:ff9b::a9fe:a9fe (169.254.169.254) is not a public address",
        ),
        ("http://[64:ff9b:1::808:808]/a.png", "64:ff9b:1::808:808 is not a public address"),
        ("http://1.2.3.4.5/a.png", "1.2.3.4.5 is not a valid IPv4 address"),
        ("http://exa%20mple.com/a.png", "the host name exa%20mple.com is not a valid DNS name"),
    ],
)
def test_reasons(url: str, reason: str) -> None:
    assert never_public_reason(url) == reason


def test_reason_never_shows_the_query_or_path() -> None:
    reason = never_public_reason("http://10.0.0.1/private/path?token=s3cret")

    assert reason == "10.0.0.1 is not a public address"


@pytest.mark.parametrize(
    "url",
    [
        "https://images.example.com/cat.png?size=large",
        "http://93.184.215.14/cat.png",
        "http://1572395790/cat.png",  # 93.184.215.14 as one number: public
        "http://[2606:4700:4700::1111]/cat.png",
        "http://[64:ff9b::5db8:d70e]/cat.png",  # NAT64 around a public IPv4 address
        "http://intranet.example.com/cat.png",  # a name: judged when fetched
        "http://localhost-images.example.com/cat.png",
        "http://127.0.0.1.nip.io/cat.png",
    ],
)
def test_may_be_fetched(url: str) -> None:
    assert never_public_reason(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/a.png",
        "http://0177.0.0.1:8080/a.png",
        "http://[::ffff:127.0.0.1]/a.png",
        "http://localhost:8080/a.png",  # the operator allows loopback, so the name may be used
    ],
)
def test_the_operator_allow_list_admits_literals_inside_it(url: str) -> None:
    assert never_public_reason(url, allowed_networks=LOOPBACK) is None


def test_the_allow_list_admits_only_what_it_covers() -> None:
    assert never_public_reason("http://10.0.0.1/a.png", allowed_networks=LOOPBACK) == (
        "10.0.0.1 is not a public address"
    )
